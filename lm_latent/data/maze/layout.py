"""Random maze layouts: a grid of rooms, doors of colours between some of them, a key per colour.

How a layout is drawn:

1. Rooms by recursive division: a region is cut by a wall line across it with one gap, so the gap is
   the only way between the two sides (within that region). The region cut is drawn in proportion to
   its area; a wide region is cut by a vertical line, a tall one by a horizontal line. Every room
   keeps at least two cells each way, and a line never ends next to an earlier gap (it would block it).
2. Doors: ``colours`` of the gaps, drawn at random, become doors of distinct colours.
3. Clutter: every other cell becomes a wall with probability ``wall_density``, except the gaps and the
   cells on either side of them, so that clutter does not close a passage between rooms.
4. One key per colour, then start and goal, on distinct free cells that are neither gaps nor keys.

The layout alone does not guarantee a solvable maze, nor that a key is needed: the generator checks
both and draws again (``lm_latent.data.generators.maze``).
"""

from __future__ import annotations

import random

from lm_latent.data.maze.world import Cell, Maze

MIN_ROOM = 2  # cells of a room each way


def draw_maze(rng: random.Random, width: int, height: int, rooms: int, colours: int, wall_density: float) -> Maze | None:
    """A random maze, or None when the grid cannot hold ``rooms`` rooms with ``colours`` doors."""
    walls: set[Cell] = set()
    gaps: list[Cell] = []
    regions = [(0, 0, width, height)]  # half-open boxes (x0, y0, x1, y1)
    for _ in range(rooms - 1):
        cut = _cut(rng, regions, set(gaps))
        if cut is None:
            break
        index, line, gap, halves = cut
        walls.update(c for c in line if c != gap)
        gaps.append(gap)
        regions[index : index + 1] = halves
    if len(gaps) < colours:
        return None
    doors = {cell: colour for colour, cell in enumerate(rng.sample(gaps, colours))}

    kept = set(gaps)  # the gaps and their neighbours stay free
    for gx, gy in gaps:
        kept.update((gx + dx, gy + dy) for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)))
    for y in range(height):
        for x in range(width):
            if (x, y) not in walls and (x, y) not in kept and rng.random() < wall_density:
                walls.add((x, y))

    passages = set(gaps)
    free = [(x, y) for y in range(height) for x in range(width) if (x, y) not in walls and (x, y) not in passages]
    if len(free) < colours + 2:
        return None
    picked = rng.sample(free, colours + 2)
    keys = {cell: colour for colour, cell in enumerate(picked[:colours])}
    return Maze(width, height, frozenset(walls), doors, keys, picked[colours], picked[colours + 1])


def _cut(rng: random.Random, regions: list[tuple[int, int, int, int]], gaps: set[Cell]):
    """(region index, wall line cells, gap cell, the two halves) of a random cut, or None."""
    options = []
    for i, (x0, y0, x1, y1) in enumerate(regions):
        w, h = x1 - x0, y1 - y0
        # A vertical line at x = c runs from (c, y0) to (c, y1 - 1): its ends must not touch a gap.
        vertical = [c for c in range(x0 + MIN_ROOM, x1 - MIN_ROOM) if (c, y0 - 1) not in gaps and (c, y1) not in gaps]
        horizontal = [r for r in range(y0 + MIN_ROOM, y1 - MIN_ROOM) if (x0 - 1, r) not in gaps and (x1, r) not in gaps]
        if vertical and (w > h or not horizontal or (w == h and rng.random() < 0.5)):
            options.append((i, "v", vertical, w * h))
        elif horizontal:
            options.append((i, "h", horizontal, w * h))
    if not options:
        return None
    i, axis, positions, _ = rng.choices(options, weights=[o[3] for o in options])[0]
    x0, y0, x1, y1 = regions[i]
    at = rng.choice(positions)
    if axis == "v":
        line = [(at, y) for y in range(y0, y1)]
        halves = [(x0, y0, at, y1), (at + 1, y0, x1, y1)]
    else:
        line = [(x, at) for x in range(x0, x1)]
        halves = [(x0, y0, x1, at), (x0, at + 1, x1, y1)]
    return i, line, rng.choice(line), halves
