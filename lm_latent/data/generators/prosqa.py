"""ProsQA-style data: "Is Tom a lempus or scrompus?" over a random DAG of is-a facts.

The official training split (Coconut, 17,886 rows) is not available, so training data is generated.
The defaults reproduce the official validation split's measured statistics (nodes 22.8, edges 36.3,
steps 3.75 in 3..6, question 180 words; see ``tests/test_generators.py``, which measures both).

How a graph is built (following the structure measured on the official split):

* Nodes are added one at a time, so node indices are a topological order and every edge goes from a
  lower to a higher index. Nodes 0 and 1 are people; one of them becomes the question's subject (the
  *root*), the other seeds the distractor's side of the graph.
* Every node remembers which of people 0 and 1 reach it (a two-bit side label). A new concept draws
  its parents either from one side only (so it stays exclusive to that side) or from anywhere;
  deeper nodes are preferred as parents, which is what makes multi-hop chains.
* Rarely a new node is an extra person: noise facts about someone the question is not about.
* The target is the deepest leaf reachable from the root only; the distractor (``neg_target``) is a
  leaf reachable from the other person only, no further from them than the target is from the root
  (as in every official row). ``steps`` is one shortest root-to-target path, one fact per hop, each
  copied verbatim from the question; the two options are asked in random order.
"""

from __future__ import annotations

import ast
import heapq
import inspect
import math
import random
import re
import textwrap
from dataclasses import dataclass, field
from typing import Any, TypeVar

# The vocabulary of the official validation split (17 people, 38 concepts). Concepts never take
# "an": the official text writes "a impus", and so do we.
PERSON_NAMES: tuple[str, ...] = (
    "Alex", "Bob", "Carol", "Davis", "Eva", "Fae", "Gabriel", "Jack", "Max", "Oliver", "Polly", "Rex",
    "Sally", "Sam", "Stella", "Tom", "Wren",
)  # fmt: skip
CONCEPT_NAMES: tuple[str, ...] = (
    "bompus", "boompus", "brimpus", "chorpus", "dumpus", "felpus", "fompus", "gerpus", "gorpus",
    "grimpus", "gwompus", "hilpus", "impus", "jelpus", "jompus", "kerpus", "lempus", "lorpus",
    "numpus", "quimpus", "rempus", "rompus", "rorpus", "scrompus", "shumpus", "sterpus", "storpus",
    "terpus", "timpus", "tumpus", "vumpus", "worpus", "wumpus", "yerpus", "yimpus", "yumpus",
    "zhorpus", "zumpus",
)  # fmt: skip

# Onsets and vowels for extra nonsense "-pus" names, used only when a variant needs more concepts
# than the official vocabulary has (graphs of more than ~40 nodes).
_ONSETS = ("b", "bl", "br", "ch", "d", "dr", "f", "fl", "g", "gl", "gr", "h", "j", "k", "kl", "l", "m",
           "n", "p", "pl", "qu", "r", "s", "sk", "sl", "sn", "st", "t", "tr", "v", "w", "y", "z", "zh")  # fmt: skip
_NUCLEI = ("a", "e", "i", "o", "u", "oo", "ee")
_CODAS = ("l", "m", "r", "lm", "rm", "n")

T = TypeVar("T")


def documented(cls: type[T]) -> type[T]:
    """Copy each field's attribute docstring into ``field(metadata={"help": ...})``.

    Apply below ``@dataclass`` (so it runs first). The docstring under a field stays the single place
    that documents it, and the command line (``lm-latent data generate NAME -h``) shows the same text.
    """
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):  # no source (frozen install): fields just lack help
        return cls
    body = tree.body[0].body  # type: ignore[attr-defined]
    for node, nxt in zip(body, body[1:]):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
            and node.target.id in cls.__dict__
        ):
            doc = " ".join(nxt.value.value.split())
            setattr(cls, node.target.id, field(default=cls.__dict__[node.target.id], metadata={"help": doc}))
    return cls


