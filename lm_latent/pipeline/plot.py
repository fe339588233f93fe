"""`accuracy_vs_tokens.png`: accuracy against mean generated tokens, one panel per evaluation set.

Drawn by `lm-latent run` for one run (lm_latent/pipeline/report.py) and by `lm-latent summarize --plot`
for several seeds (lm_latent/pipeline/seeds.py), the same way: the accuracy axis is always 0-100%, so
differences that sit inside the noise do not look large, with each set's chance level
(:mod:`lm_latent.evaluation.chance`) drawn as a dashed line and, where it is higher, what always giving
the set's most common answer scores as a dotted one; several seeds give each point error bars of one
sample standard deviation in both accuracy and tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Point:
    """One strategy on one evaluation set. Fractions for accuracy; errors are 0 for a single run."""

    strategy: str
    tokens: float
    accuracy: float
    tokens_err: float = 0.0
    accuracy_err: float = 0.0


Panels = dict[str, list[Point]]  # evaluation set -> its points


def accuracy_vs_tokens(panels: Panels, chance: dict[str, float | None], path: Path, note: str | None = None,
                       constant: dict[str, float | None] | None = None) -> None:
    """Write :func:`figure` to ``path`` (PNG)."""
    import matplotlib.pyplot as plt

    fig = figure(panels, chance, note, constant)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def figure(panels: Panels, chance: dict[str, float | None], note: str | None = None,
           constant: dict[str, float | None] | None = None):
    """One panel per evaluation set (in the given order); ``chance[set]`` (a fraction, or None for
    none) is drawn as a dashed line, and ``constant[set]``, what always giving the set's most common
    answer scores, as a dotted one where it is above chance (a model must beat both floors);
    ``note`` goes under the panels. Returns the matplotlib figure."""
    import matplotlib

    matplotlib.use("Agg")  # files only: runs happen on headless machines
    import matplotlib.pyplot as plt

    from lm_latent.mixing.strategies import STRATEGIES

    names = list(panels)
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.8), squeeze=False)
    # A strategy has the same colour in every plot (a run's and a summary's list strategies in other orders).
    colours = {s: f"C{i}" for i, s in enumerate(STRATEGIES)}
    for ax, name in zip(axes[0], names):
        for p in panels[name]:
            colour = colours.setdefault(p.strategy, f"C{len(colours) % 10}")
            x, y = p.tokens, 100 * p.accuracy
            if p.tokens_err or p.accuracy_err:
                ax.errorbar(x, y, xerr=p.tokens_err, yerr=100 * p.accuracy_err, fmt="o", color=colour, capsize=3, ms=6)
            else:
                ax.plot(x, y, "o", color=colour, ms=6)
            # Labels go below points near 100% so they never run into the panel's title.
            ax.annotate(p.strategy, (x, y), textcoords="offset points", xytext=(5, -12 if y > 90 else 5), color=colour)
        level, floor = chance.get(name), (constant or {}).get(name)
        floors = [] if level is None else [(level, "--", f"chance ({level:.0%})")]
        if floor is not None and floor > (level or 0.0):
            floors.append((floor, ":", f"constant answer ({floor:.1%})"))
        for value, style, label in floors:
            ax.axhline(100 * value, color="0.4", linestyle=style, linewidth=1, label=label)
        if floors:
            ax.legend(loc="best", fontsize=8, frameon=False)
        right = max((p.tokens + p.tokens_err for p in panels[name]), default=1.0)
        ax.set(title=name, xlabel="mean generated tokens", ylabel="accuracy (%)", ylim=(0, 100), xlim=(0, 1.2 * right or 1))
        ax.set_yticks(range(0, 101, 20))
        ax.grid(alpha=0.3)
    if note:
        fig.text(0.5, 0.01, note, ha="center", va="bottom", fontsize=8, color="0.3")
        fig.tight_layout(rect=(0, 0.05, 1, 1))
    else:
        fig.tight_layout()
    return fig
