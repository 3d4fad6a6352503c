"""The paper's Figures 1-5 as PNGs, drawn with matplotlib from plain lists (kdtools/report.py
computes them from the eval JSONs; None = no eval, left out of a line or a bar group).

Figures are built with `matplotlib.figure.Figure` (no pyplot: no global state, no display
needed) and written to a temp name in the target folder, then renamed, so a reader sees the old
PNG or the new one, never half. A panel with nothing to plot is left out of its figure, and a
figure with nothing to plot is not drawn at all (`draw` returns 0 and removes an old PNG of it;
the report says which workflow target fills it).

Error bars (Figures 2 and 4) sit on the GKD-minus-SFT deltas, drawn in a row of their own under
the scores, not on each cell's score. The figures ask whether GKD beats SFT, and the tables'
intervals answer exactly that: they are paired, so the items' shared difficulty cancels, and a
paired interval is much narrower than either cell's own. Two per-cell bars that overlap would
suggest "no difference" where the paired interval excludes 0. A delta whose interval excludes 0
is drawn filled, one whose interval includes 0 hollow (a point) or faded (a bar).
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


DELTA_YLABEL = "GKD - SFT (95% paired CI)"


def _has(values) -> bool:
    return any(v is not None for v in values)


def _series_have(series: dict) -> bool:
    return any(_has(v) for v in series.values())


def _err(d: dict) -> list[list[float]] | None:
    """matplotlib's asymmetric yerr of one delta (None without an interval)."""
    if d["lo"] is None:
        return None
    return [[max(0.0, d["delta"] - d["lo"])], [max(0.0, d["hi"] - d["delta"])]]


