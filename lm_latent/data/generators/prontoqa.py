"""ProntoQA-style data (5-hop fictional ontology): "True or false: Alex is not happy."

The official training split is not available, so training data is generated. The defaults reproduce
the structure of the staged validation/test files (1,000 rows, every one the same shape):

* A chain ``c1 -> ... -> c5`` of is-a rules; the entity is a ``c1``; ``c5`` has the queried property.
  Steps: "Alex is a c1. <rule c1 -> c2>" ... "Alex is a c5. <property rule of c5>", then "Alex is P."
  (or "Alex is not P."), each rule copied verbatim from the question.
* Decoys: every chain concept has one extra is-a branch whose concept has its own property, and
  ``c5`` one more branch with no property; the entity is also a second concept (with a property and
  one is-a rule to a property-less concept); one unrelated concept has the queried property with the
  opposite sign. That is 11 is-a rules, 12 property rules and 2 facts about the entity.
* The 23 rules come in random order, then the two entity facts in random order, then the query.
  Templates: "Every X is a Y." / "Each X is a Y." / "Xs are Ys." (1/4, 1/4, 1/2), likewise for
  properties with an optional "not". Apart from the contradicting concept, every property comes from
  a different property family (so the entity is never both hot and cold).
* The answer is "True" when the query's sign matches the chain's conclusion, with probability 1/2.

Graph fields follow the staged files' preprocessing: ``idx_to_symbol`` is the entity, the chain,
then (sorted) every other concept that is a rule's subject or the object of an "Every/Each X is a Y."
rule; ``edges`` are the is-a rules between those (the entity's own facts are not edges); ``root`` 0,
``target`` the last chain concept. ``neg_target`` is the concept carrying the contradicting property,
else the entity's off-chain concept, else -1 (in the staged files it is always index 6, a concept
with no particular role; nothing downstream reads it).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from lm_latent.data.generators.prosqa import concept_names, documented

ENTITY_NAMES: tuple[str, ...] = ("Alex", "Fae", "Max", "Polly", "Rex", "Sally", "Sam", "Stella", "Wren")
CONCEPT_NAMES: tuple[str, ...] = (
    "brimpus", "dumpus", "gorpus", "grimpus", "impus", "jompus", "lempus", "lorpus", "numpus", "rompus",
    "shumpus", "sterpus", "tumpus", "vumpus", "wumpus", "yumpus", "zumpus",
)  # fmt: skip
# ProntoQA's property families: an entity never gets two values of one family.
PROPERTY_FAMILIES: tuple[tuple[str, ...], ...] = (
    ("blue", "red", "brown", "orange"),
    ("small", "large"),
    ("metallic", "wooden", "luminous", "liquid"),
    ("transparent", "opaque"),
    ("nervous", "happy", "feisty", "shy"),
    ("bright", "dull"),
    ("sweet", "sour", "spicy", "bitter"),
    ("floral", "fruity", "earthy"),
    ("hot", "cold", "temperate"),
    ("kind", "mean", "angry", "amenable", "aggressive"),
    ("melodic", "muffled", "discordant", "loud"),
    ("slow", "moderate", "fast"),
    ("windy", "sunny", "overcast", "rainy", "snowy"),
)


@dataclass(frozen=True)
@documented
class ProntoQAOptions:
    """ProntoQA-style fictional ontologies; the defaults match the official 5-hop files."""

    hops: int = 5
    """Rules on the proof: hops - 1 is-a rules then the property rule; there are hops + 1 steps."""
    branches: int = 1
    """Decoy is-a branches off each chain concept, each with its own property (0: none, the chain only)."""
    entity_distractor: bool = True
    """Also make the entity a member of a second, off-chain concept ("Alex is a jompus.")."""
    contradicting_distractor: bool = True
    """Give an unrelated concept the queried property with the opposite sign ("Every lorpus is not happy.")."""
    contradicting_hops: int = 1
    """With the contradicting distractor: its concept ends a chain of this many is-a linked concepts,
    each earlier one with a property of its own (1: the official single concept). Longer chains mean
    every step of the real chain has a look-alike rule, so a step can only be copied by matching its
    subject; with 1, a model can copy the final rule by its property and guess its sign."""
    negation_prob: float = 0.29
    """Chance a decoy or non-final chain property is negated (the final one is negated half the time)."""
    true_prob: float = 0.5
    """Chance the answer is "True"."""
    templates: str = "official"
    """Rule wording: "official" mixes "Xs are Ys." / "Every X is a Y." / "Each X is a Y." (1/2, 1/4, 1/4),
    as the staged files do; "every" writes every rule as "Every X is ...", so a step quotes a rule
    that starts with a fixed word and copying it needs no look-back past its subject."""

    def __post_init__(self) -> None:
        problems = []
        if self.hops < 1:
            problems.append(f"hops must be >= 1, got {self.hops}")
        if self.contradicting_hops < 1:
            problems.append(f"contradicting_hops must be >= 1, got {self.contradicting_hops}")
        if self.branches < 0:
            problems.append(f"branches must be >= 0, got {self.branches}")
        if self.templates not in TEMPLATES:
            problems.append(f"templates must be one of {TEMPLATES}, got {self.templates!r}")
        for name in ("negation_prob", "true_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"{name} must be in [0, 1]")
        properties = sum(len(f) for f in PROPERTY_FAMILIES)
        if self.hops * (1 + self.branches) + int(self.entity_distractor) > properties:
            problems.append(f"more property-bearing concepts than the {properties} properties")
        if problems:
            raise ValueError("ProntoQAOptions: " + "; ".join(problems))


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _plural(concept: str) -> str:
    return concept + "es"  # every concept ends in "-us": "tumpus" -> "tumpuses"


TEMPLATES = ("official", "every")


def _rule(rng: random.Random, subject: str, obj: str, *, concept: bool, negated: bool = False,
          templates: str = "official") -> tuple[str, bool]:
    """One rule in a random template, and whether it is the singular "Every/Each X is ..." form."""
    not_ = "not " if negated else ""
    form = rng.random()  # drawn for every template set, so the other random choices stay aligned
    if templates == "every":
        form = 0.5
    if form < 0.5:
        obj_text = _plural(obj) if concept else obj
        return f"{_plural(subject).capitalize()} are {not_}{obj_text}.", False
    quantifier = "Every" if form < 0.75 else "Each"
    obj_text = f"{_article(obj)} {obj}" if concept else obj
    return f"{quantifier} {subject} is {not_}{obj_text}.", True


def _properties(rng: random.Random, k: int) -> list[str]:
    """k distinct property values, from k distinct families while families last."""
    families = list(PROPERTY_FAMILIES)
    rng.shuffle(families)
    chosen = [rng.choice(f) for f in families[:k]]
    if k > len(chosen):  # longer chains than ProntoQA's: families repeat, values stay distinct
        rest = sorted({p for f in PROPERTY_FAMILIES for p in f} - set(chosen))
        chosen += rng.sample(rest, k - len(chosen))
    return chosen


def _example(rng: random.Random, opts: ProntoQAOptions) -> dict[str, Any]:
    h, b = opts.hops, opts.branches
    entity = rng.choice(ENTITY_NAMES)
    k = opts.contradicting_hops if opts.contradicting_distractor else 0
    n_concepts = h + h * b + (1 if b else 0) + 2 * int(opts.entity_distractor) + k
    names = iter(concept_names(rng, n_concepts, CONCEPT_NAMES))
    chain = [next(names) for _ in range(h)]
    sides = [[next(names) for _ in range(b)] for _ in range(h)]  # property-bearing decoy branches
    empty_side = next(names) if b else None  # the final concept's extra branch, with no property
    second = (next(names), next(names)) if opts.entity_distractor else None  # (concept, its is-a object)
    others = [next(names) for _ in range(k)]  # the contradicting chain; its last concept has ~query
    other = others[-1] if others else None

    holders = chain + [s for ss in sides for s in ss] + ([second[0]] if second else []) + others[:-1]
    values = dict(zip(holders, _properties(rng, len(holders))))
    query = values[chain[-1]]
    final_negated = rng.random() < 0.5
    negated = {c: rng.random() < opts.negation_prob for c in holders}
    negated[chain[-1]] = final_negated

    rules: list[str] = []
    isa: list[tuple[str, str, str, bool]] = []  # (subject, object, text, singular form)
    step_rule: dict[str, str] = {}  # chain concept -> the rule its step quotes

    def add(subject: str, obj: str, *, concept: bool, negated: bool = False) -> str:
        text, singular = _rule(rng, subject, obj, concept=concept, negated=negated, templates=opts.templates)
        rules.append(text)
        if concept:
            isa.append((subject, obj, text, singular))
        return text

    for i, c in enumerate(chain):
        if i + 1 < h:
            step_rule[c] = add(c, chain[i + 1], concept=True)
        for s in sides[i] + ([empty_side] if i == h - 1 and empty_side else []):
            add(c, s, concept=True)
    if second is not None:
        add(*second, concept=True)
    for x, y in zip(others, others[1:]):
        add(x, y, concept=True)
    for c in holders:
        text = add(c, values[c], concept=False, negated=negated[c])
        if c == chain[-1]:
            step_rule[c] = text
    if other is not None:
        add(other, query, concept=False, negated=not final_negated)
    subjects = set(holders) | {x for x, _, _, _ in isa} | ({other} if other else set())

    rng.shuffle(rules)
    facts = [f"{entity} is {_article(chain[0])} {chain[0]}."]
    if second is not None:
        facts.append(f"{entity} is {_article(second[0])} {second[0]}.")
    rng.shuffle(facts)
    answer = rng.random() < opts.true_prob
    # The query restates the chain's conclusion when the answer is True, and negates it otherwise.
    query_negated = final_negated if answer else not final_negated
    query_text = f"True or false: {entity} is {'not ' if query_negated else ''}{query}."

    steps = [f"{entity} is {_article(c)} {c}. {step_rule[c]}" for c in chain]
    steps.append(f"{entity} is {'not ' if final_negated else ''}{query}.")

    # The staged files' graph: subjects and singular-form objects; the entity's facts are not edges.
    named = subjects | {y for _, y, _, singular in isa if singular}
    symbols = [entity] + chain + sorted(named - set(chain))
    index = {s: i for i, s in enumerate(symbols)}
    question_order = {text: k for k, text in enumerate(rules)}
    edges = sorted(
        ((index[x], index[y], question_order[text]) for x, y, text, _ in isa if x in index and y in index),
        key=lambda e: e[2],
    )
    # The concept that would make the wrong answer look right; else the entity's off-chain concept.
    distractor = other if other is not None else (second[0] if second is not None else None)
    return {
        "question": " ".join(rules + facts) + " " + query_text,
        "steps": steps,
        "answer": "True" if answer else "False",
        "idx_to_symbol": symbols,
        "edges": [[a, b] for a, b, _ in edges],
        "root": 0,
        "target": h,
        "neg_target": index[distractor] if distractor is not None else -1,
        "chain_concepts": chain,
    }


def generate(num: int, seed: int, options: ProntoQAOptions | None = None) -> list[dict[str, Any]]:
    """``num`` ProntoQA-style records in the staged files' JSON schema; same arguments, same records."""
    if num < 0:
        raise ValueError(f"num must be >= 0, got {num}")
    opts = options if options is not None else ProntoQAOptions()
    rng = random.Random(seed)  # never the global stream: output depends on (num, seed, options) only
    return [_example(rng, opts) for _ in range(num)]
