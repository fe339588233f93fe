"""Keys-Finding Maze data (Token Assorted's planning task, in Searchformer's token scheme).

Each record is one maze: the prompt states it (``size w h start x y goal x y wall x y ... key red x y
door red x y``; :mod:`lm_latent.data.maze.world` has the rules), the steps are the A* search trace,
one event per step (``create 3 4 none c5 c2``, ``pickup ...``, ``open ...``, ``close ...``;
:mod:`lm_latent.data.maze.search`), and the answer is the optimal plan (``plan 0 5 1 5 ...``, every
cell from start to goal). Keys are carried, several at once, and never used up.

A maze is kept only when (each rejection is counted by :func:`generate_counted`):

* it needs a key: the goal cannot be reached with every door shut;
* it is solvable, and A* finds the plan within ``max_trace_events`` events (bounded traces);
* the optimal plan has at least max(width, height) moves (Searchformer's rule against trivial mazes);
* the plan has fewer than width x height moves, so every cost the trace writes is at most
  width x height (the tokenizer's cost tokens ``c0`` ... ``c{w*h}``);
* its layout (size, walls, doors, keys; not start and goal) falls in this split's share of layout
  hashes and was not drawn before in this call.

Train, validation and test mazes are disjoint by layout *by construction*: the SHA-256 of a layout
puts it in exactly one split (the top ``held_out`` share of hash values is the test split, the share
below it the validation split, the rest training), so files generated separately, with any seeds,
never share a layout. ``lm-latent run`` passes each split's name to ``split``.

    lm-latent data generate maze --num 5000 --seed 0 --out maze_train.json
    lm-latent data generate maze --num 200 --seed 2 --split test --out maze_test.json
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from dataclasses import dataclass
from typing import Any

from lm_latent.data.generators.prosqa import documented
from lm_latent.data.maze.layout import draw_maze
from lm_latent.data.maze.plans import plan_text
from lm_latent.data.maze.search import astar, shortest_plan_length
from lm_latent.data.maze.world import COLOURS, Maze

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
@documented
class MazeOptions:
    """Keys-Finding Mazes; the defaults are sized for CPU experiments (6x6 to 8x8, two colours)."""

    min_size: int = 6
    """Smallest grid side; each maze is square, its side drawn uniformly between min_size and max_size."""
    max_size: int = 8
    """Largest grid side (also the largest coordinate + 1 the tokenizer needs)."""
    rooms: int = 4
    """Rooms made by recursive division (fewer when the grid has no room left to cut); at least colours + 1."""
    colours: int = 2
    """Key/door colours: that many gaps between rooms become doors, one per colour, with one key each."""
    wall_density: float = 0.2
    """Chance that a cell inside a room becomes a wall (cells beside the gaps between rooms stay free)."""
    max_trace_events: int = 100
    """Longest A* trace kept, in events (one step each): mazes whose search takes more are rejected."""
    require_key: bool = True
    """Keep only mazes whose goal cannot be reached with every door shut."""
    split: str = "train"
    """Which split's layouts to draw: train, val or test (layouts are split by hash; see the module doc)."""
    held_out: float = 0.1
    """Share of layout-hash space held out for each of val and test (train gets the rest)."""
    max_tries: int = 100000
    """Mazes drawn per kept maze before giving up with an error (the options reject almost everything)."""

    def __post_init__(self) -> None:
        problems = []
        if not 2 * 2 + 1 <= self.min_size <= self.max_size:
            problems.append(f"need 5 <= min_size <= max_size, got {self.min_size}, {self.max_size}")
        if not 0 <= self.colours <= len(COLOURS):
            problems.append(f"colours must be in 0..{len(COLOURS)}, got {self.colours}")
        if self.rooms < self.colours + 1:
            problems.append(f"rooms ({self.rooms}) must be at least colours + 1 ({self.colours + 1})")
        if not 0.0 <= self.wall_density < 1.0:
            problems.append("wall_density must be in [0, 1)")
        if self.max_trace_events < 2:
            problems.append("max_trace_events must be >= 2")
        if self.split not in SPLITS:
            problems.append(f"split must be one of {SPLITS}, got {self.split!r}")
        if not 0.0 < self.held_out < 0.5:
            problems.append("held_out must be in (0, 0.5)")
        if self.require_key and self.colours == 0:
            problems.append("require_key needs at least one colour")
        if self.max_tries < 1:
            problems.append("max_tries must be >= 1")
        if problems:
            raise ValueError("MazeOptions: " + "; ".join(problems))


def split_of(layout_hash: str, held_out: float) -> str:
    """The split a layout belongs to: its hash read as a number in [0, 1), cut at 1 - 2h and 1 - h."""
    u = int(layout_hash[:16], 16) / 16**16
    return "test" if u >= 1 - held_out else "val" if u >= 1 - 2 * held_out else "train"


def _record(maze: Maze, layout_hash: str, plan: list, trace: list) -> dict[str, Any]:
    return {
        "question": maze.prompt(),
        "steps": [event.text() for event in trace],
        "answer": plan_text(plan),
        "optimal_moves": len(plan) - 1,
        "layout_hash": layout_hash,
        "grid": maze.draw(),
    }


def _one(rng: random.Random, opts: MazeOptions, seen: set[str], rejected: Counter) -> dict[str, Any]:
    for _ in range(opts.max_tries):
        side = rng.randint(opts.min_size, opts.max_size)
        maze = draw_maze(rng, side, side, opts.rooms, opts.colours, opts.wall_density)
        if maze is None:
            rejected["no room for the doors"] += 1
            continue
        layout = maze.layout_hash()
        if split_of(layout, opts.held_out) != opts.split:
            rejected["layout of another split"] += 1
            continue
        if layout in seen:
            rejected["layout drawn before"] += 1
            continue
        if opts.require_key and shortest_plan_length(maze, use_doors=False) is not None:
            rejected["no key needed"] += 1
            continue
        result = astar(maze, max_events=opts.max_trace_events)
        if len(result.trace) > opts.max_trace_events:
            rejected["trace too long"] += 1
            continue
        if result.plan is None:
            rejected["unsolvable"] += 1
            continue
        moves = len(result.plan) - 1
        if moves < side:
            rejected["plan shorter than the grid side"] += 1
            continue
        if moves >= side * side:
            rejected["plan too long for the cost tokens"] += 1
            continue
        seen.add(layout)
        return _record(maze, layout, result.plan, result.trace)
    raise ValueError(
        f"no maze kept in {opts.max_tries} tries (rejections so far: {dict(rejected)}): "
        "raise max_trace_events, rooms or the grid size, or lower wall_density"
    )


def generate_counted(num: int, seed: int, options: MazeOptions | None = None) -> tuple[list[dict[str, Any]], Counter]:
    """:func:`generate`, and how many drawn mazes each rule rejected."""
    if num < 0:
        raise ValueError(f"num must be >= 0, got {num}")
    opts = options if options is not None else MazeOptions()
    rng = random.Random(seed)  # never the global stream: output depends on (num, seed, options) only
    seen: set[str] = set()
    rejected: Counter = Counter()
    return [_one(rng, opts, seen, rejected) for _ in range(num)], rejected


def generate(num: int, seed: int, options: MazeOptions | None = None) -> list[dict[str, Any]]:
    """``num`` maze records (question = prompt, steps = A* trace, answer = plan); same arguments, same records."""
    records, rejected = generate_counted(num, seed, options)
    if records:
        log.info("maze: kept %d, rejected %s", len(records), dict(sorted(rejected.items())))
    return records
