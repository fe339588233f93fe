"""Learning probe: how fast does a small Llama, trained from scratch, learn a generated ProntoQA, ProsQA
or maze variant? A plain PyTorch loop (no Lightning, no codebook) over the project's generators and
tokenizers, so a data or tokenizer option can be tried in minutes before it goes into an experiment file.

    .venv/bin/python experiments/probes/logic_learning.py --opts '{"hops": 2, "branches": 0}' --minutes 8

Every ``--eval-every`` steps it greedily decodes 300 held-out problems of the same variant (another
seed) and prints: answer accuracy; ``chain``, the share whose chain of thought is exactly the gold
one; ``conclusion``, the share whose last step ("Alex is not happy.") is right; ``consistent``, the
share whose answer agrees with the model's own conclusion and the query (is the final True/False
comparison learned, apart from the chain). For mazes (``--task maze --tokenizer maze``), held out by
layout: ``accuracy`` is a feasible greedy plan, ``chain`` the exact A* trace, ``conclusion`` an optimal
plan and ``consistent`` a well-formed one. ``--official FILE`` also scores a staged file. One thread
per process: run two probes side by side on a 2-core machine. ``--device cuda`` runs the same probe on a
GPU (TF32 matmuls), where a larger ``--batch`` pays; ``--total-steps 0`` lets the cosine follow
``--minutes`` when the step rate is not known ahead. RESULTS.md records what they measured.

``--curriculum`` trains on easier variants first (Saparov et al. 2025's depth curriculum): a JSON list
of option overrides, each applied over ``--opts``; training moves to the next stage, and finally to
``--opts`` itself, once the current stage's held-out accuracy reaches ``--advance-at``:

    .venv/bin/python experiments/probes/logic_learning.py --opts '{"hops": 3, "branches": 0}' \
        --curriculum '[{"hops": 1}, {"hops": 2}]' --advance-at 0.95 --minutes 30

A ProsQA stage may also carry ``"_queried_person_only": true`` (a probe key, not a generator option):
its questions keep the facts about the queried person only (:func:`queried_person_only`); or
``"_recall": {"people": 6, "queries": 4}``: instead of generated graphs, associative-recall problems in
ProsQA's words with several questions each (:func:`recall_rows`), so one problem trains several
name-keyed look-ups; or ``"_adjacent": true``: every stated fact written "Tom lempus." instead of "Tom
is a lempus." (:func:`adjacent_facts`), so the concept follows its key directly; or
``"_question_first": true``: the question sentence also written before the facts
(:func:`question_first`); or ``"_queried_as_tom": true``: the queried person renamed "Tom"
(:func:`queried_as_tom`). Probe keys in ``--opts`` itself hold for every stage and are applied to a
copy of the ``--official`` file too.

``--save DIR`` keeps the model and its tokenizer as a Hugging Face directory (rewritten at every
evaluation), which ``--init`` continues from, on another variant too, and which an experiment can
fine-tune from (``mixed.model.lm.pretrained``; experiments/results/prontoqa_warm.yaml).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import random
import re
import tempfile
import time
from pathlib import Path

import torch

from lm_latent.data.generators import GENERATORS, write_json
from lm_latent.data.generators.prosqa import parse_query
from lm_latent.data.maze.world import parse_prompt
from lm_latent.data.readers import read_examples
from lm_latent.data.readers.renaming import queried_renaming
from lm_latent.data.tokenization import full_text, load_tokenizer, tokenize_examples, train_tokenizer
from lm_latent.evaluation.maze import optimal_moves_of, score_plan


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="prontoqa", choices=sorted(GENERATORS))
    p.add_argument("--opts", default="{}", help="generator options as JSON")
    p.add_argument("--n", type=int, default=60000, help="training problems (generated once, cycled)")
    p.add_argument("--minutes", type=float, default=10, help="training time (evaluation not counted)")
    p.add_argument("--total-steps", type=int, default=3000,
                   help="length of the cosine schedule (0: it follows --minutes of training time instead)")
    p.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0: only --minutes)")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--d", type=int, default=128)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--head-dim", type=int, default=0,
                   help="size of each attention head (0: --d / --heads); with it the attention can be wider than"
                        " the residual stream, e.g. --d 128 --heads 8 --head-dim 64")
    p.add_argument("--init-range", type=float, default=0.02,
                   help="standard deviation of the initial weights (LlamaConfig.initializer_range)")
    p.add_argument("--tokenizer", default="word", choices=("word", "bpe", "maze"))
    p.add_argument("--keep-forms", action="store_true", help="word tokenizer without capital/plural marks")
    p.add_argument("--sol-only", action="store_true", help="train prompt -> answer (no chain of thought)")
    p.add_argument("--loss-on-prompt", action="store_true",
                   help="next-token loss on the question too (default: on chain and answer only)")
    p.add_argument("--max-new", type=int, default=0, help="tokens generated per held-out problem (0: 8 with --sol-only, else 110)")
    p.add_argument("--eval-every", type=int, default=300, help="steps between curriculum-stage checks and reports")
    p.add_argument("--report-every", type=int, default=0,
                   help="steps between the target's (and --official's) scores, a multiple of --eval-every (0: the"
                        " same); long official chains take minutes to decode, the stage check does not")
    p.add_argument("--show", type=int, default=0, help="print this many held-out generations at each evaluation")
    p.add_argument("--official", default="", help="a staged file to score as well")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu",
                   help="cpu, or cuda for a GPU (TF32 matmuls): the same probe at a larger batch")
    p.add_argument("--save", default="",
                   help="a directory: the model and its tokenizer as a Hugging Face model directory, rewritten at"
                        " every evaluation (so a stopped probe keeps its last one); `mixed.model.lm.pretrained` and"
                        " `tokenizer.path` of an experiment can point at it")
    p.add_argument("--init", default="",
                   help="start from a --save directory (or a .pt state dict with --init-tokenizer); when the target"
                        " variant's words differ, embedding rows are carried over by token string")
    p.add_argument("--init-tokenizer", default="", help="the tokenizer of a .pt --init")
    p.add_argument("--stop-at", type=float, default=0.0,
                   help="stop once the target's held-out accuracy reaches this (0: never)")
    p.add_argument("--start-stage", type=int, default=0, help="curriculum stage to start in (with --init)")
    p.add_argument("--curriculum", default="[]", help="JSON list of easier option overrides, trained first")
    p.add_argument("--advance-at", type=float, default=0.95, help="held-out accuracy that ends a curriculum stage")
    args = p.parse_args()
    if args.report_every % args.eval_every:
        p.error(f"--report-every {args.report_every} is not a multiple of --eval-every {args.eval_every}")
    return args


class Probe:
    def __init__(self, args: argparse.Namespace) -> None:
        from transformers import LlamaConfig, LlamaForCausalLM

        self.args = args
        tmp = Path(tempfile.mkdtemp(prefix="probe_"))
        options_cls, generate = GENERATORS[args.task]
        target = json.loads(args.opts)
        # One (training set, held-out set) per stage; the last stage is the target variant.
        # Keys starting with "_" are the probe's own, not generator options (see ``queried_person_only``);
        # in --opts they hold for every stage and for the --official file.
        everywhere = {k: v for k, v in target.items() if k.startswith("_")}
        target = {k: v for k, v in target.items() if not k.startswith("_")}
        overrides = [{**everywhere, **o} for o in json.loads(args.curriculum) + [{}]]
        stages = [options_cls(**{**target, **{k: v for k, v in o.items() if not k.startswith("_")}}) for o in overrides]
        for i, options in enumerate(stages):
            unknown = {k for k in overrides[i] if k.startswith("_")} - {"_recall", *ROW_EDITS}
            if unknown:
                raise ValueError(f"--curriculum stage {i}: unknown probe key(s) {sorted(unknown)}; "
                                 f"known: {sorted(['_recall', *ROW_EDITS])}")
            edits = [f for key, f in ROW_EDITS.items() if overrides[i].get(key)]  # applied in this order

            def edit(row: dict, edits=edits) -> dict:
                for f in edits:
                    row = f(row)
                return row

            make = generate
            if "_recall" in overrides[i]:  # the stage's rows come from recall_rows, not the generator
                make = functools.partial(recall_rows_for, overrides[i]["_recall"])
            write_json([edit(r) for r in make(args.n, 1000 + 10 * args.seed + i, options)], tmp / f"train{i}.json")
            if hasattr(options, "split"):  # mazes: held-out layouts never occur in training
                options_heldout = dataclasses.replace(options, split="test")
            else:
                options_heldout = options
            write_json([edit(r) for r in make(300, 99991 + i, options_heldout)], tmp / f"heldout{i}.json")
        target_edit = edit  # the loop's last stage is the target
        train = [read_examples(args.task, tmp / f"train{i}.json") for i in range(len(stages))]
        train_tokenizer([full_text(e) for e in train[-1][:5000]], tmp / "tok", vocab_size=512,
                        kind=args.tokenizer, split_forms=not args.keep_forms)
        self.tok = load_tokenizer(tmp / "tok")
        self.stages = [tokenize_examples(self.tok, t)[0] for t in train]
        self.stage_heldout = [self._scored(tmp / f"heldout{i}.json") for i in range(len(stages))]
        self.heldout = self.stage_heldout[-1]
        self.official = None
        if args.official:
            official = Path(args.official)
            if any(k in ROW_EDITS for k in everywhere):  # the target's row edits, on a copy of the file
                official = edited_copy(official, target_edit, tmp / f"official_edited_{official.name}")
            self.official = self._scored(official)
        cfg = LlamaConfig(
            vocab_size=len(self.tok), hidden_size=args.d, intermediate_size=3 * args.d,
            num_hidden_layers=args.layers, num_attention_heads=args.heads, num_key_value_heads=args.heads,
            max_position_embeddings=512, tie_word_embeddings=True, pad_token_id=self.tok.pad_token_id,
            eos_token_id=self.tok.eos_token_id, bos_token_id=self.tok.eos_token_id,
            initializer_range=args.init_range, head_dim=args.head_dim or args.d // args.heads,
        )
        self.model = LlamaForCausalLM(cfg)
        self.device = torch.device(args.device)
        if args.init:
            if Path(args.init).is_dir():
                state = LlamaForCausalLM.from_pretrained(args.init).state_dict()
                old_tok = load_tokenizer(args.init)
            else:
                state = torch.load(args.init, weights_only=True)
                old_tok = load_tokenizer(args.init_tokenizer) if args.init_tokenizer else self.tok
            if old_tok.get_vocab() != self.tok.get_vocab():
                state = transplant_vocabulary(state, old_tok, self.tok, self.model)
            self.model.load_state_dict(state)
        self.model.to(self.device)
        self.stage = args.start_stage
        self.train = self.stages[self.stage]

    def _scored(self, path: Path):
        examples = read_examples(self.args.task, path)
        return examples, tokenize_examples(self.tok, examples)[0]

    def batch(self, items):
        pad = self.tok.pad_token_id
        seqs = [(list(x.prompt_ids) + list(() if self.args.sol_only else x.cot_ids) + list(x.answer_ids), len(x.prompt_ids))
                for x in items]
        width = max(len(s) for s, _ in seqs)
        ids = torch.full((len(seqs), width), pad)
        labels = torch.full((len(seqs), width), -100)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, (s, n_prompt) in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s)
            mask[i, : len(s)] = 1
            first = 0 if self.args.loss_on_prompt else n_prompt  # default: loss on chain and answer only
            labels[i, first : len(s)] = torch.tensor(s[first:])
        return ids.to(self.device), mask.to(self.device), labels.to(self.device)

    @torch.no_grad()
    def evaluate(self, scored) -> dict[str, float]:
        examples, tokenized = scored
        self.model.eval()
        counts = {"accuracy": 0, "chain": 0, "conclusion": 0, "consistent": 0}
        pad = self.tok.pad_token_id
        for start in range(0, len(tokenized), 100):
            prompts = [list(x.prompt_ids) for x in tokenized[start : start + 100]]
            width = max(map(len, prompts))
            ids = torch.full((len(prompts), width), pad)
            mask = torch.zeros_like(ids)
            for j, p in enumerate(prompts):  # left padding for generation
                ids[j, width - len(p):] = torch.tensor(p)
                mask[j, width - len(p):] = 1
            out = self.model.generate(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                      do_sample=False, pad_token_id=pad,
                                      max_new_tokens=self.args.max_new or (8 if self.args.sol_only else 110), eos_token_id=self.tok.eos_token_id)
            for j, ex in enumerate(examples[start : start + len(prompts)]):
                generated = self.tok.decode(out[j, width:], skip_special_tokens=True)
                if self.args.task == "maze":
                    maze_counts_add(counts, generated, ex)
                else:
                    counts_add(counts, generated, ex)
                if start + j < self.args.show:
                    print(f"  [{start + j}] {ex.question!r}\n    gold {chr(10).join(ex.steps)!r} -> {ex.answer}\n    got  {generated!r}")
        self.model.train()
        return {k: v / len(tokenized) for k, v in counts.items()}

    def run(self) -> None:
        a = self.args
        model = self.model
        print(f"{len(self.tok)} tokens, {sum(p.numel() for p in model.parameters())} parameters", flush=True)
        opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.99), weight_decay=0.01)
        order = list(range(len(self.train)))
        random.Random(a.seed).shuffle(order)
        step, tokens, loss_avg, t0 = 0, 0, None, time.time()

        def progress(s: int) -> float:  # along the cosine: by steps, or with --total-steps 0 by training time
            if a.total_steps:
                return min(s, a.total_steps) / a.total_steps
            return min(1.0, (time.time() - t0) / (a.minutes * 60))  # t0 moves on past evaluations

        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, a.warmup, progress(s)))
        model.train()
        while time.time() - t0 < a.minutes * 60 and not (a.max_steps and step >= a.max_steps):
            first = (step * a.batch) % len(order)
            ids, mask, labels = self.batch([self.train[k] for k in order[first : first + a.batch]])
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step, tokens = step + 1, tokens + int(mask.sum())
            loss_avg = loss.item() if loss_avg is None else 0.95 * loss_avg + 0.05 * loss.item()
            if step % a.eval_every == 0:
                t_eval = time.time()
                head = f"step {step} ({step * a.batch} problems, {tokens / (t_eval - t0):.0f} tok/s) loss {loss_avg:.3f}"
                if step % (a.report_every or a.eval_every) == 0:
                    reached = self.report(head)
                    if a.stop_at and self.stage == len(self.stages) - 1 and reached >= a.stop_at:
                        self.save()
                        break
                else:
                    print(head, flush=True)
                self.save()
                if self.stage < len(self.stages) - 1:
                    reached = self.evaluate(self.stage_heldout[self.stage])["accuracy"]
                    print(f"  curriculum stage {self.stage}: held-out accuracy {reached:.3f}", flush=True)
                    if reached >= a.advance_at:
                        self.stage += 1
                        self.train = self.stages[self.stage]
                        print(f"  -> stage {self.stage} from step {step}", flush=True)
                t0 += time.time() - t_eval  # evaluation time does not count against the budget
        self.report(f"final step {step} loss {loss_avg:.3f}")
        self.save()

    def save(self) -> None:
        if self.args.save:
            self.model.save_pretrained(self.args.save)
            self.tok.save_pretrained(self.args.save)

    def report(self, head: str) -> float:
        """Print the target's held-out (and official) scores; return the held-out accuracy."""
        scores = self.evaluate(self.heldout)
        line = head + " | held-out " + _fmt(scores)
        if self.official:
            line += " | official " + _fmt(self.evaluate(self.official))
        print(line, flush=True)
        return scores["accuracy"]