@dataclass(frozen=True)
@documented
class ProsQAOptions:
    """ProsQA-style graphs; the defaults match the official validation split's statistics."""

    min_nodes: int = 17
    """Fewest nodes (people and concepts) drawn for a graph; the count is binomial between min and max."""
    max_nodes: int = 28
    """Most nodes drawn for a graph. Raise both bounds for bigger graphs with more noise facts."""
    min_steps: int = 3
    """Shortest reasoning chain (hops from the person to the answer); graphs without one are redrawn."""
    max_steps: int = 6
    """Longest reasoning chain: the target is the deepest root-only leaf within [min_steps, max_steps]."""
    parents_rate: float = 1.5
    """Poisson rate of a new concept's number of parents (at least 1): more means more edges and paths."""
    depth_bias: float = 1.5
    """A candidate parent's weight is 1 + depth_bias * its depth: higher gives deeper graphs and longer chains."""
    one_side_prob: float = 0.8
    """Chance a new concept takes parents from one person's side only (else from anywhere): the distractor branch."""
    extra_person_prob: float = 0.03
    """Chance a new node is an extra person, whose facts are noise."""
    max_tries: int = 1000
    """Graphs redrawn per example before giving up with an error (the options cannot meet the step range)."""

    def __post_init__(self) -> None:
        problems = []
        if not 4 <= self.min_nodes <= self.max_nodes:
            problems.append(f"need 4 <= min_nodes <= max_nodes, got {self.min_nodes}, {self.max_nodes}")
        if not 1 <= self.min_steps <= self.max_steps:
            problems.append(f"need 1 <= min_steps <= max_steps, got {self.min_steps}, {self.max_steps}")
        if self.parents_rate <= 0 or self.depth_bias < 0:
            problems.append("parents_rate must be > 0 and depth_bias >= 0")
        for name in ("one_side_prob", "extra_person_prob"):
            if not 0.0 <= getattr(self, name) < 1.0:
                problems.append(f"{name} must be in [0, 1)")
        if self.max_tries < 1:
            problems.append("max_tries must be >= 1")
        if problems:
            raise ValueError("ProsQAOptions: " + "; ".join(problems))


@dataclass
class _Graph:
    """Nodes 0..n-1 in construction (topological) order; ``side`` bit 1 = reached by person 0, bit 2 = by 1."""

    person: list[bool]
    side: list[int]
    parents: list[list[int]]
    edges: list[tuple[int, int]]


def _zero_truncated_poisson(rng: random.Random, rate: float) -> int:
    """Poisson(rate) conditioned on >= 1, by inversion (no numpy: one shared seeded stream)."""
    u = rng.random() * (1.0 - math.exp(-rate)) + math.exp(-rate)  # uniform over the mass of k >= 1
    k, p = 0, math.exp(-rate)
    cum = p
    while cum < u:
        k += 1
        p *= rate / k
        cum += p
    return max(k, 1)


def _weighted_sample(rng: random.Random, items: list[int], inv_weights: list[float], k: int) -> list[int]:
    """k distinct items drawn without replacement, each proportionally to its weight.

    Efraimidis-Spirakis: keep the k largest keys u ** (1 / weight); ``inv_weights`` is indexed by item.
    """
    keyed = heapq.nlargest(k, ((rng.random() ** inv_weights[i], i) for i in items))
    return [i for _, i in keyed]


def _build_graph(rng: random.Random, opts: ProsQAOptions) -> _Graph:
    span = opts.max_nodes - opts.min_nodes
    n = opts.min_nodes + sum(rng.random() < 0.5 for _ in range(span))
    person, side, depth = [True, True], [1, 2], [0, 0]
    inv_weight = [1.0, 1.0]  # 1 / (1 + depth_bias * depth): deeper nodes are likelier parents
    parents: list[list[int]] = [[], []]
    # Candidate parents, in index order: a node below person 0 only must avoid everything person 1
    # reaches, and the other way round; nodes neither reaches (extra people's) suit both.
    not_below_1, not_below_0 = [0], [1]
    edges: list[tuple[int, int]] = []
    n_people = 2
    for idx in range(2, n):
        # The last node is always a concept, so every extra person can be given a child below;
        # extra people stop when the names run out.
        if idx < n - 1 and n_people < len(PERSON_NAMES) and rng.random() < opts.extra_person_prob:
            person.append(True), side.append(0), depth.append(0), inv_weight.append(1.0), parents.append([])
            not_below_1.append(idx), not_below_0.append(idx)
            n_people += 1
            continue
        u = rng.random()
        if u < opts.one_side_prob / 2:
            cands = not_below_1
        elif u < opts.one_side_prob:
            cands = not_below_0
        else:
            cands = list(range(idx))
        k = min(_zero_truncated_poisson(rng, opts.parents_rate), len(cands))
        chosen = _weighted_sample(rng, cands, inv_weight, k)
        label = 0
        for c in chosen:
            label |= side[c]
            edges.append((c, idx))
        d = 1 + max(depth[c] for c in chosen)
        person.append(False), side.append(label), depth.append(d), parents.append(chosen)
        inv_weight.append(1.0 / (1.0 + opts.depth_bias * d))
        if label in (0, 1):
            not_below_1.append(idx)
        if label in (0, 2):
            not_below_0.append(idx)
    # An extra person nobody chose as a parent gets one later concept, so no name dangles alone.
    has_child = {a for a, _ in edges}
    for p in range(2, n):
        if person[p] and p not in has_child:
            child = rng.choice([c for c in range(p + 1, n) if not person[c]])
            parents[child].append(p)
            edges.append((p, child))
    edges.sort(key=lambda e: e[1])  # stable: per child, parents stay in the order they were drawn
    return _Graph(person, side, parents, edges)


