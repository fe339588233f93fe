"""Keys-Finding Maze evaluation: 1-Feasible-10 (the paper's metric), greedy feasibility and optimality.

For every test maze the callback samples ``num_plans`` continuations with top-k sampling
(``top_k`` = 10, as in the paper) and decodes one greedily; each plan (the text after the last
``###``) is checked against the maze its prompt states (:func:`lm_latent.data.maze.check_plan`). It
logs, under ``<stage>/<name>/``:

    accuracy, feasible_at_k   1-Feasible-k: the share of mazes with at least one feasible sampled plan
    optimal_at_k              ... with at least one sampled plan that is also optimal
    sample_feasible           the share of all sampled plans that are feasible
    greedy_feasible           the share of mazes whose greedy plan is feasible
    greedy_optimal            ... feasible with the optimal number of moves
    mean_tokens               generated tokens per sampled plan (latent codes, delimiters and text)
    mean_latent_tokens, mean_text_tokens     ... of which latent codes / text
    greedy_mean_tokens, greedy_mean_latent_tokens
    n, accuracy_best

Exact under DDP like the other accuracy callbacks: every maze's counts are kept in a metric keyed by
the maze's position in the set, so a maze counts once whatever the number of devices. Sampling is
seeded per evaluation and batched across mazes, so which plans are drawn depends on how the set is
sharded; the numbers are estimates of the same quantity on any device count. TensorBoard gets the
first mazes drawn as text grids with their greedy plan (``<stage>/<name>/samples``).

    callbacks:
      - class_path: lm_latent.evaluation.maze.MazeAccuracy
        init_args: {file: runs/maze/data/test.json, num_plans: 10, top_k: 10}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from lightning.pytorch import LightningModule
from torch import Tensor
from torchmetrics import Metric

from lm_latent.data.maze.plans import check_plan, parse_plan
from lm_latent.data.maze.world import Maze, parse_prompt
from lm_latent.data.tokenization import prompt_text
from lm_latent.evaluation.answers import after_last, resolve_task
from lm_latent.evaluation.callbacks import AccuracyCallback, _cell
from lm_latent.evaluation.metrics import cat_state, first_per_key

# Per-maze integer counts, summed or averaged over unique mazes in MazeScores.compute().
COUNTS = (
    "greedy_feasible", "greedy_optimal", "greedy_tokens", "greedy_latent",
    "samples", "samples_feasible", "samples_optimal", "sample_tokens", "sample_latent", "sample_text",
)  # fmt: skip


class MazeScores(Metric):
    """Per-maze counts keyed by maze (states are lists reduced by concatenation; a key counts once)."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        for name in ("keys", *COUNTS):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, keys: Sequence[int], **counts: Sequence[int]) -> None:
        if set(counts) != set(COUNTS):
            raise ValueError(f"MazeScores.update: need the counts {COUNTS}, got {sorted(counts)}")
        columns = {"keys": keys, **counts}
        values = {k: torch.as_tensor(v, dtype=torch.long, device=self.device).reshape(-1) for k, v in columns.items()}
        if len({v.numel() for v in values.values()}) != 1:
            raise ValueError(f"MazeScores.update: columns differ in length: { {k: v.numel() for k, v in values.items()} }")
        for k, v in values.items():
            getattr(self, k).append(v)

    def _columns(self) -> dict[str, Tensor]:
        columns = {k: cat_state(getattr(self, k), self.device) for k in ("keys", *COUNTS)}
        keep = first_per_key(columns["keys"])
        return {k: v[keep] for k, v in columns.items()}

    def compute(self) -> dict[str, Tensor]:
        """The rates and means of the module docstring (NaN when no maze was scored) and ``n``."""
        c = self._columns()
        n = c["keys"].numel()
        samples = c["samples"].sum()

        def share(x: Tensor) -> Tensor:
            return x.float().mean() if n else torch.tensor(float("nan"), device=self.device)

        def per_sample(x: Tensor) -> Tensor:
            return x.sum().float() / samples if samples > 0 else torch.tensor(float("nan"), device=self.device)

        feasible_at_k = share(c["samples_feasible"] > 0)
        return {
            "accuracy": feasible_at_k,
            "feasible_at_k": feasible_at_k,
            "optimal_at_k": share(c["samples_optimal"] > 0),
            "sample_feasible": per_sample(c["samples_feasible"]),
            "greedy_feasible": share(c["greedy_feasible"]),
            "greedy_optimal": share(c["greedy_optimal"]),
            "mean_tokens": per_sample(c["sample_tokens"]),
            "mean_latent_tokens": per_sample(c["sample_latent"]),
            "mean_text_tokens": per_sample(c["sample_text"]),
            "greedy_mean_tokens": share(c["greedy_tokens"]),
            "greedy_mean_latent_tokens": share(c["greedy_latent"]),
            "n": torch.tensor(n, device=self.device),
        }


def score_plan(maze: Maze, completion: str, optimal_moves: int | None) -> dict[str, Any]:
    """Feasible / optimal / moves / reason of the plan a completion ends with (after its last ``###``)."""
    plan = after_last(completion, "###")
    if plan is None:
        return {"feasible": False, "optimal": False, "moves": None, "reason": "no ### plan"}
    check = check_plan(maze, plan, optimal_moves)
    return {"feasible": check.feasible, "optimal": check.optimal, "moves": check.moves, "reason": check.reason}


def optimal_moves_of(example) -> int | None:
    """The optimal plan length: the generator's ``optimal_moves``, else the gold plan's moves."""
    if isinstance(example.meta.get("optimal_moves"), int):
        return example.meta["optimal_moves"]
    cells = parse_plan(example.answer)
    return len(cells) - 1 if cells else None