def edited_copy(path: Path, edit, dest: Path) -> Path:
    """A staged JSON file of rows rewritten by ``edit`` (a probe's row edits), written to ``dest``."""
    write_json([edit(r) for r in json.loads(path.read_text())], dest)
    return dest


def lr_factor(step: int, warmup: int, progress: float) -> float:
    """Linear warm-up over ``warmup`` steps, then a cosine from 1 to 0.1 as ``progress`` goes 0 -> 1."""
    return min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def queried_person_only(row: dict) -> dict:
    """A ProsQA row whose question states facts about the queried person only (the other people's are
    dropped; rules stay): a stage where the answer is the option stated of that person, found without
    telling two people apart. The graph fields are left as they are (the probe reads text only)."""
    *sentences, question = re.split(r"(?<=\.) ", row["question"])
    name = parse_query(question)[0]
    kept = [s for s in sentences if s.startswith("Every ") or s.startswith(name + " ")]
    return dict(row, question=" ".join([*kept, question]))


def rewritten(row: dict, edit) -> dict:
    """``row`` with ``edit`` applied to its question, every step and its answer."""
    return dict(row, question=edit(row["question"]), steps=[edit(s) for s in row["steps"]], answer=edit(row["answer"]))


def adjacent_facts(row: dict) -> dict:
    """A ProsQA row with every stated fact "A is a B." (question, steps and answer) written "A B.": the
    concept right after its key, where copying what follows the current token finds it. A probe of the
    text, not a format to train on: the questions ("Is Tom a lempus or scrompus?") stay as they are."""
    def edit(text: str) -> str:
        return re.sub(r"\b(\w+) is a (\w+)\.", r"\1 \2.", text)

    return rewritten(row, edit)


