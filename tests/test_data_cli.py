"""`lm-latent data ...`: inspect, tokenizer, generate; errors as one line on stderr, exit status 2."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from lm_latent.data.cli import GeneratorsUnavailable, _add_dataclass_options, _options_from_args, load_generators, main
from lm_latent.data.example import Example
from lm_latent.data.inspection import inspect_dataset
from lm_latent.data.readers import read_dataset, write_canonical
from lm_latent.data.tokenization import load_tokenizer, tokenize_examples

PROSQA_LIKE = [
    {
        "question": f"Every wumpus is a yumpus. Every yumpus is a zumpus. Tom is a wumpus. Is Tom a zumpus or rempus? ({i})",
        "steps": ["Tom is a wumpus.", "Every wumpus is a yumpus.", "Every yumpus is a zumpus."][: 1 + i % 3],
        "answer": "Tom is a zumpus.",
    }
    for i in range(6)
]


def run(capsys, argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_inspect_gsm8k_train(shared_data, capsys):
    code, out, err = run(capsys, ["inspect", "gsm8k", str(shared_data / "gsm8k/train.jsonl")])
    assert code == 0, err
    assert '"examples": 7473' in out
    report = json.loads(out)  # one JSON object, nothing else on stdout
    assert report["with_steps"] == 7473
    assert report["skipped"] == 0 and report["skipped_reasons"] == {}
    assert report["tokenizer"] == "trained-bpe-1024"
    assert report["roundtrip_mismatches"] == 0
    tokens, chunks = report["cot_tokens"], report["cot_chunks"]
    assert 0 < tokens["min"] <= tokens["median"] <= tokens["max"]
    assert chunks["max"] == -(-tokens["max"] // 16) and chunks["min"] == -(-tokens["min"] // 16)


def test_inspect_numbers_match_the_tokenizer(tmp_path, tiny_tokenizer, capsys):
    path = tmp_path / "p.json"
    path.write_text(json.dumps(PROSQA_LIKE))
    code, out, err = run(capsys, ["inspect", "prosqa", str(path), "--tokenizer", str(tiny_tokenizer), "--chunk-size", "4"])
    assert code == 0, err
    report = json.loads(out)
    tok = load_tokenizer(tiny_tokenizer)
    tokenized, _ = tokenize_examples(tok, read_dataset("prosqa", path).examples)
    lengths = sorted(len(t.cot_ids) for t in tokenized)
    assert report["tokenizer"] == str(tiny_tokenizer)
    assert report["examples"] == report["with_steps"] == 6
    assert report["chunk_size"] == 4
    assert report["cot_tokens"]["min"] == lengths[0] and report["cot_tokens"]["max"] == lengths[-1]
    assert report["cot_tokens"]["mean"] == pytest.approx(sum(lengths) / 6, abs=0.01)
    assert report["cot_chunks"]["max"] == -(-lengths[-1] // 4)
    assert report["steps_per_example"] == {"mean": 2.0, "min": 1, "max": 3, "median": 2.0}


def test_inspect_without_steps_and_with_skips(tmp_path, tiny_tokenizer):
    rows = [{"Question": "q1?", "Answer": 3, "Picture": None, "id": "a"}, {"Question": "q2?", "Answer": 1, "Picture": "p"}]
    path = tmp_path / "t.json"
    path.write_text(json.dumps(rows))
    report = inspect_dataset("theoremqa", path, tokenizer=tiny_tokenizer)
    assert report["examples"] == 1 and report["skipped"] == 1
    assert report["skipped_reasons"] == {"needs an image": 1}
    assert report["with_steps"] == 0 and report["cot_tokens"] is None and report["cot_chunks"] is None


def test_inspect_keep_calculator(tmp_path, tiny_tokenizer, capsys):
    path = tmp_path / "g.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": "It is 2+2 = <<2+2=4>>4 apples.\n#### 4"}) + "\n")
    _, kept, _ = run(capsys, ["inspect", "gsm8k", str(path), "--tokenizer", str(tiny_tokenizer), "--keep-calculator"])
    _, stripped, _ = run(capsys, ["inspect", "gsm8k", str(path), "--tokenizer", str(tiny_tokenizer)])
    assert json.loads(kept)["cot_tokens"]["max"] > json.loads(stripped)["cot_tokens"]["max"]
    assert json.loads(kept)["strip_calculator"] is False


def test_inspect_corrupted_file_exits_nonzero_naming_the_line(shared_data, tmp_path, capsys):
    lines = (shared_data / "gsm8k/train.jsonl").read_text().splitlines()[:10]
    lines[6] = lines[6][:40]  # cut mid-record: line 7 is no longer JSON
    path = tmp_path / "corrupted.jsonl"
    path.write_text("\n".join(lines) + "\n")
    code, out, err = run(capsys, ["inspect", "gsm8k", str(path)])
    assert code == 2 and out == ""
    assert err.startswith("error: ") and "corrupted.jsonl" in err and "line 7" in err
    assert "Traceback" not in err


def test_entry_point_reports_errors_without_traceback(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "q", "answer": "x\\n#### 1"}\n{"question": 5, "answer": "y\\n#### 2"}\n')
    proc = subprocess.run(
        [sys.executable, "-m", "lm_latent.cli", "data", "inspect", "gsm8k", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "bad.jsonl, line 2, field 'question'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_usage_errors_return_2(capsys):
    assert main(["inspect", "gsm9k", "x.jsonl"]) == 2
    assert "invalid choice" in capsys.readouterr().err
    assert main([]) == 2


def test_tokenizer_command_trains_on_full_texts(tmp_path, capsys):
    canon = write_canonical(
        [Example(f"What is {i} plus {i}?", (f"{i} + {i} = {2 * i}.",), str(2 * i), f"c:{i}", "gsm8k") for i in range(50)],
        tmp_path / "c.jsonl",
    )
    prosqa = tmp_path / "p.json"
    prosqa.write_text(json.dumps(PROSQA_LIKE))
    out_dir = tmp_path / "tok"
    argv = ["tokenizer", "--dataset", "canonical", "--path", str(canon), "--dataset", "prosqa", "--path", str(prosqa)]
    code, out, err = run(capsys, argv + ["--out", str(out_dir), "--vocab-size", "300"])
    assert code == 0, err
    report = json.loads(out)
    assert report["texts"] == 56 and [f["examples"] for f in report["files"]] == [50, 6]
    tok = load_tokenizer(out_dir)
    assert len(tok) == report["vocab_size"] <= 300
    text = "Every wumpus is a yumpus.\n### 12"
    assert tok.decode(tok(text)["input_ids"]) == text
    # Mismatched --dataset/--path counts are a usage error.
    assert main(["tokenizer", "--dataset", "gsm8k", "--dataset", "math", "--path", str(canon), "--out", str(out_dir)]) == 2


@dataclasses.dataclass
class _Options:
    """Options of a pretend generator."""

    num_nodes: int = 20
    edge_prob: float = 0.5
    name_style: str = "fictional"
    shuffle: bool = True
    depths: tuple = (3, 4)
    limit: int | None = None


def test_generator_flags_are_built_from_the_options_dataclass():
    import argparse

    parser = argparse.ArgumentParser()
    _add_dataclass_options(parser, _Options)
    args = parser.parse_args([])
    assert _Options(**_options_from_args(_Options, args)) == _Options()
    args = parser.parse_args(
        ["--num-nodes", "7", "--edge-prob", "0.25", "--name-style", "x", "--no-shuffle", "--depths", "5", "6", "--limit", "3"]
    )
    assert _Options(**_options_from_args(_Options, args)) == _Options(7, 0.25, "x", False, (5, 6), 3)
    with pytest.raises(SystemExit):
        parser.parse_args(["--num-nodes", "many"])


def _have_generators() -> bool:
    try:
        load_generators()
    except GeneratorsUnavailable:
        return False
    return True


HAVE_GENERATORS = _have_generators()


@pytest.mark.skipif(not HAVE_GENERATORS, reason="lm_latent.data.generators (GENERATORS, write_json) is not importable")
@pytest.mark.parametrize("name", ["prosqa", "prontoqa"])
def test_generate_writes_a_readable_deterministic_file(name, tmp_path, capsys):
    from lm_latent.data.generators import GENERATORS

    assert name in GENERATORS
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    code, out, err = run(capsys, ["generate", name, "--num", "5", "--seed", "3", "--out", str(first)])
    assert code == 0, err
    assert json.loads(out)["examples"] == 5
    assert main(["generate", name, "--num", "5", "--seed", "3", "--out", str(second)]) == 0
    assert first.read_bytes() == second.read_bytes()
    examples = read_dataset(name, first).examples
    assert len(examples) == 5 and all(ex.has_steps for ex in examples)


def test_generate_help_lists_options_or_says_generators_are_missing(capsys):
    code = main(["generate", "-h"])
    out, err = capsys.readouterr()
    if HAVE_GENERATORS:
        assert code == 0 and "prosqa" in out
    else:
        assert code == 2 and "lm_latent.data.generators" in err


def test_generate_command_with_a_stand_in_generator_module(tmp_path, capsys, monkeypatch):
    """The command's wiring (flags from the options dataclass, seed, output, read-back), independent
    of the real generators: a small module with the same interface stands in for them."""
    import types

    @dataclasses.dataclass(frozen=True)
    class ChainOptions:
        """Chains of is-a facts."""

        hops: int = 2
        subject: str = "Tom"

    def generate(num: int, seed: int, options: ChainOptions) -> list[dict]:
        return [
            {
                "question": f"{options.subject} is a k{seed}x{i}. Is {options.subject} a k{i + options.hops}?",
                "steps": [f"{options.subject} is a k{i + h}." for h in range(options.hops)],
                "answer": f"{options.subject} is a k{i + options.hops}.",
            }
            for i in range(num)
        ]

    def write_json(records: list[dict], path) -> None:
        Path(path).write_text(json.dumps(records))

    fake = types.ModuleType("lm_latent.data.generators")
    fake.GENERATORS = {"prosqa": (ChainOptions, generate)}
    fake.write_json = write_json
    monkeypatch.setitem(sys.modules, "lm_latent.data.generators", fake)

    out = tmp_path / "gen" / "train.json"
    argv = ["generate", "prosqa", "--num", "4", "--seed", "9", "--out", str(out), "--hops", "3", "--subject", "Ann"]
    code, stdout, err = run(capsys, argv)
    assert code == 0, err
    report = json.loads(stdout)
    assert report["examples"] == 4 and report["seed"] == 9
    assert report["options"] == {"hops": 3, "subject": "Ann"}
    examples = read_dataset("prosqa", out).examples
    assert [len(ex.steps) for ex in examples] == [3] * 4 and examples[0].question.startswith("Ann is a k9x0.")
    code, _, err = run(capsys, ["generate", "prosqa", "--num", "4", "--seed", "9", "--out", str(out), "--hops", "x"])
    assert code == 2 and "--hops" in err
