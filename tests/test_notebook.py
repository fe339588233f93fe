"""notebooks/explore_latents.ipynb: stored without outputs, and runs top to bottom on a finished run."""

from __future__ import annotations

import nbformat

from pipeline_fixtures import EVAL_SETS, REPO, STRATEGIES, TRAIN_EXAMPLES, TinyRun, tiny_run  # noqa: F401

NOTEBOOK = REPO / "notebooks" / "explore_latents.ipynb"


def test_notebook_is_stored_clean():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    assert "parameters" in code[0].metadata.get("tags", [])
    assert 'os.environ.get("LM_LATENT_RUN_DIR", "../runs/default")' in code[0].source


def test_notebook_executes_on_the_tiny_run(tiny_run: TinyRun, monkeypatch):
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    # The kernel inherits this process's environment; "python3" is ipykernel's own spec, launched
    # with this interpreter (the virtual environment's).
    monkeypatch.setenv("LM_LATENT_RUN_DIR", str(tiny_run.dir))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    NotebookClient(nb, kernel_name="python3", timeout=600,
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 3  # code frequency, codebook metrics, accuracy vs tokens
    markdown = "\n".join(o["data"]["text/markdown"] for o in outputs if "text/markdown" in o.get("data", {}))
    for strategy in STRATEGIES:
        for name in EVAL_SETS:
            assert f"| {strategy} | {name} |" in markdown  # the results table
    assert "| prontoqa:0 |" in markdown  # a training example with its decoded codes
    text = "\n".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "codes used" in text and f"{TRAIN_EXAMPLES} training examples" in text
