"""`kdtools report`'s intervals, from hand-made eval JSONs and samples files whose per-item scores
are known (smoke world, seed 7): the CI rows equal the paired bootstrap of those items
(stratified for Averages), a clear difference is marked and a null one is not, different item
sets and a missing samples file give a dash with the reason in report.json, the same report from
another process is identical, and Figures 2 and 4 carry the intervals as error bars."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from kdtools import figures, report
from kdtools.bootstrap import Bootstrap, Items
from kdtools.evalindex import Lookup, load_evals
from kdtools.evaluation import metrics as evalmetrics
from kdtools.intervals import Intervals
from kdtools.itemscores import chrf_statistic, chrf_stats, item_id
from tests.conftest import kdtools, one_line_error
from tests.test_report import BENCH, WORLD, eval_doc, invoke, put, read_csv

SEED = 7              # the smoke world's seed: the report's bootstrap seed
KEYS = {"bbh": "exact_match", "gpqa": "acc", "ifeval": "prompt_level_loose_acc", "mmlu_pro": "acc",
        "arc": "acc"}
SFT, GKD = dict(init="base", teacher=None), dict(init="sft", teacher="70b")
WORDS = ["the", "cat", "sat", "on", "a", "mat", "while", "old", "men", "walked", "by", "quiet", "green", "rivers", "under", "grey", "skies"]


def acc_rows(bench: str, correct) -> list[dict]:
    return [{"benchmark": bench, "subtask": f"kd_{bench}", "doc_id": i, "filter": "none", "target": "ABCD"[i % 4],
             "scores": {KEYS[bench]: float(c)}} for i, c in enumerate(correct)]


def general_cell(per: dict) -> tuple[dict, list[dict]]:
    """per: {bench: 0/1 array, infobench: [[True/False/None, ...] per prompt]} -> (metrics, rows)."""
    rows, got = [], {}
    for b in ("bbh", "gpqa", "ifeval", "mmlu_pro"):
        rows += acc_rows(b, per[b])
        got[b] = round(100 * float(np.mean(per[b])), 2)
    rows += [{"benchmark": "infobench", "subtask": "kd_infobench", "doc_id": i, "target": None,
              "scores": {"requirements": q, "drfr": evalmetrics.drfr([q])}} for i, q in enumerate(per["infobench"])]
    got["infobench"] = evalmetrics.drfr(per["infobench"])
    return got, rows


def flip(rng, x, p):
    return np.where(rng.random(len(x)) < p, 1 - x, x)


def general_pair(rng, n=200, prompts=60):
    """SFT and GKD: BBH +10 for GKD (GKD right wherever SFT is), GPQA a null difference (one item
    gained, one lost), the rest GKD = SFT with 10% of items flipped."""
    sft = {"bbh": (np.arange(n) < 80).astype(float), "gpqa": (np.arange(n) % 2 == 0).astype(float),
           "ifeval": (rng.random(n) < 0.5).astype(float), "mmlu_pro": (rng.random(n) < 0.3).astype(float)}
    gkd = {"bbh": (np.arange(n) < 100).astype(float), "gpqa": sft["gpqa"].copy(),
           "ifeval": flip(rng, sft["ifeval"], 0.1), "mmlu_pro": flip(rng, sft["mmlu_pro"], 0.1)}
    gkd["gpqa"][[0, 1]] = [0.0, 1.0]
    reqs = [[bool(x) for x in rng.random(rng.integers(1, 6)) < 0.6] for _ in range(prompts)]
    sft["infobench"] = reqs
    gkd["infobench"] = [[(not r) if rng.random() < 0.15 else r for r in q] for q in reqs]
    return sft, gkd


def put_cell(world_dir: Path, model, method, task, size, got, rows, samples=True, variant="", **extra) -> None:
    path = put(world_dir, eval_doc(model, method, task, size, got, **extra), variant)
    if samples:
        path.with_name(f"{task}.samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def translation_cell(rng, refs: list[str], quality: float):
    """Hypotheses that keep each reference word with probability `quality`; COMET per segment."""
    hyps = [" ".join(w if rng.random() < quality else "zz" for w in r.split()) for r in refs]
    comet = np.round(rng.normal(60 + 20 * quality, 5, len(refs)), 2)
    rows = [{"benchmark": "translation", "subtask": "kd_translation", "doc_id": i, "target": r, "response": h + " ",
             "scores": {"chrf": evalmetrics.sentence_chrf(h, r), "comet": float(c)}}
            for i, (h, r, c) in enumerate(zip(hyps, refs, comet, strict=True))]
    return {"chrf": evalmetrics.chrf(hyps, refs), "comet": round(float(comet.mean()), 2)}, rows


def score_cell(rng, bench: str, metric: str, n: int, base: float, lift: float):
    """Per-item 0-100 scores (summarization ROUGE-L) or 0/1 accuracy (ARC)."""
    if metric == "accuracy":
        x = (rng.random(n) < base + lift).astype(float)
        return {"accuracy": round(100 * float(x.mean()), 2)}, acc_rows(bench, x)
    x = np.round(np.clip(rng.normal(100 * (base + lift), 15, n), 0, 100), 2)
    return {metric: round(float(x.mean()), 2)}, [
        {"benchmark": bench, "subtask": f"kd_{bench}", "doc_id": i, "target": f"t{i}", "scores": {metric: float(v)}}
        for i, v in enumerate(x)]


def write_world(world_dir: Path) -> dict:
    """The hand-made grid; -> every cell's samples rows, for the expected intervals."""
    rng = np.random.default_rng(0)
    cells = {}
    for model, size in (("1b", "10k"), ("3b", "10k"), ("8b", "10k"), ("8b", "full")):
        sft, gkd = general_pair(rng)
        if model == "3b":   # GKD evaluated on the first 150 BBH questions only (--limit): unpaired
            gkd["bbh"] = gkd["bbh"][:150]
        for method, per, dims in (("sft", sft, SFT), ("gkd", gkd, GKD)):
            got, rows = general_cell(per)
            cells[model, size, method] = rows
            put_cell(world_dir, model, method, "general", size, got, rows, **dims,
                     samples=not (model == "8b" and size == "10k" and method == "sft"))   # 8b 10k SFT: none
    got, _ = general_cell(general_pair(rng)[1])
    put_cell(world_dir, "8b", "seqkd", "general", "full", got, [], samples=False, init="base", teacher="70b")
    refs = [" ".join(rng.choice(WORDS, rng.integers(4, 10))) for _ in range(80)]
    for method, quality, dims in (("sft", 0.5, dict(init="sft")), ("gkd", 0.8, GKD)):
        got, rows = translation_cell(rng, refs, quality)
        cells["translation", method] = rows
        put_cell(world_dir, "1b", method, "translation", "full", got, rows, **dims)
        for task, metric, base in (("summarization", "rougeL", 0.3), ("arc", "accuracy", 0.4)):
            got, rows = score_cell(rng, task, metric, 150, base, 0.1 * (method == "gkd"))
            cells[task, method] = rows
            put_cell(world_dir, "1b", method, task, "full", got, rows, **dims)
    got, _ = translation_cell(rng, refs, 0.7)
    put_cell(world_dir, "1b", "mix", "translation", "full", got, [], samples=False, teacher="70b",
             synthetic="100k", variant="synth-100k")
    return cells