def _delta_axes(ax, ylabel: str, bars: bool) -> None:
    """The zero line, the label, and a legend of what filled and hollow/faded mean."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    ax.axhline(0, color="gray", linewidth=0.8, linestyle="--")
    ax.set_ylabel(ylabel, fontsize=8)
    ax.grid(alpha=0.3)
    color = COLORS["GKD"]
    if bars:
        handles = [Patch(color=color, label="CI excludes 0"), Patch(color=color, alpha=0.35, label="CI includes 0 / none")]
    else:
        handles = [Line2D([], [], marker="o", color=color, linestyle="", label="CI excludes 0"),
                   Line2D([], [], marker="o", color=color, markerfacecolor="white", linestyle="",
                          label="CI includes 0 / none")]
    ax.legend(handles=handles, fontsize=6)


def _delta_points(ax, labels: list[str], deltas: list, ylabel: str, xlabel: str) -> None:
    """GKD - SFT at each size: a point with its 95% interval as an error bar."""
    from matplotlib.ticker import NullLocator

    xs = positions(labels)
    for x, d in zip(xs, deltas, strict=True):
        if d is None:
            continue
        ax.errorbar([x], [d["delta"]], yerr=_err(d), fmt="o", markersize=5, capsize=3, color=COLORS["GKD"],
                    markerfacecolor=COLORS["GKD"] if d["marked"] else "white")
    ax.set_xscale("log")
    ax.set_xlim(min(xs) / 1.3, max(xs) * 1.3)
    ax.set_xticks(xs, labels, rotation=45, fontsize=7)
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel(xlabel)
    _delta_axes(ax, ylabel, bars=False)


def _delta_bars(ax, categories: list[str], deltas: list, ylabel: str) -> None:
    """GKD - SFT per category: a bar with its 95% interval as an error bar."""
    for j, d in enumerate(deltas):
        if d is None:
            continue
        ax.bar([j], [d["delta"]], 0.5, yerr=_err(d), capsize=3, color=COLORS["GKD"],
               alpha=1.0 if d["marked"] else 0.35, edgecolor=COLORS["GKD"])
    ax.set_xticks(range(len(categories)), categories, fontsize=8)
    ax.set_xlim(-0.5, len(categories) - 0.5)
    _delta_axes(ax, ylabel, bars=True)


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
    return n


def _fig1(fig, d) -> int:
    parts = [p for p, have in (("lines", _series_have(d["lines"])), ("bars", _series_have(d["bars"]))) if have]
    axes = dict(zip(parts, fig.subplots(1, len(parts), squeeze=False)[0], strict=True))
    n = 0
    if "lines" in axes:
        n += _lines(axes["lines"], d["sizes"], d["lines"], "8b: GKD from Base-S vs SFT-S vs SFT", AVG_YLABEL,
                    "training set size (log scale)")
    if "bars" in axes:
        n += _bars(axes["bars"], d["categories"], d["bars"], f"8b on {d['top']}: per benchmark", "score (0-100)")
    return n


def _fig2(fig, d) -> int:
    """Scores per student (top row); GKD - SFT with its interval (bottom row, when any pair exists)."""
    models = [m for m, series in d["panels"].items() if _series_have(series)]
    with_deltas = any(_has(d["deltas"][m]) for m in models)
    axes = fig.subplots(1 + with_deltas, len(models), squeeze=False,
                        gridspec_kw={"height_ratios": [1.6, 1][: 1 + with_deltas]})
    n = 0
    for i, m in enumerate(models):
        n += _lines(axes[0][i], d["sizes"], d["panels"][m], f"{m}: SFT vs GKD", AVG_YLABEL if i == 0 else "",
                    "" if with_deltas else "training set size (log scale)")
        if with_deltas:
            _delta_points(axes[1][i], d["sizes"], d["deltas"][m], DELTA_YLABEL if i == 0 else "",
                          "training set size (log scale)")
    return n


def _fig3(fig, d) -> int:
    return _bars(fig.subplots(), d["categories"], d["bars"],
                 f"8b on {d['top']}: GKD from T_s vs from the instruction-tuned 70b", "score (0-100)")


def _fig4(fig, d) -> int:
    """SFT and GKD per student for each task (top row); GKD - SFT with its interval (bottom row)."""
    panels = {t: p for t, p in d["panels"].items() if _series_have(p["bars"])}
    with_deltas = any(_has(p["deltas"]) for p in panels.values())
    axes = fig.subplots(1 + with_deltas, len(panels), squeeze=False,
                        gridspec_kw={"height_ratios": [1.6, 1][: 1 + with_deltas]})
    n = 0
    for i, (title, p) in enumerate(panels.items()):
        n += _bars(axes[0][i], p["categories"], p["bars"], title, "score (0-100)" if i == 0 else "")
        if with_deltas:
            _delta_bars(axes[1][i], p["categories"], p["deltas"], DELTA_YLABEL if i == 0 else "")
    return n


def _fig5(fig, d) -> int:
    panels = {t: series for t, series in d["panels"].items() if _series_have(series)}
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    return sum(_lines(ax, d["sizes"], series, f"2-Stage: {title}", "score (0-100)" if i == 0 else "",
                      "synthetic data size (log scale)")
               for i, (ax, (title, series)) in enumerate(zip(axes, panels.items(), strict=True)))


RECEIPT_COLORS = {"GKD": COLORS["GKD"], "SFT-long (compute-matched)": "#55A868", "SFT": COLORS["SFT"]}


def _receipts(fig, d) -> int:
    """Gain over SFT vs cost, one panel per student: each series across the ladder, a point per
    size (labelled; '~' = estimated cost) with its 95% paired interval (filled = excludes 0);
    SFT itself sits at 0. Read it as: how much gain does each extra hour buy, and would the same
    steps of plain SFT (the compute-matched control) have bought as much."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    panels = {m: p for m, p in d["panels"].items() if any(pt for pts in p.values() for pt in pts)}
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    n = 0
    for i, (ax, (student, series)) in enumerate(zip(axes, panels.items(), strict=True)):
        for name, pts in series.items():
            got = [p for p in pts if p is not None]
            color = RECEIPT_COLORS.get(name, FALLBACK[0])
            if len(got) > 1:
                ax.plot([p["x"] for p in got], [p["y"] for p in got], color=color, linewidth=0.8, alpha=0.5)
            for p in got:
                err = _err({"delta": p["y"], "lo": p["lo"], "hi": p["hi"]})
                ax.errorbar([p["x"]], [p["y"]], yerr=err, fmt="s" if name == "SFT" else "o", markersize=5,
                            capsize=3, color=color, markerfacecolor=color if name == "SFT" or p["marked"] else "white")
                ax.annotate(("~" if p["estimated"] else "") + p["label"], (p["x"], p["y"]), textcoords="offset points",
                            xytext=(4, 4), fontsize=6)
            n += len(got)
        ax.axhline(0, color="gray", linewidth=0.8, linestyle="--")
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.tick_params(axis="x", labelsize=7)
        ax.set_title(student, fontsize=10)
        ax.set_xlabel(f"cost from the shared start ({d['unit']}, log scale)", fontsize=8)
        ax.set_ylabel("gain over SFT (points, 95% paired CI)" if i == 0 else "", fontsize=8)
        ax.grid(alpha=0.3)
        ax.margins(x=0.15, y=0.15)
        handles = [Line2D([], [], marker="s" if name == "SFT" else "o", color=color, linestyle="-", label=name)
                   for name, color in RECEIPT_COLORS.items()]
        handles.append(Line2D([], [], marker="o", color="gray", markerfacecolor="white", linestyle="",
                              label="CI includes 0 / none"))
        ax.legend(handles=handles, fontsize=6)
    return n


