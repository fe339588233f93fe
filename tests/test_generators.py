"""ProsQA/ProntoQA generators: every example is correct, the statistics match the official splits,
output is deterministic, and the harder/easier options move the statistics the expected way."""

from __future__ import annotations

import dataclasses
import json
import re
from collections import defaultdict
from pathlib import Path

import pytest

from lm_latent.data.generators import GENERATORS, ProntoQAOptions, ProsQAOptions, prontoqa, prosqa, write_json
from lm_latent.data.generators.stats import answer_balance, distribution, relative_gaps, summarize

N = 2000  # examples checked per generator
PROSQA_KEYS = {"question", "answer", "steps", "idx_to_symbol", "edges", "root", "target", "neg_target"}
PRONTOQA_KEYS = PROSQA_KEYS | {"chain_concepts"}


@pytest.fixture(scope="module")
def shared_data() -> Path:
    path = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"staged data folder {path} is absent: official statistics cannot be measured")
    return path


@pytest.fixture(scope="module")
def official_prosqa(shared_data: Path) -> list[dict]:
    return json.loads((shared_data / "prosqa" / "valid.json").read_text())


@pytest.fixture(scope="module")
def official_prontoqa(shared_data: Path) -> list[dict]:
    return json.loads((shared_data / "prontoqa" / "valid.json").read_text())


@pytest.fixture(scope="module")
def prosqa_records() -> list[dict]:
    return prosqa.generate(N, seed=0)


@pytest.fixture(scope="module")
def prontoqa_records() -> list[dict]:
    return prontoqa.generate(N, seed=0)


def _distances(n: int, edges: list[list[int]], source: int) -> list[int]:
    children = defaultdict(list)
    for a, b in edges:
        children[a].append(b)
    dist = [-1] * n
    dist[source] = 0
    frontier = [source]
    while frontier:
        nxt = []
        for u in frontier:
            for v in children[u]:
                if dist[v] < 0:
                    dist[v] = dist[u] + 1
                    nxt.append(v)
        frontier = nxt
    return dist


def _sentences(text: str) -> list[str]:
    return re.findall(r"[^.?]+[.?]", text)


# ---------------------------------------------------------------------------------------------
# ProsQA


def _prosqa_fact(record: dict, a: int, b: int) -> str:
    s = record["idx_to_symbol"]
    return f"{s[a]} is a {s[b]}." if s[a][0].isupper() else f"Every {s[a]} is a {s[b]}."


def test_prosqa_graph_question_and_answer_agree(prosqa_records: list[dict]) -> None:
    for r in prosqa_records:
        assert set(r) == PROSQA_KEYS
        s, n = r["idx_to_symbol"], len(r["idx_to_symbol"])
        assert len(set(s)) == n and all(0 <= a < b < n for a, b in r["edges"])  # topological indices
        assert len({tuple(e) for e in r["edges"]}) == len(r["edges"])
        root, target, neg = r["root"], r["target"], r["neg_target"]
        assert root in (0, 1) and s[root] in prosqa.PERSON_NAMES
        dist = _distances(n, r["edges"], root)
        assert dist[target] > 0, "the root must reach the target"
        assert dist[neg] < 0, "the root must not reach the distractor"
        assert _distances(n, r["edges"], 1 - root)[neg] > 0, "the distractor hangs below the other person"
        # The question states exactly the edges, once each, then asks about the two options.
        *facts, ask = _sentences(r["question"])
        assert sorted(f.strip() for f in facts) == sorted(_prosqa_fact(r, a, b) for a, b in r["edges"])
        m = re.fullmatch(r" Is (\w+) a (\w+) or (\w+)\?", ask)
        assert m and m[1] == s[root] and {m[2], m[3]} == {s[target], s[neg]}
        assert r["answer"] == f"{s[root]} is a {s[target]}."


def test_prosqa_steps_are_a_shortest_chain_of_stated_facts(prosqa_records: list[dict]) -> None:
    for r in prosqa_records:
        stated = {f.strip() for f in _sentences(r["question"])}
        s = r["idx_to_symbol"]
        subject = s[r["root"]]
        for step in r["steps"]:
            assert step in stated, f"step {step!r} is not a fact of the question"
            m = re.fullmatch(r"(?:Every )?(\w+) is a (\w+)\.", step)
            assert m and m[1] == subject, "consecutive steps must connect"
            subject = m[2]
        assert subject == s[r["target"]]
        assert len(r["steps"]) == _distances(len(s), r["edges"], r["root"])[r["target"]]


def test_prosqa_answer_options_come_in_both_orders(prosqa_records: list[dict]) -> None:
    target_first = []
    for r in prosqa_records:
        s = r["idx_to_symbol"]
        target_first.append(r["question"].endswith(f"a {s[r['target']]} or {s[r['neg_target']]}?"))
    assert 0.45 < sum(target_first) / len(target_first) < 0.55