def items(rows: list[dict], bench: str) -> Items:
    """What the report should build from these rows (ids as the report makes them)."""
    rows = [r for r in rows if r["benchmark"] == bench]
    ids = [item_id(r) for r in rows]
    if bench == "infobench":
        return Items.of(bench, ids, [[100.0 * sum(j is True for j in r["scores"]["requirements"]),
                                      len(r["scores"]["requirements"])] for r in rows])
    key = KEYS.get(bench) or {"summarization": "rougeL", "translation": "comet"}[bench]
    return Items.mean(bench, ids, [(100.0 if bench in KEYS else 1.0) * r["scores"][key] for r in rows])


def ci(iv) -> str:
    return f"[{iv.lo:+.2f}, {iv.hi:+.2f}]"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    results = tmp_path_factory.mktemp("intervals") / "results"
    cells = write_world(results / WORLD)
    kdtools("report", results=results, env={"WANDB_MODE": "disabled"})
    return results / WORLD, cells


def test_per_benchmark_intervals_and_marks(world):
    world_dir, cells = world
    _, t3 = read_csv(world_dir / "tables" / "table3.csv")
    boot = Bootstrap(2000, SEED)
    for bench, header in zip(BENCH, ("BBH", "GPQA", "IF-Eval", "InfoBench", "MMLU-Pro"), strict=True):
        want = boot.paired(items(cells["1b", "10k", "gkd"], bench), items(cells["1b", "10k", "sft"], bench))
        assert t3[("1b", "10k", "GKD-SFT 95% CI")][header] == ci(want), bench
        assert t3[("1b", "10k", "GKD-SFT")][header].endswith("*") == want.excludes_zero, bench
    assert t3[("1b", "10k", "GKD-SFT")]["BBH"] == "+10.00*"     # GKD right wherever SFT is, on 20 more
    assert t3[("1b", "10k", "GKD-SFT")]["GPQA"] == "+0.00"      # one gained, one lost: not marked
    lo, hi = (float(x) for x in t3[("1b", "10k", "GKD-SFT 95% CI")]["GPQA"].strip("[]").split(","))
    assert lo < 0 < hi and hi - lo <= 3.0     # paired: only the 2 differing items move it (unpaired: ~20)
    lo, hi = (float(x) for x in t3[("1b", "10k", "GKD-SFT 95% CI")]["BBH"].strip("[]").split(","))
    assert 5 < lo < 10 < hi < 15