def points(name: str, data: dict) -> int:
    """How many scores figure `name` would plot (0: nothing to draw)."""
    if name == "receipts":   # SFT's own points (at 0) alone are nothing to compare
        return sum(p is not None for series in data["panels"].values() for k, pts in series.items()
                   if k != "SFT" for p in pts)
    if name == "fig1":
        groups = [*data["lines"].values(), *data["bars"].values()]
    elif name == "fig3":
        groups = list(data["bars"].values())
    elif name == "fig4":
        groups = [v for p in data["panels"].values() for v in p["bars"].values()]
    else:
        groups = [v for series in data["panels"].values() for v in series.values()]
    return sum(v is not None for values in groups for v in values)


FIGURES = {  # name -> (drawer, size in inches, suptitle)
    "fig1": (_fig1, (11, 4.2), "Figure 1: student initialisation for KD (8b)"),
    "fig2": (_fig2, (13, 6.2), "Figure 2: SFT vs GKD across training set sizes"),
    "fig3": (_fig3, (7.5, 4.2), "Figure 3: a stronger instruction-tuned teacher (GKD-IT)"),
    "fig4": (_fig4, (13, 6.2), "Figure 4: domain tasks, SFT vs GKD per student"),
    "fig5": (_fig5, (13, 4.2), "Figure 5: synthetic data size in two-stage KD"),
    "receipts": (_receipts, (13, 4.4), "Receipts: gain over SFT vs cost across the ladder (Table 3)"),
}


def build(name: str, data: dict):
    """-> (matplotlib Figure of figure `name`, scores plotted), or (None, 0) with nothing to plot."""
    from matplotlib.figure import Figure

    if not points(name, data):
        return None, 0
    drawer, size, title = FIGURES[name]
    fig = Figure(figsize=size, layout="constrained")
    n = drawer(fig, data)
    fig.suptitle(title, fontsize=12)
    return fig, n


def draw(name: str, data: dict, path: Path) -> int:
    """Draw figure `name` from `data` into `path` (PNG, atomically); -> scores plotted. With none,
    nothing is drawn and an older PNG at `path` is removed (it would show cells that are gone)."""
    path = Path(path)
    fig, n = build(name, data)
    if fig is None:
        path.unlink(missing_ok=True)
        return 0
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