def test_prosqa_vocabulary_is_the_official_one(official_prosqa: list[dict], prosqa_records: list[dict]) -> None:
    official = {w for r in official_prosqa for w in r["idx_to_symbol"]}
    assert official == set(prosqa.PERSON_NAMES) | set(prosqa.CONCEPT_NAMES)
    assert {w for r in prosqa_records for w in r["idx_to_symbol"]} <= official
    assert not {r["question"] for r in prosqa_records} & {r["question"] for r in official_prosqa}  # no leak
    assert set(official_prosqa[0]) == PROSQA_KEYS


def test_prosqa_query_is_parsed_from_official_and_generated_questions(
    official_prosqa: list[dict], prosqa_records: list[dict]
) -> None:
    for r in official_prosqa + prosqa_records:
        s = r["idx_to_symbol"]
        person, *options = prosqa.parse_query(r["question"] + " ")  # trailing space is tolerated
        assert person == s[r["root"]] and set(options) == {s[r["target"]], s[r["neg_target"]]}
    assert prosqa.parse_query("Tom is a wumpus. Is Tom a wumpus or a lempus?") is None
    assert prosqa.parse_query("Is Tom a wumpus or lempus? Tom is a wumpus.") is None


def test_prosqa_statistics_match_the_official_valid_split(
    official_prosqa: list[dict], prosqa_records: list[dict]
) -> None:
    ours, ref = summarize(prosqa_records), summarize(official_prosqa)
    gaps = relative_gaps(ours, ref)
    assert set(gaps) == {"nodes", "edges", "steps", "question_words"}
    assert all(g < 0.10 for g in gaps.values()), gaps
    assert (ours["steps"]["min"], ours["steps"]["max"]) == (ref["steps"]["min"], ref["steps"]["max"]) == (3, 6)
    # The step-count shape, not only its mean: every length keeps roughly its official share.
    ours_d, ref_d = (distribution(len(r["steps"]) for r in rs) for rs in (prosqa_records, official_prosqa))
    assert all(abs(ours_d[k] - ref_d[k]) < 0.05 for k in ref_d), (ours_d, ref_d)


def test_prosqa_harder_and_easier_variants_move_the_statistics() -> None:
    base = summarize(prosqa.generate(300, 1))
    hard = summarize(prosqa.generate(300, 1, ProsQAOptions(min_nodes=30, max_nodes=40, min_steps=5, max_steps=8)))
    easy = summarize(prosqa.generate(300, 1, ProsQAOptions(min_nodes=8, max_nodes=12, min_steps=1, max_steps=3)))
    for m in ("nodes", "edges", "steps", "question_words"):
        assert easy[m]["mean"] < base[m]["mean"] < hard[m]["mean"], m
    assert hard["steps"]["min"] >= 5 and hard["steps"]["max"] <= 8
    assert easy["steps"]["max"] <= 3
    denser = summarize(prosqa.generate(300, 1, ProsQAOptions(parents_rate=2.5)))
    assert denser["edges"]["mean"] > base["edges"]["mean"] * 1.15


def test_prosqa_big_graphs_get_made_up_concept_names() -> None:
    records = prosqa.generate(20, 3, ProsQAOptions(min_nodes=60, max_nodes=70, min_steps=4, max_steps=12))
    for r in records:
        assert len(set(r["idx_to_symbol"])) == len(r["idx_to_symbol"]) >= 60
        assert all(w[0].isupper() or w.endswith("pus") for w in r["idx_to_symbol"])


def test_prosqa_options_are_checked() -> None:
    with pytest.raises(ValueError, match="min_nodes"):
        ProsQAOptions(min_nodes=30, max_nodes=20)
    with pytest.raises(ValueError, match="min_steps"):
        ProsQAOptions(min_steps=0)
    with pytest.raises(ValueError, match="tries"):
        prosqa.generate(1, 0, ProsQAOptions(min_nodes=8, max_nodes=8, min_steps=9, max_steps=9, max_tries=5))


# ---------------------------------------------------------------------------------------------
# ProntoQA

_ISA = (
    re.compile(r"(?:Every|Each) (?P<x>\w+) is (?P<neg>not )?an? (?P<y>\w+)\."),
    re.compile(r"(?P<x>\w+)es are (?P<neg>not )?(?P<y>\w+)es\."),
)
_PROP = (
    re.compile(r"(?:Every|Each) (?P<x>\w+) is (?P<neg>not )?(?P<y>\w+)\."),
    re.compile(r"(?P<x>\w+)es are (?P<neg>not )?(?P<y>\w+)\."),
)


