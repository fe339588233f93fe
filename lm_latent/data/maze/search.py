"""A* over (position, keys held) with its search trace, and a breadth-first search to check it.

The heuristic is the Manhattan distance to the goal. It ignores walls, doors and keys, and a move
changes it by at most one while costing one, so it is admissible and consistent: A* closes every
state at most once, with its optimal cost, and the first goal state it closes ends an optimal plan.

Ties in f = g + h go to the smaller h (the state nearer the goal), then to the state created first,
so the trace is a function of the maze alone and a model can learn to write it.

Trace events, one per line of the chain of thought (Searchformer's ``create``/``close`` events, with
the held keys as one more token and two more verbs for the transitions the keys add)::

    create x y KEYS cG cH    a state is put on the open list (g: cost so far, h: heuristic)
    pickup x y KEYS cG cH    ... by a move onto a key not yet held (KEYS already includes it)
    open x y KEYS cG cH      ... by a move through a door (KEYS holds its key)
    close x y KEYS cG cH     the state with the lowest f is taken off the open list and expanded

``KEYS`` is one token for the set held (``none``, ``red``, ``red+blue``; :func:`key_set_token`).
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass

from lm_latent.data.maze.world import Cell, Maze, key_set_token

State = tuple[Cell, int]  # (position, keys held as a bit set)


@dataclass(frozen=True)
class Event:
    """One trace event: ``verb x y KEYS cG cH``."""

    verb: str
    cell: Cell
    held: int
    g: int
    h: int

    def text(self) -> str:
        return f"{self.verb} {self.cell[0]} {self.cell[1]} {key_set_token(self.held)} c{self.g} c{self.h}"


@dataclass(frozen=True)
class SearchResult:
    """The optimal plan (cells from start to goal; None when the goal is unreachable) and the trace."""

    plan: list[Cell] | None
    trace: list[Event]

    @property
    def plan_length(self) -> int | None:
        """Moves of the plan (cells - 1), or None without a plan."""
        return None if self.plan is None else len(self.plan) - 1


def manhattan(a: Cell, b: Cell) -> int:
    return abs(a[0] - b[0]) + abs(a[1] - b[1])


def astar(maze: Maze, max_events: int | None = None) -> SearchResult:
    """A* from the start (holding no key) to any state on the goal, recording every event.

    With ``max_events`` the search stops once the trace is longer than that and returns no plan (the
    generator rejects such mazes; the caller can tell by ``len(trace) > max_events``).
    """
    start: State = (maze.start, 0)
    h0 = manhattan(maze.start, maze.goal)
    g_of: dict[State, int] = {start: 0}
    parent: dict[State, State] = {}
    closed: set[State] = set()
    order = 0  # creation order: the last tie-break
    heap = [(h0, h0, order, start)]
    trace = [Event("create", maze.start, 0, 0, h0)]
    while heap:
        if max_events is not None and len(trace) > max_events:
            return SearchResult(None, trace)
        _, h, _, state = heapq.heappop(heap)
        if state in closed:
            continue  # a stale entry: the state was re-created with a smaller g and closed already
        closed.add(state)
        cell, held = state
        g = g_of[state]
        trace.append(Event("close", cell, held, g, h))
        if cell == maze.goal:
            return SearchResult(_path(parent, state), trace)
        for nxt_cell, nxt_held in maze.successors(cell, held):
            nxt = (nxt_cell, nxt_held)
            if nxt in closed or g_of.get(nxt, g + 2) <= g + 1:
                continue
            g_of[nxt] = g + 1
            parent[nxt] = state
            nh = manhattan(nxt_cell, maze.goal)
            order += 1
            heapq.heappush(heap, (g + 1 + nh, nh, order, nxt))
            verb = "pickup" if nxt_held != held else "open" if nxt_cell in maze.doors else "create"
            trace.append(Event(verb, nxt_cell, nxt_held, g + 1, nh))
    return SearchResult(None, trace)


def _path(parent: dict[State, State], state: State) -> list[Cell]:
    cells = [state[0]]
    while state in parent:
        state = parent[state]
        cells.append(state[0])
    return cells[::-1]


def shortest_plan_length(maze: Maze, use_doors: bool = True) -> int | None:
    """Fewest moves from start to goal by breadth-first search over (position, keys held), or None
    when unreachable. With ``use_doors=False`` every door counts as a wall (does the maze need a key?)."""
    if use_doors:
        step = maze
    else:
        step = Maze(maze.width, maze.height, maze.walls | frozenset(maze.doors), {}, maze.keys, maze.start, maze.goal)
    start: State = (maze.start, 0)
    dist = {start: 0}
    queue = deque([start])
    while queue:
        state = queue.popleft()
        if state[0] == maze.goal:
            return dist[state]
        for nxt in step.successors(*state):
            if nxt not in dist:
                dist[nxt] = dist[state] + 1
                queue.append(nxt)
    return None