class MazeAccuracy(AccuracyCallback):
    """1-Feasible-k of sampled plans, and greedy feasibility and optimality, on a maze file.

    Args:
        num_plans: plans sampled per maze (the k of 1-Feasible-k; the paper's is 10).
        top_k: sampling keeps the ``top_k`` most likely tokens (the paper's is 10).
        Everything else as :class:`~lm_latent.evaluation.callbacks.AccuracyCallback`; ``decoding`` is
        not an option (both greedy and top-k decodings run), ``batch_size`` counts sampled sequences.
    """

    def __init__(
        self,
        file: str | Path | None = None,
        dataset: str = "maze",
        task: str = "maze",
        num_plans: int = 10,
        top_k: int = 10,
        num_samples: int = 4,
        **kwargs: Any,
    ) -> None:
        if resolve_task(task) != "maze":
            raise ValueError(f"MazeAccuracy checks maze plans, not {task!r} answers")
        if "decoding" in kwargs:
            raise ValueError("MazeAccuracy runs both greedy and top-k decoding: `decoding` is not an option")
        if num_plans < 1 or top_k < 1:
            raise ValueError(f"num_plans and top_k must be >= 1, got {num_plans}, {top_k}")
        super().__init__(task=task, file=file, dataset=dataset, decoding="top_k", top_k=top_k,
                         num_samples=num_samples, **kwargs)
        self.num_plans = num_plans

    def _score_shard(self, pl_module: LightningModule, indices: list[int], synced: bool) -> list[dict]:
        examples = self.examples
        prompts = [prompt_text(examples[i].question) for i in indices]
        greedy = self._generate(pl_module, prompts, synced, decoding="greedy")
        k = self.num_plans
        sampled = self._generate(pl_module, [p for p in prompts for _ in range(k)], synced, decoding="top_k")
        rows = []
        for j, (i, g) in enumerate(zip(indices, greedy)):
            ex = examples[i]
            maze = parse_prompt(ex.question)
            optimal = optimal_moves_of(ex)
            # Scored on what the model wrote, latent tokens in place: one inside the plan makes it malformed.
            g_check = score_plan(maze, g.written, optimal)
            samples = []
            for s in sampled[j * k : (j + 1) * k]:
                samples.append({"written": s.written, **score_plan(maze, s.written, optimal), "num_tokens": s.num_tokens,
                                "num_latent": s.num_latent, "num_text": s.num_text})
            rows.append({
                "index": i, "id": ex.id, "question": ex.question, "gold": ex.answer, "optimal_moves": optimal,
                "text": g.text, "written": g.written, "codes": list(g.codes), "correct": any(s["feasible"] for s in samples),
                "greedy_feasible": g_check["feasible"], "greedy_optimal": g_check["optimal"],
                "greedy_reason": g_check["reason"], "num_tokens": g.num_tokens, "num_latent": g.num_latent,
                "num_delimiter": g.num_delimiter, "num_text": g.num_text, "samples": samples,
            })
        return rows

    def _global_metrics(self, rows: list[dict], device: torch.device) -> dict[str, float]:
        metric = MazeScores().to(device)
        # Always update, even with an empty shard, so the gathered states keep their integer dtype.
        metric.update(
            [r["index"] for r in rows],
            greedy_feasible=[r["greedy_feasible"] for r in rows],
            greedy_optimal=[r["greedy_optimal"] for r in rows],
            greedy_tokens=[r["num_tokens"] for r in rows],
            greedy_latent=[r["num_latent"] for r in rows],
            samples=[len(r["samples"]) for r in rows],
            samples_feasible=[sum(s["feasible"] for s in r["samples"]) for r in rows],
            samples_optimal=[sum(s["optimal"] for s in r["samples"]) for r in rows],
            sample_tokens=[sum(s["num_tokens"] for s in r["samples"]) for r in rows],
            sample_latent=[sum(s["num_latent"] for s in r["samples"]) for r in rows],
            sample_text=[sum(s["num_text"] for s in r["samples"]) for r in rows],
        )
        return {k: float(v) for k, v in metric.compute().items()}

    def samples_markdown(self, results: list[dict], pl_module: LightningModule | None = None) -> str:
        """Each maze drawn as a text grid with its greedy plan (``+``), then the plan's verdicts."""
        blocks = []
        for r in results:
            maze = parse_prompt(r["question"])
            cells = parse_plan(after_last(r["written"], "###") or "")
            feasible = sum(s["feasible"] for s in r["samples"])
            verdict = "feasible" if r["greedy_feasible"] else f"infeasible ({r['greedy_reason']})"
            codes = self._codes_cell(r, pl_module)
            blocks.append("\n".join([
                f"**maze {r['index']}**: greedy plan {verdict}"
                + (", optimal" if r["greedy_optimal"] else "")
                + f"; {feasible} of {len(r['samples'])} sampled plans feasible; optimal moves {r['optimal_moves']}",
                "",
                "```",
                maze.draw(cells),
                "```",
                "",
                f"greedy output ({r['num_tokens']} tokens, {r['num_latent']} latent): "
                + (f"latent codes {codes}; " if codes else "")
                + ("... " if len(r["text"]) > 300 else "") + _cell(r["text"][-300:], 300),  # the end holds the plan
            ]))
        legend = "`#` wall, `S` start, `E` goal, `r`/`R` red key/door (likewise other colours), `+` greedy plan"
        return "\n\n".join([legend, *blocks])