def question_first(row: dict) -> dict:
    """A ProsQA row whose question sentence ("Is Tom a lempus or scrompus?") is also written before the
    facts, as well as after them: every fact is then read knowing whom and which two concepts the
    question is about (Arora et al. 2024's "just read twice"). A probe of the text; chain and answer
    stay as they are."""
    *_, question = re.split(r"(?<=\.) ", row["question"])
    return dict(row, question=f"{question} {row['question']}")


def queried_as_tom(row: dict) -> dict:
    """A ProsQA row whose queried person is called "Tom" (the two names swapped where someone else is
    Tom): the person to look up is then a fixed token, not a name to match against the question's.
    The probe's form of the pipeline's ``prosqa_queried_tom`` reader (one renaming for both)."""
    return rewritten(row, queried_renaming(row["question"]))


# A stage's probe keys that rewrite each generated row (several may be set; applied in this order).
ROW_EDITS = {"_queried_person_only": queried_person_only, "_adjacent": adjacent_facts,
             "_question_first": question_first, "_queried_as_tom": queried_as_tom}


def recall_rows_for(recall: dict, num: int, seed: int, _options) -> list[dict]:
    """``recall_rows`` with a stage's ``_recall`` options, called as the generators are."""
    return recall_rows(num, seed, **recall)