def _distances(n: int, edges: list[tuple[int, int]], source: int) -> list[int]:
    """Hop distance from ``source`` to every node (-1 where unreachable); edges are topological."""
    dist = [-1] * n
    dist[source] = 0
    children: list[list[int]] = [[] for _ in range(n)]
    for a, b in edges:
        children[a].append(b)
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


def _pick_question(rng: random.Random, g: _Graph, opts: ProsQAOptions) -> tuple[int, int, int, list[int]] | None:
    """(root, target, neg_target, path) for the graph, or None when no target fits the step range."""
    n = len(g.person)
    has_child = [False] * n
    for a, _ in g.edges:
        has_child[a] = True
    dists = [_distances(n, g.edges, 0), _distances(n, g.edges, 1)]
    leaves = [[v for v in range(n) if not g.person[v] and not has_child[v] and g.side[v] == 1 << r] for r in (0, 1)]
    targets = [
        (dists[r][v], r, v) for r in (0, 1) for v in leaves[r] if opts.min_steps <= dists[r][v] <= opts.max_steps
    ]
    if not targets:
        return None
    deepest = max(t[0] for t in targets)
    steps, root, target = rng.choice([t for t in targets if t[0] == deepest])
    other = 1 - root
    negs = [v for v in leaves[other] if dists[other][v] <= steps]
    if not negs:
        return None
    neg = rng.choice(negs)
    # Walk back from the target along edges that lose exactly one hop: a random shortest path.
    path = [target]
    while path[-1] != root:
        v = path[-1]
        path.append(rng.choice([u for u in g.parents[v] if dists[root][u] == dists[root][v] - 1]))
    return root, target, neg, path[::-1]


def concept_names(rng: random.Random, k: int, base: tuple[str, ...] = CONCEPT_NAMES) -> list[str]:
    """k distinct concept names in random order.

    ``base`` (a dataset's official vocabulary) is used alone whenever it is big enough, which it is for
    the default options; bigger variants add ProsQA's official concepts, then made-up "-pus" names.
    """
    pool = list(base)
    if k > len(pool):
        have = set(pool)
        extra = list(CONCEPT_NAMES) + [o + v + c + "pus" for o in _ONSETS for v in _NUCLEI for c in _CODAS]
        pool += [w for w in dict.fromkeys(extra) if w not in have][: k - len(pool)]
    if k > len(pool):
        raise ValueError(f"cannot name {k} distinct concepts (at most {len(pool)})")
    return rng.sample(pool, k)


# The query every ProsQA question ends with (see ``_example``); ``parse_query`` is its one parser.
_QUERY = re.compile(r"Is (\w+) a (\w+) or (\w+)\?$")


def parse_query(question: str) -> tuple[str, str, str] | None:
    """``(person, first option, second option)`` of a question ending "Is <person> a <A> or <B>?",
    or None when it does not end so. Readers, the constant-answer floor and the chain checks all read
    the query here, so they agree on what a ProsQA question is."""
    found = _QUERY.search(question.rstrip())
    return found.groups() if found else None


def _fact(names: list[str], person: list[bool], a: int, b: int) -> str:
    return f"{names[a]} is a {names[b]}." if person[a] else f"Every {names[a]} is a {names[b]}."


def _example(rng: random.Random, opts: ProsQAOptions) -> dict[str, Any]:
    for _ in range(opts.max_tries):
        g = _build_graph(rng, opts)
        picked = _pick_question(rng, g, opts)
        if picked is not None:
            break
    else:
        raise ValueError(
            f"no graph with a {opts.min_steps}..{opts.max_steps}-step chain in {opts.max_tries} tries: "
            "raise max_nodes or depth_bias, or widen the step range"
        )
    root, target, neg, path = picked
    n_people = sum(g.person)  # never more than the names: _build_graph stops adding people there
    people = iter(rng.sample(PERSON_NAMES, n_people))
    concepts = iter(concept_names(rng, len(g.person) - n_people))
    names = [next(people) if p else next(concepts) for p in g.person]

    facts = [_fact(names, g.person, a, b) for a, b in g.edges]
    rng.shuffle(facts)
    options = [names[target], names[neg]]
    rng.shuffle(options)
    return {
        "question": " ".join(facts) + f" Is {names[root]} a {options[0]} or {options[1]}?",
        "answer": f"{names[root]} is a {names[target]}.",
        "steps": [_fact(names, g.person, a, b) for a, b in zip(path, path[1:])],
        "idx_to_symbol": names,
        "edges": [[a, b] for a, b in g.edges],
        "root": root,
        "target": target,
        "neg_target": neg,
    }


def generate(num: int, seed: int, options: ProsQAOptions | None = None) -> list[dict[str, Any]]:
    """``num`` ProsQA-style records in Coconut's JSON schema; the same arguments give the same records."""
    if num < 0:
        raise ValueError(f"num must be >= 0, got {num}")
    opts = options if options is not None else ProsQAOptions()
    rng = random.Random(seed)  # never the global stream: output depends on (num, seed, options) only
    return [_example(rng, opts) for _ in range(num)]
