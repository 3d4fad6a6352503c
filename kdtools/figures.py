"""The paper's Figures 1-5 as PNGs, drawn with matplotlib from plain lists (kdtools/report.py
computes them from the eval JSONs; None = no eval, left out of a line or a bar group).

Figures are built with `matplotlib.figure.Figure` (no pyplot: no global state, no display
needed) and written to a temp name in the target folder, then renamed, so a reader sees the old
PNG or the new one, never half. A panel with nothing to plot says "no data".
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

COLORS = {"SFT": "#4C72B0", "GKD": "#DD8452", "GKD (SFT-S)": "#DD8452", "GKD (Base-S)": "#55A868",
          "1b": "#4C72B0", "3b": "#DD8452", "8b": "#55A868"}
FALLBACK = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860")
AVG_YLABEL = "Average score (BBH, GPQA, IF-Eval, InfoBench, MMLU-Pro)"


def size_value(label) -> float | None:
    """'40k' -> 40000, '1.5m' -> 1.5e6, '939343' -> 939343; 'full'/None -> None."""
    m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)([kKmM]?)", str(label or ""))
    if not m:
        return None
    return float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6}[m.group(2).lower()]


def positions(labels: list[str]) -> list[float]:
    """x positions for size labels on a log axis; a label without a number ('full') goes one
    step (x1.3) past the largest, so 939k and full stay distinct and in ladder order."""
    xs, top = [], max((v for v in map(size_value, labels) if v), default=1.0)
    for label in labels:
        value = size_value(label)
        if value is None:
            top *= 1.3
            value = top
        xs.append(value)
    return xs


def _color(name: str, i: int) -> str:
    return COLORS.get(name, FALLBACK[i % len(FALLBACK)])


def _no_data(ax) -> None:
    ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", fontsize=14, color="gray")
    ax.set_yticks([])


def _lines(ax, labels: list[str], series: dict, title: str, ylabel: str, xlabel: str) -> int:
    """One line per series over size labels, log x; missing points are skipped, not zeroed."""
    from matplotlib.ticker import NullLocator

    xs, n = positions(labels), 0
    for i, (name, ys) in enumerate(series.items()):
        pts = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None]
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="o", markersize=4, label=name, color=_color(name, i))
            n += len(pts)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel, fontsize=8)
    if xs:
        ax.set_xscale("log")
        ax.set_xlim(min(xs) / 1.3, max(xs) * 1.3)
        ax.set_xticks(xs, labels, rotation=45, fontsize=7)
        ax.xaxis.set_minor_locator(NullLocator())
    ax.grid(alpha=0.3)
    if n:
        ax.legend(fontsize=7)
    else:
        _no_data(ax)
    return n


def _bars(ax, categories: list[str], bars: dict, title: str, ylabel: str) -> int:
    """Grouped bars: one group per category, one bar per series, value printed on top."""
    k, n = max(len(bars), 1), 0
    width = 0.8 / k
    for i, (name, values) in enumerate(bars.items()):
        pts = [(j + (i - (k - 1) / 2) * width, v) for j, v in enumerate(values) if v is not None]
        if pts:
            rects = ax.bar(*zip(*pts, strict=True), width, label=name, color=_color(name, i))
            ax.bar_label(rects, fmt="%.1f", fontsize=6)
            n += len(pts)
    ax.set_xticks(range(len(categories)), categories, fontsize=8)
    ax.set_xlim(-0.5, len(categories) - 0.5)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    if n:
        ax.legend(fontsize=7)
        ax.margins(y=0.12)
    else:
        _no_data(ax)
    return n


def _fig1(fig, d) -> int:
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.1, 1]})
    n = _lines(left, d["sizes"], d["lines"], "8b: GKD from Base-S vs SFT-S vs SFT", AVG_YLABEL,
               "training set size (log scale)")
    return n + _bars(right, d["categories"], d["bars"], f"8b on {d['top']}: per benchmark", "score (0-100)")


def _fig2(fig, d) -> int:
    axes = fig.subplots(1, len(d["panels"]), sharey=False)
    return sum(_lines(ax, d["sizes"], series, f"{model}: SFT vs GKD", AVG_YLABEL if i == 0 else "",
                      "training set size (log scale)")
               for i, (ax, (model, series)) in enumerate(zip(axes, d["panels"].items(), strict=True)))


def _fig3(fig, d) -> int:
    return _bars(fig.subplots(), d["categories"], d["bars"],
                 f"8b on {d['top']}: GKD from T_s vs from the instruction-tuned 70b", "score (0-100)")


def _fig4(fig, d) -> int:
    axes = fig.subplots(1, len(d["panels"]))
    return sum(_bars(ax, p["categories"], p["bars"], title, "score (0-100)" if i == 0 else "")
               for i, (ax, (title, p)) in enumerate(zip(axes, d["panels"].items(), strict=True)))


def _fig5(fig, d) -> int:
    axes = fig.subplots(1, len(d["panels"]))
    return sum(_lines(ax, d["sizes"], series, f"2-Stage: {title}", "score (0-100)" if i == 0 else "",
                      "synthetic data size (log scale)")
               for i, (ax, (title, series)) in enumerate(zip(axes, d["panels"].items(), strict=True)))


FIGURES = {  # name -> (drawer, size in inches, suptitle)
    "fig1": (_fig1, (11, 4.2), "Figure 1: student initialisation for KD (8b)"),
    "fig2": (_fig2, (13, 4.2), "Figure 2: SFT vs GKD across training set sizes"),
    "fig3": (_fig3, (7.5, 4.2), "Figure 3: a stronger instruction-tuned teacher (GKD-IT)"),
    "fig4": (_fig4, (13, 4.2), "Figure 4: domain tasks, SFT vs GKD per student"),
    "fig5": (_fig5, (13, 4.2), "Figure 5: synthetic data size in two-stage KD"),
}


def draw(name: str, data: dict, path: Path) -> int:
    """Draw figure `name` from `data` into `path` (PNG, atomically); -> points/bars plotted."""
    from matplotlib.figure import Figure

    drawer, size, title = FIGURES[name]
    fig = Figure(figsize=size, layout="constrained")
    n = drawer(fig, data)
    fig.suptitle(title, fontsize=12)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format="png", dpi=120)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results folders are shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return n
