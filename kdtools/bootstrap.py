"""Paired bootstrap intervals for the difference between two models scored on the same items.

    kd = Items.mean("bbh", ids, kd_scores)            # per-item scores (0-100), any id order
    sft = Items.mean("bbh", ids, sft_scores)
    boot = Bootstrap(resamples=2000, seed=0)
    iv = boot.paired(kd, sft)                          # Interval: delta, lo, hi (95%), excludes_zero
    iv = boot.stratified([(kd_bbh, sft_bbh), (kd_gpqa, sft_gpqa)])   # the delta of an Average

Pure numpy; `kdtools report` (the KD-minus-SFT deltas of Tables 1-3, Figures 2 and 4) and the
receipts use it. What it computes:

- **Items**: one model's scores on one benchmark (a *stratum*), as per-item sufficient statistics
  `stats` (n, k) and a `statistic` mapping summed statistics (..., k) -> the metric (...). A mean of
  per-item scores is stats [score, 1] with the ratio statistic; a pooled ratio (InFoBench's DRFR:
  satisfied / all requirements) is [satisfied, requirements] with the same statistic; a
  corpus-level metric (chrF) is its per-segment n-gram counts with its own statistic. So a
  resample's metric is the metric recomputed on the resampled items, whatever its kind.
- **Paired**: a resample draws n items with replacement; both models get THE SAME draw (the same
  multiplicity weights on the same ids), so per-item difficulty cancels and the interval is that
  of the difference. Items of the two models must have the same ids (refused otherwise).
- **Stratified average**: an Average over benchmarks resamples each benchmark's items on its own
  (with the very draws its own interval uses) and averages the per-benchmark deltas, so a large
  benchmark does not swamp a small one and the Average's delta is the mean of the benchmark deltas.
- **Percentile interval**: the (1-level)/2 and 1-(1-level)/2 quantiles of the resampled deltas;
  the point estimate is the delta on all items. It excludes 0 when lo > 0 or hi < 0.
- **Seeded**: the draws of a stratum depend only on (seed, stratum name, its item ids), hashed
  with sha256: the same inputs give the same numbers in any process, and every model compared
  on that stratum sees the same draws (each model's resampled metric is computed once).

Cost: a (resamples x n) weight matrix per stratum, built in chunks of CHUNK resamples, times the
(n x k) statistics of every model on that stratum (`prepare` batches them): MMLU-Pro's 12,032
items x 2,000 resamples is one pass of about a second.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

CHUNK = 250  # resamples per weight chunk: bounds memory at CHUNK x n floats


def ratio(sums: np.ndarray) -> np.ndarray:
    """Summed [numerator, denominator] (..., 2) -> numerator / denominator (...); 0/0 -> nan."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums[..., 0] / sums[..., 1]


class Unpaired(ValueError):
    """Two Items that cannot be compared item by item (different benchmark or item sets)."""


@dataclass(frozen=True, eq=False)
class Items:
    """One model's per-item statistics on one stratum, rows sorted by id (ids unique)."""

    stratum: str                                   # the benchmark; names the random draws
    ids: tuple[str, ...]                           # (n,) sorted item ids
    stats: np.ndarray                              # (n, k) float64, row i = item ids[i]
    statistic: Callable[[np.ndarray], np.ndarray]  # (..., k) summed stats -> (...) metric

    @classmethod
    def of(cls, stratum: str, ids: Sequence, stats, statistic=ratio) -> Items:
        ids = [str(i) for i in ids]
        if not ids:
            raise ValueError(f"{stratum}: no items")
        stats = np.asarray(stats, dtype=np.float64).reshape(len(ids), -1)
        order = sorted(range(len(ids)), key=ids.__getitem__)
        ids = tuple(ids[i] for i in order)
        dup = next((a for a, b in zip(ids, ids[1:], strict=False) if a == b), None)
        if dup is not None:
            raise ValueError(f"{stratum}: item id {dup!r} appears more than once")
        return cls(stratum, ids, stats[order], statistic)

    @classmethod
    def mean(cls, stratum: str, ids: Sequence, scores: Sequence[float]) -> Items:
        """The metric is the mean of per-item scores."""
        scores = np.asarray(scores, dtype=np.float64)
        return cls.of(stratum, ids, np.stack([scores, np.ones_like(scores)], axis=-1))

    @property
    def n(self) -> int:
        return len(self.ids)

    @property
    def value(self) -> float:
        """The metric on all items."""
        return float(self.statistic(self.stats.sum(axis=0)))

    def key(self) -> tuple[str, str]:
        """(stratum, digest of the ids): Items with equal keys share their draws."""
        return self.stratum, hashlib.sha256("\n".join(self.ids).encode()).hexdigest()


