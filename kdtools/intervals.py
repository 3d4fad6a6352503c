"""KD-minus-SFT deltas of eval records, each with its 95% paired bootstrap interval.

    ivs = Intervals(resamples=2000, seed=world.seed)
    d = ivs.delta([(kd, sft, "bbh")])                     # one benchmark: paired over its items
    avg = ivs.delta([(kd, sft, m) for m in GENERAL])      # an Average: stratified, then averaged
    ivs.resolve()        # every requested interval at once (one pass of draws per benchmark)
    d.value, d.interval, d.why, d.text(), d.ci_text()

`kdtools report` asks for every delta of Tables 1-3 and Figures 2 and 4, then resolves; the
receipts ask for theirs the same way. A delta's value is the difference of the eval JSONs'
metrics (the tables' numbers); its interval comes from the per-item scores in the evals'
samples files (kdtools.itemscores), paired item by item (kdtools.bootstrap). A delta without an
interval keeps its value and says why (`why`): no samples file, different item sets, resampling
off, ...
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kdtools.bootstrap import Bootstrap, Interval, Unpaired
from kdtools.itemscores import ItemScores, NoItems

if TYPE_CHECKING:
    from kdtools.evalindex import Record

LEVEL = 0.95
MARK = "*"


def legend(resamples: int) -> str:
    """The line under a table that says what the mark and the CI rows mean."""
    if resamples == 0:
        return "No intervals (--resamples 0)."
    return (f"{MARK} = the delta's 95% paired bootstrap interval excludes 0 ({resamples:,} resamples of the "
            "benchmark's items, the same items for both models; an Average resamples each benchmark on its "
            "own). '95% CI' rows give the interval; '-' there: no interval (report.json `intervals` says why).")


@dataclass(eq=False)
class Delta:
    """One KD-minus-SFT cell: `pairs` are (kd record, sft record, metric), one per benchmark averaged."""

    pairs: tuple
    value: float | None = None          # mean over pairs of kd metric - sft metric (None: a cell missing)
    interval: Interval | None = None
    why: str | None = None              # why there is no interval

    def text(self) -> str:
        if self.value is None:
            return "-"
        return f"{self.value:+.2f}" + (MARK if self.interval is not None and self.interval.excludes_zero else "")

    def ci_text(self) -> str:
        iv = self.interval
        return "-" if iv is None else f"[{iv.lo:+.2f}, {iv.hi:+.2f}]"

    def as_dict(self) -> dict:
        """For report.json / intervals.csv: the interval, or why there is none."""
        if self.interval is not None:
            return self.interval.as_dict()
        return {"delta": None if self.value is None else round(self.value, 4), "why": self.why}


class Intervals:
    def __init__(self, resamples: int = 2000, seed: int = 0, level: float = LEVEL):
        self.resamples, self.seed, self.level = resamples, seed, level
        self.boot = Bootstrap(resamples, seed, level) if resamples > 0 else None
        self.scores = ItemScores()
        self.pending: list[Delta] = []

    def delta(self, pairs: Sequence[tuple[Record | None, Record | None, str]]) -> Delta:
        """Request the delta of `pairs` (computed by resolve()); a missing record or metric -> no value."""
        pairs = tuple(pairs)
        kd = [None if k is None else k.metrics.get(m) for k, _, m in pairs]
        sft = [None if s is None else s.metrics.get(m) for _, s, m in pairs]
        d = Delta(pairs)
        if pairs and all(v is not None for v in kd + sft):
            d.value = sum(kd) / len(kd) - sum(sft) / len(sft)
            self.pending.append(d)
        return d

    def resolve(self) -> None:
        """Compute every pending delta's interval (or its reason)."""
        pending, self.pending = self.pending, []
        if self.boot is None:
            for d in pending:
                d.why = "intervals off (--resamples 0)"
            return
        ready = []
        for d in pending:
            try:
                items = [(self.scores.items(k, m), self.scores.items(s, m)) for k, s, m in d.pairs]
            except NoItems as exc:
                d.why = str(exc)
                continue
            ready.append((d, items))
        self.boot.prepare(x for _, items in ready for pair in items for x in pair)
        for d, items in ready:
            try:
                d.interval = self.boot.paired(*items[0]) if len(items) == 1 else self.boot.stratified(items)
            except Unpaired as exc:
                d.why = str(exc)
                continue
            # the value shown is the eval JSONs' difference; the per-item one agrees within rounding
            d.interval = Interval(d.value, d.interval.lo, d.interval.hi, d.interval.n, self.level, self.resamples)

    def describe(self) -> dict:
        return {"method": "paired percentile bootstrap over each benchmark's items; Averages stratified by benchmark",
                "resamples": self.resamples, "seed": self.seed, "level": self.level}
