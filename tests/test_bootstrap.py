"""kdtools.bootstrap: the paired bootstrap behind the report's intervals, on synthetic scores
with a known difference. Every simulation is seeded, so the coverage checks cannot flake: their
tolerances are several binomial standard errors wide around 95%."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from kdtools.bootstrap import Bootstrap, Interval, Items, Unpaired, ratio


def ids(n: int) -> list[str]:
    return [f"q{i:05d}" for i in range(n)]


def continuous_pair(rng, n: int, delta: float, item_sd: float = 10.0, noise_sd: float = 3.0):
    """Per-item scores of two models: a shared item difficulty (the pairing) plus own noise; the
    population difference is exactly `delta`."""
    item = rng.normal(50, item_sd, n)
    return item + delta + rng.normal(0, noise_sd, n), item + rng.normal(0, noise_sd, n)


def binary_pair(rng, n: int):
    """0/100 accuracy: SFT right with p 0.5; KD fixes 20% of SFT's misses and breaks 10% of its
    hits. Population delta: 0.5*0.2 - 0.5*0.1 = 5 points."""
    b = rng.random(n) < 0.5
    flip = rng.random(n)
    a = np.where(b, flip >= 0.1, flip < 0.2)
    return 100.0 * a, 100.0 * b


def coverage(make, truth: float, datasets: int, n: int, resamples: int = 1000) -> float:
    hits = 0
    for d in range(datasets):
        a, b = make(np.random.default_rng(1000 + d), n)
        iv = Bootstrap(resamples, seed=d).paired(Items.mean("x", ids(n), a), Items.mean("x", ids(n), b))
        hits += iv.lo <= truth <= iv.hi
    return hits / datasets


def test_coverage_of_a_known_difference_continuous():
    # 400 datasets: binomial SE of the coverage at 95% is 1.1 points; the window is -5/+3.5 points
    got = coverage(lambda rng, n: continuous_pair(rng, n, 2.0), 2.0, datasets=400, n=100)
    assert 0.90 <= got <= 0.985, got


def test_coverage_of_a_known_difference_accuracy():
    got = coverage(binary_pair, 5.0, datasets=400, n=200)
    assert 0.90 <= got <= 0.985, got


def test_no_difference_is_rarely_marked():
    """With a true delta of 0, about 5% of intervals exclude 0 (the marking's false alarms)."""
    marked = 0
    for d in range(300):
        a, b = continuous_pair(np.random.default_rng(d), 80, 0.0)
        marked += Bootstrap(1000, seed=d).paired(Items.mean("x", ids(80), a),
                                                 Items.mean("x", ids(80), b)).excludes_zero
    assert marked / 300 <= 0.10, marked


def test_paired_is_narrower_than_unpaired_for_correlated_items():
    rng = np.random.default_rng(7)
    a, b = continuous_pair(rng, 300, 1.0, item_sd=15.0, noise_sd=3.0)
    boot = Bootstrap(2000, seed=0)
    paired = boot.paired(Items.mean("x", ids(300), a), Items.mean("x", ids(300), b))
    # unpaired: each model's items resampled on their own (another stratum name = other draws)
    unpaired = np.quantile(boot.draws(Items.mean("x", ids(300), a)) - boot.draws(Items.mean("y", ids(300), b)),
                           [0.025, 0.975])
    assert (paired.hi - paired.lo) < 0.35 * (unpaired[1] - unpaired[0])
    # without a shared item effect, pairing buys nothing: the widths agree
    a, b = continuous_pair(rng, 300, 1.0, item_sd=0.0, noise_sd=10.0)
    paired = boot.paired(Items.mean("x", ids(300), a), Items.mean("x", ids(300), b))
    unpaired = np.quantile(boot.draws(Items.mean("x", ids(300), a)) - boot.draws(Items.mean("y", ids(300), b)),
                           [0.025, 0.975])
    assert 0.8 < (paired.hi - paired.lo) / (unpaired[1] - unpaired[0]) < 1.25


def test_stratified_average():
    """An Average over two benchmarks of very different sizes: its delta is the mean of the two
    deltas (not the pooled items'), its draws are the mean of the benchmarks' own paired draws,
    and its width is the analytic sqrt(var1 + var2) / 2."""
    rng = np.random.default_rng(3)
    small = continuous_pair(rng, 60, 4.0)
    big = continuous_pair(rng, 3000, 0.0)
    boot = Bootstrap(4000, seed=1)
    pairs = [(Items.mean("small", ids(60), small[0]), Items.mean("small", ids(60), small[1])),
             (Items.mean("big", ids(3000), big[0]), Items.mean("big", ids(3000), big[1]))]
    avg = boot.stratified(pairs)
    deltas = [a.value - b.value for a, b in pairs]
    assert avg.delta == pytest.approx(np.mean(deltas))
    assert avg.n == 3060
    pooled = np.concatenate([small[0], big[0]]).mean() - np.concatenate([small[1], big[1]]).mean()
    assert abs(avg.delta - pooled) > 1.0          # pooling would let the big benchmark dominate
    per = [boot.draws(a) - boot.draws(b) for a, b in pairs]
    assert np.quantile(np.mean(per, axis=0), [0.025, 0.975]) == pytest.approx([avg.lo, avg.hi])
    sd = [np.std(x - y, ddof=1) / np.sqrt(len(x)) for x, y in (small, big)]
    analytic = 2 * 1.96 * np.sqrt(sd[0] ** 2 + sd[1] ** 2) / 2
    assert (avg.hi - avg.lo) == pytest.approx(analytic, rel=0.15)
    # the order of the strata does not matter
    again = Bootstrap(4000, seed=1).stratified(pairs[::-1])
    assert (again.lo, again.hi) == pytest.approx((avg.lo, avg.hi))


def test_ratio_statistic_is_pooled():
    """DRFR-style items: [satisfied, requirements] per prompt; the value pools requirements."""
    items = Items.of("infobench", ["a", "b", "c"], [[100, 1], [0, 4], [300, 5]])
    assert items.value == pytest.approx(400 / 10)
    assert ratio(np.array([[1.0, 2.0], [3.0, 3.0]])) == pytest.approx([0.5, 1.0])


def script_interval(seed: int) -> str:
    code = ("import numpy as np; from kdtools.bootstrap import Bootstrap, Items\n"
            "r = np.random.default_rng(5); a = r.normal(50, 10, 150); b = a - r.normal(1, 3, 150)\n"
            "ids = [f'q{i}' for i in range(150)]\n"
            f"iv = Bootstrap(2000, seed={seed}).paired(Items.mean('bbh', ids, a), Items.mean('bbh', ids, b))\n"
            "print(repr((iv.delta, iv.lo, iv.hi)))")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout


def test_reproducible_across_processes_and_orders():
    assert script_interval(0) == script_interval(0)
    assert script_interval(0) != script_interval(1)
    rng = np.random.default_rng(5)
    a = rng.normal(50, 10, 150)
    b = a - rng.normal(1, 3, 150)
    names = [f"q{i}" for i in range(150)]
    here = Bootstrap(2000, seed=0).paired(Items.mean("bbh", names, a), Items.mean("bbh", names, b))
    assert script_interval(0).strip() == repr((here.delta, here.lo, here.hi))
    # items given in another order are the same items: the same interval
    perm = np.random.default_rng(9).permutation(150)
    shuffled = Bootstrap(2000, seed=0).paired(Items.mean("bbh", [names[i] for i in perm], a[perm]),
                                              Items.mean("bbh", [names[i] for i in perm], b[perm]))
    assert (shuffled.lo, shuffled.hi) == (here.lo, here.hi)


def test_batched_draws_equal_single_draws():
    rng = np.random.default_rng(11)
    cells = [Items.mean("gpqa", ids(500), rng.integers(0, 2, 500) * 100.0) for _ in range(4)]
    batched = Bootstrap(700, seed=2)
    batched.prepare(cells)
    for cell in cells:
        assert np.array_equal(batched.draws(cell), Bootstrap(700, seed=2).draws(cell))


def test_unpaired_items_are_refused():
    boot = Bootstrap(100)
    a = Items.mean("arc", ids(10), np.ones(10))
    with pytest.raises(Unpaired, match="different items .*10 vs 9 items"):
        boot.paired(a, Items.mean("arc", ids(9), np.ones(9)))
    with pytest.raises(Unpaired, match="different benchmarks"):
        boot.paired(a, Items.mean("gpqa", ids(10), np.ones(10)))
    with pytest.raises(ValueError, match="appears more than once"):
        Items.mean("arc", ["x", "x"], [1, 2])


def test_marking_excludes_zero():
    assert Interval(1.0, 0.2, 2.0, 10, 0.95, 100).excludes_zero
    assert Interval(-1.0, -2.0, -0.1, 10, 0.95, 100).excludes_zero
    assert not Interval(0.5, -0.3, 1.2, 10, 0.95, 100).excludes_zero
    # identical models: every resampled delta is 0, the interval [0, 0] does not exclude 0
    a = Items.mean("x", ids(20), np.arange(20.0))
    iv = Bootstrap(200).paired(a, Items.mean("x", ids(20), np.arange(20.0)))
    assert (iv.delta, iv.lo, iv.hi, iv.excludes_zero) == (0.0, 0.0, 0.0, False)