def _parse_rule(sentence: str) -> tuple[str, str, str, bool]:
    """(kind "isa"/"prop", subject, object, negated) of one ProntoQA rule, in any of its templates."""
    for kind, patterns in (("isa", _ISA), ("prop", _PROP)):
        for p in patterns:
            m = p.fullmatch(sentence)
            if m:
                return kind, m["x"].lower(), m["y"], bool(m["neg"])
    raise AssertionError(f"not a rule: {sentence!r}")


def _solve(question: str) -> tuple[str, dict[str, set[bool]], str, bool]:
    """Forward-chain the question's facts: (entity, its properties with signs, queried property, negated)."""
    body, query = question.split(" True or false: ")
    entity, concepts, isa, props = "", set(), defaultdict(list), defaultdict(list)
    for sentence in (s.strip() for s in _sentences(body)):
        m = re.fullmatch(r"([A-Z][a-z]+) is an? (\w+)\.", sentence)  # rules never have a one-word subject
        if m:
            entity = m[1]
            concepts.add(m[2])
            continue
        kind, x, y, neg = _parse_rule(sentence)
        assert not (kind == "isa" and neg)
        (isa if kind == "isa" else props)[x].append((y, neg))
    frontier = list(concepts)
    while frontier:
        for y, _ in isa[frontier.pop()]:
            if y not in concepts:
                concepts.add(y)
                frontier.append(y)
    have: dict[str, set[bool]] = defaultdict(set)
    for c in concepts:
        for p, neg in props[c]:
            have[p].add(not neg)
    m = re.fullmatch(rf"{entity} is (not )?(\w+)\.", query)
    assert m, query
    return entity, have, m[2], bool(m[1])


def test_prontoqa_answer_is_what_the_facts_imply(prontoqa_records: list[dict]) -> None:
    for r in prontoqa_records:
        assert set(r) == PRONTOQA_KEYS
        entity, have, prop, negated = _solve(r["question"])
        assert entity == r["idx_to_symbol"][0]
        assert all(len(signs) == 1 for signs in have.values()), "the facts must not contradict each other"
        (has,) = have[prop]  # does the entity have the queried property?
        assert r["answer"] == str(has != negated)  # "is P" holds iff it has P; "is not P" iff it lacks P


def test_prontoqa_steps_walk_the_chain(prontoqa_records: list[dict]) -> None:
    for r in prontoqa_records:
        stated = {s.strip() for s in _sentences(r["question"])}
        entity, chain = r["idx_to_symbol"][0], r["chain_concepts"]
        assert len(r["steps"]) == len(chain) + 1 == 6
        assert r["idx_to_symbol"][1 : len(chain) + 1] == chain and (r["root"], r["target"]) == (0, len(chain))
        assert any(f"{entity} is {a} {chain[0]}." in stated for a in ("a", "an"))
        for i, (step, concept) in enumerate(zip(r["steps"], chain)):
            member, rule = step.split(". ", 1)
            assert member in (f"{entity} is a {concept}", f"{entity} is an {concept}")
            assert rule in stated, f"step rule {rule!r} is not in the question"
            kind, x, y, neg = _parse_rule(rule)
            assert x == concept
            if i + 1 < len(chain):
                assert (kind, y) == ("isa", chain[i + 1])
            else:
                assert kind == "prop"
                assert r["steps"][-1] == f"{entity} is {'not ' if neg else ''}{y}."
        # The graph: the chain is a path from the entity's concept; the distractor is off it.
        dist = _distances(len(r["idx_to_symbol"]), r["edges"], 1)
        assert dist[r["target"]] == len(chain) - 1
        assert dist[r["neg_target"]] < 0 and r["neg_target"] > r["target"]


def test_prontoqa_answers_are_balanced(prontoqa_records: list[dict]) -> None:
    balance = answer_balance(prontoqa_records)
    assert set(balance) == {"True", "False"} and 0.45 < balance["True"] < 0.55


def test_prontoqa_vocabulary_and_templates_are_the_official_ones(
    official_prontoqa: list[dict], prontoqa_records: list[dict]
) -> None:
    def words(records: list[dict]) -> tuple[set[str], set[str], set[str]]:
        entities = {r["idx_to_symbol"][0] for r in records}
        concepts, props = set(), set()
        for r in records:
            body = r["question"].split(" True or false: ")[0]
            for sentence in _sentences(body):
                if not sentence.strip().startswith(r["idx_to_symbol"][0] + " "):
                    kind, x, y, _ = _parse_rule(sentence.strip())  # raises on an unknown template
                    concepts.add(x)
                    (concepts if kind == "isa" else props).add(y)
        return entities, concepts, props

    assert set(official_prontoqa[0]) == PRONTOQA_KEYS
    official = words(official_prontoqa)
    assert official[0] == set(prontoqa.ENTITY_NAMES) and official[1] == set(prontoqa.CONCEPT_NAMES)
    assert official[2] <= {p for f in prontoqa.PROPERTY_FAMILIES for p in f}
    ours = words(prontoqa_records)
    assert all(o <= off for o, off in zip(ours, official))
    assert not {r["question"] for r in prontoqa_records} & {r["question"] for r in official_prontoqa}  # no leak