def test_average_is_stratified(world):
    world_dir, cells = world
    _, t3 = read_csv(world_dir / "tables" / "table3.csv")
    want = Bootstrap(2000, SEED).stratified(
        [(items(cells["1b", "10k", "gkd"], b), items(cells["1b", "10k", "sft"], b)) for b in BENCH])
    assert t3[("1b", "10k", "GKD-SFT 95% CI")]["Average"] == ci(want)
    assert t3[("1b", "10k", "GKD-SFT")]["Average"].rstrip("*") == f"{want.delta:+.2f}"
    _, t1 = read_csv(world_dir / "tables" / "table1.csv")       # Table 1: 8b on full, same rules
    want = Bootstrap(2000, SEED).stratified(
        [(items(cells["8b", "full", "gkd"], b), items(cells["8b", "full", "sft"], b)) for b in BENCH])
    assert t1[("GKD-SFT 95% CI",)]["Average"] == ci(want)
    _, t2 = read_csv(world_dir / "tables" / "table2.csv")       # Table 2: the three tasks' metrics
    pairs = [(items(cells[t, "gkd"], t), items(cells[t, "sft"], t)) for t in ("translation", "summarization", "arc")]
    boot = Bootstrap(2000, SEED)
    assert t2[("1b KD-SFT 95% CI",)]["Average GKD"] == ci(boot.stratified(pairs))
    assert t2[("1b KD-SFT 95% CI",)]["Summarization GKD"] == ci(boot.paired(*pairs[1]))
    assert t2[("1b KD-SFT 95% CI",)]["Translation GKD"] == ci(boot.paired(*pairs[0]))   # COMET


def test_corpus_chrf_interval(world):
    """chrF is corpus-level: the interval resamples segments' n-gram counts, not sentence chrF."""
    world_dir, cells = world
    _, t2 = read_csv(world_dir / "tables" / "table2.csv")
    kd, sft = ([r for r in cells["translation", m]] for m in ("gkd", "sft"))

    def chrf_items(rows):
        return Items.of("translation", [item_id(r) for r in rows],
                        chrf_stats([r["response"].strip() for r in rows], [r["target"] for r in rows]), chrf_statistic)

    want = Bootstrap(2000, SEED).paired(chrf_items(kd), chrf_items(sft))
    assert t2[("1b KD-SFT 95% CI",)]["Translation chrF GKD"] == ci(want)
    assert t2[("1b KD-SFT",)]["Translation chrF GKD"].rstrip("*") == f"{want.delta:+.2f}"


def test_dashes_say_why(world):
    world_dir, _ = world
    _, t3 = read_csv(world_dir / "tables" / "table3.csv")
    assert t3[("3b", "10k", "GKD-SFT 95% CI")]["BBH"] == "-"       # 150 vs 200 items
    assert t3[("3b", "10k", "GKD-SFT 95% CI")]["Average"] == "-"
    assert t3[("3b", "10k", "GKD-SFT 95% CI")]["GPQA"] != "-"
    assert t3[("3b", "10k", "GKD-SFT")]["BBH"] != "-"              # the delta itself stays
    assert all(t3[("8b", "10k", "GKD-SFT 95% CI")][h] == "-" for h in ("BBH", "InfoBench", "Average"))
    _, t1 = read_csv(world_dir / "tables" / "table1.csv")
    assert t1[("SeqKD-SFT 95% CI",)]["BBH"] == "-" and t1[("SeqKD-SFT",)]["BBH"] != "-"
    summary = json.loads((world_dir / "tables" / "report.json").read_text())
    why = {(x["table"], x["row"], x["column"]): x["why"] for x in summary["intervals"]["without"]}
    assert "scored different items (150 vs 200 items" in why["table3", "3b / 10k / GKD-SFT", "BBH"]
    assert "different items" in why["table3", "3b / 10k / GKD-SFT", "Average"]
    assert why["table3", "8b / 10k / GKD-SFT", "GPQA"].endswith("8b/sft/general/10k/general.samples.jsonl is missing")
    assert "1b/mix/translation" in why["table2", "1b KD-SFT", "Translation Mix"]
    listed = list(csv.DictReader((world_dir / "tables" / "intervals.csv").open()))
    assert len(listed) == summary["intervals"]["deltas"]
    bbh = next(r for r in listed if (r["table"], r["row"], r["column"]) == ("table3", "1b / 10k / GKD-SFT", "BBH"))
    assert bbh["excludes_zero"] == "True" and float(bbh["delta"]) == pytest.approx(10.0) and bbh["why"] == ""
    assert summary["intervals"]["marked"] == sum(r["excludes_zero"] == "True" for r in listed) >= 2


