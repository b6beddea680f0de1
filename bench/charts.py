"""Drawing a benchmark's results as a PNG bar chart for BENCHMARKS.md, shared by the bench scripts.

A script draws exactly the numbers it prints: each panel is one measure (tokens/s, time to first token), with a
group of bars per setting (a concurrency level, a task) and one bar per contender. matplotlib is imported only
when a chart is drawn, so importing a bench module stays cheap, and only its Agg canvas is used (no display).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Panel", "add_chart_options", "chart_path", "draw_bars"]

#: Where the charts that BENCHMARKS.md shows live, whatever directory a script runs from.
CHART_DIR = Path(__file__).resolve().parent.parent / "docs" / "bench"
#: A colour family per contender's first word, so that chunkwise is blue in every chart; contenders of one
#: family (chunkwise with and without an option) get shades of it.
FAMILIES = {"chunkwise": "Blues", "llama-server": "Oranges", "litellm": "Greens", "direct": "Greys"}
OTHER_FAMILIES = ("Purples", "Reds", "Greens", "Greys")


@dataclass(frozen=True)
class Panel:
    """One measure: ``series[contender][i]`` is the contender's value for ``groups[i]`` (NaN: not measured)."""

    title: str
    unit: str
    groups: Sequence[str]
    series: Mapping[str, Sequence[float]]

    def __post_init__(self) -> None:
        for name, values in self.series.items():
            if len(values) != len(self.groups):
                raise ValueError(f"{name!r} has {len(values)} values for {len(self.groups)} groups")


def add_chart_options(parser: argparse.ArgumentParser, name: str) -> None:
    """``--chart PATH`` (default docs/bench/NAME.png) and ``--no-chart``."""
    default = CHART_DIR / f"{name}.png"
    parser.add_argument("--chart", type=Path, default=default, help=f"draw the results here (default: {default})")
    parser.add_argument("--no-chart", action="store_true", help="draw no chart")


def chart_path(args: argparse.Namespace) -> Path | None:
    """Where the options of :func:`add_chart_options` ask for the chart, or None for ``--no-chart``."""
    return None if args.no_chart else Path(args.chart)


def colours(names: Sequence[str]) -> dict[str, tuple[float, float, float, float]]:
    import matplotlib

    families: dict[str, list[str]] = {}
    for name in names:
        families.setdefault(name.split()[0].lower(), []).append(name)
    spare = iter(OTHER_FAMILIES)
    result = {}
    for family, members in families.items():
        colour_map = matplotlib.colormaps[FAMILIES.get(family) or next(spare, "Greys")]
        for index, name in enumerate(members):
            # From a dark shade for the family's first contender to a light one, never so light it vanishes.
            shade = 0.85 - 0.5 * index / max(len(members) - 1, 1) if len(members) > 1 else 0.7
            result[name] = colour_map(shade)
    return result


def label(value: float) -> str:
    if math.isnan(value):
        return ""
    return f"{value:.0f}" if abs(value) >= 10 else f"{value:.1f}"


def draw_bars(path: Path, title: str, panels: Sequence[Panel], caption: str = "") -> Path:
    """Write ``panels`` side by side as grouped bar charts to the PNG file ``path``; returns ``path``.

    Every panel must name the same contenders; the legend shows them once. ``caption`` (the run's settings and
    date) goes under the panels.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not panels:
        raise ValueError("a chart needs at least one panel")
    names = list(panels[0].series)
    if any(list(panel.series) != names for panel in panels):
        raise ValueError("every panel must name the same contenders, in the same order")
    palette = colours(names)
    widest = max(len(panel.groups) for panel in panels)
    figure = Figure(figsize=(max(4.0, 0.45 * widest * len(names)) * len(panels) + 1, 4.8), layout="constrained")
    FigureCanvasAgg(figure)
    figure.suptitle(title, fontsize=12)
    width = 0.8 / len(names)
    for index, panel in enumerate(panels):
        axes = figure.add_subplot(1, len(panels), index + 1)
        for position, name in enumerate(names):
            offsets = [group + (position - (len(names) - 1) / 2) * width for group in range(len(panel.groups))]
            values = list(panel.series[name])
            bars = axes.bar(offsets, values, width, label=name, color=palette[name])
            axes.bar_label(bars, labels=[label(value) for value in values], fontsize=7, padding=1)
        axes.set_title(panel.title, fontsize=10)
        axes.set_ylabel(panel.unit)
        axes.set_xticks(range(len(panel.groups)), list(panel.groups))
        axes.margins(y=0.12)
        axes.grid(axis="y", alpha=0.3)
        axes.set_axisbelow(True)
    handles, labels = figure.axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside right upper", fontsize=8, frameon=False)
    if caption:
        figure.supxlabel(caption, fontsize=7, color="0.35")
    path.parent.mkdir(parents=True, exist_ok=True)
    # No "Software" entry, so that a chart's bytes change only with its contents, not with matplotlib's version.
    figure.savefig(path, format="png", dpi=100, metadata={"Software": None})
    return path