def test_prontoqa_statistics_match_the_official_valid_split(
    official_prontoqa: list[dict], prontoqa_records: list[dict]
) -> None:
    ours, ref = summarize(prontoqa_records), summarize(official_prontoqa)
    assert all(g < 0.10 for g in relative_gaps(ours, ref).values()), relative_gaps(ours, ref)
    for m in ("nodes", "edges", "steps"):
        assert (ours[m]["min"], ours[m]["max"]) == (ref[m]["min"], ref[m]["max"]), m
    # Same number of sentences (23 rules, 2 facts about the entity, the query) in every question.
    assert {len(re.findall(r"[.:]", r["question"])) for r in prontoqa_records} == {27}


def test_prontoqa_harder_and_easier_variants_move_the_statistics() -> None:
    base = summarize(prontoqa.generate(300, 1))
    hard = summarize(prontoqa.generate(300, 1, ProntoQAOptions(hops=8, branches=2)))
    easy = prontoqa.generate(
        300, 1, ProntoQAOptions(hops=3, branches=0, entity_distractor=False, contradicting_distractor=False)
    )
    for m in ("nodes", "edges", "steps", "question_words"):
        assert summarize(easy)[m]["mean"] < base[m]["mean"] < hard[m]["mean"], m
    assert hard["steps"]["min"] == hard["steps"]["max"] == 9
    assert all(r["neg_target"] == -1 and len(r["steps"]) == 4 for r in easy)
    for r in prontoqa.generate(50, 2, ProntoQAOptions(hops=12)):  # longer than the property families
        _, have, _, _ = _solve(r["question"])
        assert all(len(signs) == 1 for signs in have.values())


def test_prontoqa_every_template_changes_only_the_wording() -> None:
    """templates="every": every rule reads "Every X is ...", steps still quote their rules verbatim,
    and everything else (names, chain, answer) is what the official mix draws for the same seed."""
    official = prontoqa.generate(100, 5, ProntoQAOptions(hops=2, branches=0))
    every = prontoqa.generate(100, 5, ProntoQAOptions(hops=2, branches=0, templates="every"))
    for a, b in zip(official, every):
        entity = b["steps"][0].split()[0]
        rules = [s.strip() + "." for s in b["question"].split(".")[:-2] if s.strip() and not s.strip().startswith(entity)]
        assert rules and all(r.startswith("Every ") for r in rules), rules
        assert all(step.split(". ", 1)[-1] in b["question"] for step in b["steps"][:-1])
        assert (a["answer"], a["chain_concepts"], a["steps"][-1]) == (b["answer"], b["chain_concepts"], b["steps"][-1])
    assert any("Each " in r["question"] or "es are " in r["question"] for r in official)


def test_prontoqa_options_are_checked() -> None:
    with pytest.raises(ValueError, match="templates"):
        ProntoQAOptions(templates="each")
    with pytest.raises(ValueError, match="contradicting_hops"):
        ProntoQAOptions(contradicting_hops=0)
    with pytest.raises(ValueError, match="hops"):
        ProntoQAOptions(hops=0)
    with pytest.raises(ValueError, match="true_prob"):
        ProntoQAOptions(true_prob=1.5)


# ---------------------------------------------------------------------------------------------
# Both


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_same_seed_same_bytes_other_seed_other_data(name: str, tmp_path: Path) -> None:
    options_cls, generate = GENERATORS[name]
    write_json(generate(200, 7, options_cls()), tmp_path / "a.json")
    write_json(generate(200, 7, options_cls()), tmp_path / "b.json")
    write_json(generate(200, 8, options_cls()), tmp_path / "c.json")
    a, b, c = ((tmp_path / f).read_bytes() for f in ("a.json", "b.json", "c.json"))
    assert a == b and a != c
    assert json.loads(a) == generate(200, 7, options_cls())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.json", "c.json"]  # no temp files left


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_options_are_plain_documented_dataclasses(name: str) -> None:
    options_cls, generate = GENERATORS[name]
    assert dataclasses.is_dataclass(options_cls) and generate(0, 0, options_cls()) == []
    for f in dataclasses.fields(options_cls):
        assert type(f.default) in (int, float, bool, str), f.name
        assert len(f.metadata.get("help", "")) > 20, f"option {f.name} has no docstring"


def test_write_json_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    path = tmp_path / "data.json"
    write_json([{"a": 1}], path)
    with pytest.raises(TypeError):
        write_json([{"a": object()}], path)
    assert json.loads(path.read_text()) == [{"a": 1}]
    assert [p.name for p in tmp_path.iterdir()] == ["data.json"]