def test_same_report_from_another_process(world, tmp_path, monkeypatch):
    world_dir, _ = world
    monkeypatch.setenv("WANDB_MODE", "disabled")
    result = invoke("report", "--results", str(world_dir), "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    for name in ("table1.csv", "table2.csv", "table3.csv", "intervals.csv", "table3.md"):
        assert (tmp_path / "tables" / name).read_text() == (world_dir / "tables" / name).read_text(), name


def test_resamples_option(world, tmp_path, monkeypatch):
    world_dir, _ = world
    monkeypatch.setenv("WANDB_MODE", "disabled")
    result = invoke("report", "--results", str(world_dir), "--out", str(tmp_path), "--resamples", "0")
    assert result.exit_code == 0, result.output
    _, t3 = read_csv(tmp_path / "tables" / "table3.csv")
    assert t3[("1b", "10k", "GKD-SFT")]["BBH"] == "+10.00" and t3[("1b", "10k", "GKD-SFT 95% CI")]["BBH"] == "-"
    one_line_error(invoke("report", "--results", str(world_dir), "--resamples", "10"), "--resamples 10", "at least 100")


def figure_data(world_dir: Path) -> dict:
    lk = Lookup(load_evals(world_dir / "evals"))
    ivs = Intervals(2000, SEED)
    data = report.figure_data(lk, ["10k", "20k"], "full", ivs)
    ivs.resolve()
    return report.plain(data)


def bars_of(ax) -> list:
    """[(y, lo, hi)] of every delta drawn on an axis: a point or a bar, with its error bar's ends
    (None, None without one)."""
    from matplotlib.container import BarContainer, ErrorbarContainer

    def ends(err):
        segs = err.lines[2][0].get_segments() if err is not None and err.has_yerr else []
        return tuple(sorted((segs[0][0][1], segs[0][1][1]))) if segs else (None, None)

    out = []
    for c in ax.containers:
        if isinstance(c, ErrorbarContainer) and c.lines[0] is not None:      # a point (bars' own have none)
            out.append((c.lines[0].get_ydata()[0], *ends(c)))
        elif isinstance(c, BarContainer):
            out += [(p.get_height(), *ends(c.errorbar)) for p in c.patches]
    return out


def test_figures_carry_the_intervals(world):
    world_dir, _ = world
    data = figure_data(world_dir)
    fig, n = figures.build("fig2", data["fig2"])
    assert n == 6                                   # SFT and GKD averages of each student at 10k
    top, bottom = fig.axes[:3], fig.axes[3:]
    assert [a.get_title() for a in top] == ["1b: SFT vs GKD", "3b: SFT vs GKD", "8b: SFT vs GKD"]
    d = data["fig2"]["deltas"]["1b"][0]
    assert bars_of(bottom[0]) == [pytest.approx((d["delta"], d["lo"], d["hi"]))]
    assert data["fig2"]["deltas"]["8b"][0]["lo"] is None            # no SFT samples: a point, no bar
    assert bars_of(bottom[2]) == [(pytest.approx(data["fig2"]["deltas"]["8b"][0]["delta"]), None, None)]
    fig, n = figures.build("fig4", data["fig4"])
    assert len(fig.axes) == 6 and n == 6           # 1b SFT + GKD on three tasks
    d = data["fig4"]["panels"]["Summarization (ROUGE-L)"]["deltas"][0]
    assert d["marked"] and bars_of(fig.axes[4])[0] == pytest.approx((d["delta"], d["lo"], d["hi"]))
    for name in ("fig2", "fig4"):
        assert (world_dir / "figures" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_empty_panels_are_left_out(world):
    world_dir, _ = world
    data = figure_data(world_dir)
    fig, _ = figures.build("fig5", data["fig5"])
    assert fig is None                              # no two-stage cells: not drawn at all
    only_1b = {**data["fig2"], "panels": {m: p if m == "1b" else {k: [None] * 2 for k in p}
                                          for m, p in data["fig2"]["panels"].items()}}
    fig, _ = figures.build("fig2", only_1b)
    assert [a.get_title() for a in fig.axes][:1] == ["1b: SFT vs GKD"] and len(fig.axes) == 2