@dataclass(frozen=True)
class Interval:
    delta: float          # the difference on all items (a - b)
    lo: float             # the interval's ends
    hi: float
    n: int                # items compared (summed over strata)
    level: float
    resamples: int

    @property
    def excludes_zero(self) -> bool:
        return self.lo > 0 or self.hi < 0

    def as_dict(self) -> dict:
        return {"delta": round(self.delta, 4), "lo": round(self.lo, 4), "hi": round(self.hi, 4),
                "excludes_zero": self.excludes_zero, "items": self.n}


@dataclass
class Bootstrap:
    resamples: int = 2000
    seed: int = 0
    level: float = 0.95
    _draws: dict = field(default_factory=dict, repr=False)   # Items -> (resamples,) metric draws

    def __post_init__(self):
        if self.resamples < 1:
            raise ValueError(f"resamples must be positive, got {self.resamples}")
        if not 0 < self.level < 1:
            raise ValueError(f"level must be in (0, 1), got {self.level}")

    def rng(self, key: tuple[str, str]) -> np.random.Generator:
        words = np.frombuffer(hashlib.sha256(f"{key[0]}\n{key[1]}".encode()).digest(), dtype=np.uint32)
        return np.random.default_rng([self.seed, *words.tolist()])

    def prepare(self, items: Iterable[Items]) -> None:
        """Compute the draws of many Items at once: one pass of weights per stratum."""
        groups: dict[tuple, list[Items]] = {}
        for it in items:
            if it not in self._draws:
                groups.setdefault(it.key(), []).append(it)
        for key, group in groups.items():
            # one column per distinct statistic (the means' all-ones counts once), then each
            # Items' columns picked back out of the resampled sums
            columns, where = [], {}
            for g in group:
                for col in g.stats.T:
                    if col.tobytes() not in where:
                        where[col.tobytes()] = len(columns)
                        columns.append(col)
            sums = self._resampled_sums(key, np.stack(columns, axis=1))      # (resamples, distinct)
            for g in group:
                picked = sums[:, [where[col.tobytes()] for col in g.stats.T]]
                self._draws[g] = np.asarray(g.statistic(picked), dtype=np.float64)

    def _resampled_sums(self, key: tuple, stats: np.ndarray) -> np.ndarray:
        """(n, k) -> (resamples, k): each resample's summed stats, items drawn with replacement."""
        n = stats.shape[0]
        rng, out = self.rng(key), np.empty((self.resamples, stats.shape[1]))
        for start in range(0, self.resamples, CHUNK):
            m = min(CHUNK, self.resamples - start)
            draws = rng.integers(0, n, size=(m, n)) + (np.arange(m) * n)[:, None]
            weights = np.bincount(draws.ravel(), minlength=m * n).reshape(m, n).astype(np.float64)
            out[start:start + m] = weights @ stats
        return out

    def draws(self, items: Items) -> np.ndarray:
        """(resamples,) the metric of `items` on each resample of its stratum."""
        if items not in self._draws:
            self.prepare([items])
        return self._draws[items]

    def interval(self, delta: float, draws: np.ndarray, n: int) -> Interval:
        tail = (1 - self.level) / 2
        lo, hi = np.quantile(draws, [tail, 1 - tail])
        return Interval(float(delta), float(lo), float(hi), n, self.level, self.resamples)

    def paired(self, a: Items, b: Items) -> Interval:
        """The interval of a's metric minus b's, both resampled on the same items."""
        check_paired(a, b)
        return self.interval(a.value - b.value, self.draws(a) - self.draws(b), a.n)

    def stratified(self, pairs: Sequence[tuple[Items, Items]]) -> Interval:
        """The interval of the mean over strata of (a - b), each stratum resampled on its own."""
        if not pairs:
            raise ValueError("stratified: no strata")
        if len({a.stratum for a, _ in pairs}) < len(pairs):
            raise Unpaired("stratified: a stratum appears twice")
        for a, b in pairs:
            check_paired(a, b)
        self.prepare([x for pair in pairs for x in pair])
        delta = float(np.mean([a.value - b.value for a, b in pairs]))
        draws = np.mean([self.draws(a) - self.draws(b) for a, b in pairs], axis=0)
        return self.interval(delta, draws, sum(a.n for a, _ in pairs))


def check_paired(a: Items, b: Items) -> None:
    """Raise Unpaired (with what differs) unless a and b are the same stratum's same items."""
    if a.stratum != b.stratum:
        raise Unpaired(f"different benchmarks ({a.stratum} vs {b.stratum})")
    if a.ids != b.ids:
        only_a, only_b = len(set(a.ids) - set(b.ids)), len(set(b.ids) - set(a.ids))
        raise Unpaired(f"{a.stratum}: the two evals scored different items ({a.n} vs {b.n} items; "
                       f"{only_a} only in the first, {only_b} only in the second)")