def recall_rows(num: int, seed: int, people: int | list[int] = 6, queries: int | list[int] = 4,
                rules: int = 4) -> list[dict]:
    """Associative recall in ProsQA's words: ``people`` people with one or two concepts each ("Tom is a
    lempus."), ``rules`` unrelated "Every ..." facts, all shuffled, then ``queries`` ProsQA questions
    ("Is Tom a lempus or scrompus?") whose wrong option is another person's concept. The chain answers
    them in order, one stated fact each; the answer is the last. Every question is the decision of
    ProsQA's one-hop problems (which option is stated of the queried person), asked several times per
    problem so each problem trains several look-ups keyed by a name. ``people`` and ``queries`` may be
    ``[lo, hi]`` ranges, drawn per problem (queries capped at people): with a fixed count a model can
    lean on the count (RESULTS.md, probes AE to AH)."""
    from lm_latent.data.generators.prosqa import CONCEPT_NAMES, PERSON_NAMES

    people_range = people if isinstance(people, list) else [people, people]
    queries_range = queries if isinstance(queries, list) else [queries, queries]
    lo, hi = people_range
    if not 2 <= lo <= hi <= len(PERSON_NAMES) or not 1 <= queries_range[0] <= queries_range[1]:
        raise ValueError(f"_recall needs 2 <= people <= {len(PERSON_NAMES)} and 1 <= queries, as counts or [lo, hi]")
    rng = random.Random(seed)
    draw = lambda lo, hi: lo if lo == hi else rng.randint(lo, hi)  # noqa: E731 (fixed counts draw nothing)
    rows = []
    for _ in range(num):
        n_people = draw(*people_range)
        names = rng.sample(PERSON_NAMES, n_people)
        counts = [rng.choice((1, 2)) for _ in names]
        concepts = rng.sample(CONCEPT_NAMES, sum(counts) + 2 * rules)
        owned, k = {}, 0
        for name, c in zip(names, counts):
            owned[name], k = concepts[k : k + c], k + c
        facts = [f"{n} is a {c}." for n in names for c in owned[n]]
        facts += [f"Every {a} is a {b}." for a, b in zip(concepts[k::2], concepts[k + 1 :: 2])]
        rng.shuffle(facts)
        asked, steps = [], []
        for name in rng.sample(names, min(n_people, draw(*queries_range))):
            right = rng.choice(owned[name])
            wrong = rng.choice([c for n in names if n != name for c in owned[n]])
            first, second = rng.sample([right, wrong], 2)
            asked.append(f"Is {name} a {first} or {second}?")
            steps.append(f"{name} is a {right}.")
        rows.append({"question": " ".join(facts + asked), "steps": steps, "answer": steps[-1]})
    return rows


