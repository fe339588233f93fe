"""A Keys-Finding Maze and its rules: cells, moves, keys and doors, and the prompt text that states it.

Rules (one definition, used by the A* search, the breadth-first check and the plan checker):

* The grid is ``width`` x ``height`` cells, ``x`` in ``0..width-1`` (columns), ``y`` in
  ``0..height-1`` (rows). A move goes to one of the four neighbours; it must stay in the grid and
  never enter a wall.
* A door has a colour and can be entered only while holding the key of that colour.
* Keys are picked up by entering their cell, are carried (several at once) and are never used up:
  a door opened once can be passed again, and one key opens every door of its colour.
* A plan starts on ``start`` and ends on ``goal``; its length is its number of moves.

The search state is therefore (position, keys held); keys held is a bit set over the maze's colours,
bit ``i`` for ``COLOURS[i]``.

The prompt lists the maze in Searchformer's token scheme, one token per keyword, number and colour:
the grid size (Searchformer's grids all have one size, ours vary), start, goal, the walls row by
row, then keys and doors by colour::

    size 7 6 start 0 5 goal 6 1 wall 3 0 wall 3 1 ... key red 1 4 door red 3 2
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass

Cell = tuple[int, int]

# Key/door colours in a fixed order: colour i is bit i of a key set. No colour starts with "s" or
# "e", so the drawn grids can mark start and goal with S and E.
COLOURS: tuple[str, ...] = ("red", "blue", "green", "yellow", "purple", "orange")
NO_KEYS = "none"  # the key-set token of a state that holds no key

# Neighbour order of every search (and so of the traces): right, left, down, up.
MOVES: tuple[Cell, ...] = ((1, 0), (-1, 0), (0, 1), (0, -1))


@dataclass(frozen=True)
class Maze:
    """One maze. ``doors`` and ``keys`` map a cell to the index of its colour in :data:`COLOURS`."""

    width: int
    height: int
    walls: frozenset[Cell]
    doors: dict[Cell, int]
    keys: dict[Cell, int]
    start: Cell
    goal: Cell

    def __hash__(self) -> int:  # dict fields are not hashable; the layout key is
        return hash((self.layout_key(), self.start, self.goal))

    def in_grid(self, cell: Cell) -> bool:
        return 0 <= cell[0] < self.width and 0 <= cell[1] < self.height

    def step(self, cell: Cell, held: int, target: Cell) -> int | None:
        """The keys held after moving from ``cell`` to ``target``, or None when the move is illegal
        (not to a neighbour, off the grid, into a wall, or through a door without its key)."""
        if abs(cell[0] - target[0]) + abs(cell[1] - target[1]) != 1:
            return None
        if not self.in_grid(target) or target in self.walls:
            return None
        door = self.doors.get(target)
        if door is not None and not held >> door & 1:
            return None
        key = self.keys.get(target)
        return held | (1 << key) if key is not None else held

    def successors(self, cell: Cell, held: int) -> Iterator[tuple[Cell, int]]:
        """Every legal (next cell, keys held there), in :data:`MOVES` order."""
        for dx, dy in MOVES:
            target = (cell[0] + dx, cell[1] + dy)
            after = self.step(cell, held, target)
            if after is not None:
                yield target, after

    @property
    def colours(self) -> int:
        """How many colours the maze uses (1 + the largest colour index of its doors and keys)."""
        return 1 + max([*self.doors.values(), *self.keys.values()], default=-1)

    # -- text --------------------------------------------------------------------------------

    def prompt(self) -> str:
        """The maze as prompt tokens: size, start, goal, walls (row by row), keys and doors (by colour)."""
        words = ["size", str(self.width), str(self.height), "start", *_xy(self.start), "goal", *_xy(self.goal)]
        for cell in sorted(self.walls, key=_row_major):
            words += ["wall", *_xy(cell)]
        for kind, cells in (("key", self.keys), ("door", self.doors)):
            for cell, colour in sorted(cells.items(), key=lambda kv: (kv[1], _row_major(kv[0]))):
                words += [kind, COLOURS[colour], *_xy(cell)]
        return " ".join(words)

    def layout_key(self) -> str:
        """The layout (size, walls, doors, keys; not start or goal) as a canonical string."""
        return json.dumps(
            {
                "size": [self.width, self.height],
                "walls": sorted(self.walls, key=_row_major),
                "doors": sorted([*c, k] for c, k in self.doors.items()),
                "keys": sorted([*c, k] for c, k in self.keys.items()),
            },
            separators=(",", ":"),
        )

    def layout_hash(self) -> str:
        """SHA-256 of :meth:`layout_key`: train and test mazes are kept apart by this value."""
        return hashlib.sha256(self.layout_key().encode()).hexdigest()

    def draw(self, plan: list[Cell] | None = None) -> str:
        """The maze as a text grid, row 0 on top: ``#`` wall, ``.`` free, ``S`` start, ``E`` goal,
        a key as its colour's initial (``r``), a door as the capital (``R``), ``+`` the plan's cells."""
        rows = [["."] * self.width for _ in range(self.height)]
        for x, y in plan or []:
            if self.in_grid((x, y)):
                rows[y][x] = "+"
        for x, y in self.walls:
            rows[y][x] = "#"
        for (x, y), c in self.keys.items():
            rows[y][x] = COLOURS[c][0]
        for (x, y), c in self.doors.items():
            rows[y][x] = COLOURS[c][0].upper()
        rows[self.start[1]][self.start[0]] = "S"
        rows[self.goal[1]][self.goal[0]] = "E"
        return "\n".join("".join(r) for r in rows)


def key_set_token(held: int) -> str:
    """One token for a set of held keys: ``none``, ``red``, ``red+blue`` (colours in palette order)."""
    names = [c for i, c in enumerate(COLOURS) if held >> i & 1]
    return "+".join(names) if names else NO_KEYS


def key_set_tokens(colours: int) -> list[str]:
    """The key-set tokens of every subset of the first ``colours`` colours."""
    return [key_set_token(held) for held in range(1 << colours)]


def _xy(cell: Cell) -> list[str]:
    return [str(cell[0]), str(cell[1])]


def _row_major(cell: Cell) -> tuple[int, int]:
    return cell[1], cell[0]


class PromptError(ValueError):
    """A prompt that does not state a maze (unknown keyword, missing coordinates, ...)."""


def parse_prompt(text: str) -> Maze:
    """The maze a prompt states (the inverse of :meth:`Maze.prompt`); :class:`PromptError` when malformed."""
    words = text.split()
    walls: set[Cell] = set()
    doors: dict[Cell, int] = {}
    keys: dict[Cell, int] = {}
    found: dict[str, Cell] = {}

    def pair_at(j: int) -> Cell:
        try:
            x, y = int(words[j]), int(words[j + 1])
        except (IndexError, ValueError):
            raise PromptError(f"expected two numbers at word {j} of the prompt") from None
        if x < 0 or y < 0:
            raise PromptError(f"negative number at word {j} of the prompt")
        return x, y

    i = 0
    while i < len(words):
        word = words[i]
        if word in ("size", "start", "goal"):
            if word in found:
                raise PromptError(f"the prompt names '{word}' twice")
            found[word] = pair_at(i + 1)
            i += 3
        elif word == "wall":
            walls.add(pair_at(i + 1))
            i += 3
        elif word in ("key", "door"):
            colour = words[i + 1] if i + 1 < len(words) else ""
            if colour not in COLOURS:
                raise PromptError(f"unknown colour {colour!r} at word {i + 1} of the prompt")
            (keys if word == "key" else doors)[pair_at(i + 2)] = COLOURS.index(colour)
            i += 4
        else:
            raise PromptError(f"unknown keyword {word!r} at word {i} of the prompt")
    missing = [w for w in ("size", "start", "goal") if w not in found]
    if missing:
        raise PromptError(f"the prompt names no {' or '.join(missing)}")
    maze = Maze(*found["size"], frozenset(walls), doors, keys, found["start"], found["goal"])
    outside = [c for c in (maze.start, maze.goal, *walls, *doors, *keys) if not maze.in_grid(c)]
    if outside:
        raise PromptError(f"cell {outside[0]} lies outside the {maze.width} x {maze.height} grid")
    return maze
