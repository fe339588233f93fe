"""Plans as text (``plan x y x y ...``: every cell from start to goal) and the feasibility checker.

A plan is **feasible** for a maze when it starts on the start, every move goes to a neighbouring
cell inside the grid that is no wall, every door is entered while holding its key (keys are picked
up by entering their cells; see :mod:`lm_latent.data.maze.world`), and it ends on the goal. It is
**optimal** when it is feasible and has the optimal number of moves. Malformed text (no ``plan``
keyword, an odd count of numbers, words that are not numbers) is an infeasible plan, never an error.
"""

from __future__ import annotations

from dataclasses import dataclass

from lm_latent.data.maze.world import Cell, Maze

PLAN = "plan"


def plan_text(cells: list[Cell]) -> str:
    return " ".join([PLAN] + [f"{x} {y}" for x, y in cells])


def parse_plan(text: str) -> list[Cell] | None:
    """The cells of ``plan x y ...`` (surrounding whitespace ignored), or None when malformed."""
    words = text.split()
    if not words or words[0] != PLAN or len(words) % 2 == 0:
        return None
    numbers = words[1:]
    if not all(w.isdigit() for w in numbers):  # isdigit: no signs, so no negative coordinates
        return None
    values = [int(w) for w in numbers]
    return list(zip(values[0::2], values[1::2]))


@dataclass(frozen=True)
class PlanCheck:
    """The verdict on one plan; ``reason`` says why an infeasible plan fails ("" when feasible)."""

    feasible: bool
    optimal: bool
    moves: int | None
    reason: str = ""


def check_plan(maze: Maze, plan: str | list[Cell] | None, optimal_moves: int | None = None) -> PlanCheck:
    """Is ``plan`` (text, cells or None) feasible for ``maze``, and optimal (``optimal_moves`` moves)?"""
    cells = parse_plan(plan) if isinstance(plan, str) else plan
    if not cells:
        return PlanCheck(False, False, None, "no plan" if cells is None else "empty plan")
    moves = len(cells) - 1
    if cells[0] != maze.start:
        return PlanCheck(False, False, moves, f"starts at {cells[0]}, not at the start {maze.start}")
    held = 0
    for i, (here, there) in enumerate(zip(cells, cells[1:]), start=1):
        after = maze.step(here, held, there)
        if after is None:
            return PlanCheck(False, False, moves, f"move {i} {here} -> {there}: {_why_illegal(maze, here, held, there)}")
        held = after
    if cells[-1] != maze.goal:
        return PlanCheck(False, False, moves, f"ends at {cells[-1]}, not at the goal {maze.goal}")
    return PlanCheck(True, optimal_moves is not None and moves == optimal_moves, moves)


def _why_illegal(maze: Maze, here: Cell, held: int, there: Cell) -> str:
    if abs(here[0] - there[0]) + abs(here[1] - there[1]) != 1:
        return "not to a neighbouring cell"
    if not maze.in_grid(there):
        return "off the grid"
    if there in maze.walls:
        return "into a wall"
    return "through a door without its key"