def transplant_vocabulary(state: dict, old_tok, new_tok, model) -> dict:
    """Re-index the (tied) embedding rows of ``state`` from ``old_tok``'s ids to ``new_tok``'s, by token
    string, so a model can move on to a variant whose word list differs; unseen tokens keep ``model``'s
    fresh rows."""
    key = "model.embed_tokens.weight"
    old_rows, rows = state[key], model.state_dict()[key].clone()
    old_vocab = old_tok.get_vocab()
    carried = 0
    for token, new_id in new_tok.get_vocab().items():
        if token in old_vocab:
            rows[new_id] = old_rows[old_vocab[token]]
            carried += 1
    print(f"vocabulary: {carried} of {len(new_tok)} token rows carried over from --init", flush=True)
    state = dict(state, **{key: rows})
    if "lm_head.weight" in state:
        state["lm_head.weight"] = rows
    return state


def maze_counts_add(counts: dict[str, int], generated: str, ex) -> None:
    """Greedy plan scores: ``accuracy`` is feasibility; ``chain`` the exact A* trace; ``conclusion``
    an optimal plan; ``consistent`` a well-formed plan (feasible or not)."""
    scores = score_plan(parse_prompt(ex.question), generated, optimal_moves_of(ex))
    counts["accuracy"] += scores["feasible"]
    counts["chain"] += generated.startswith("\n".join(ex.steps))
    counts["conclusion"] += scores["optimal"]
    counts["consistent"] += scores["moves"] is not None


def counts_add(counts: dict[str, int], generated: str, ex) -> None:
    answer = generated.split("#")[-1].strip() if "#" in generated else ""
    counts["accuracy"] += answer == ex.answer.strip()
    counts["chain"] += generated.startswith("\n".join(ex.steps))
    lines = [line for line in generated.split("\n") if line and not line.startswith("#")]
    if not lines:
        return
    conclusion = lines[-1].strip()
    counts["conclusion"] += conclusion == ex.steps[-1].strip()
    query = ex.question.rsplit(":", 1)[-1].split()  # ProntoQA: "True or false: Alex is not happy."
    if answer in ("True", "False"):
        counts["consistent"] += (answer == "True") == (("not" in query) == ("not" in conclusion.split()))


def _fmt(m: dict[str, float]) -> str:
    return " ".join(f"{k} {v:.3f}" for k, v in m.items())


if __name__ == "__main__":
    torch.set_num_threads(1)
    torch.set_float32_matmul_precision("high")  # TF32 on a GPU; no effect on a CPU
    args = parse_args()
    torch.manual_seed(args.seed)
    Probe(args).run()
