"""`kdtools report`'s fidelity table (kdtools/fidelity.py) from hand-made evals whose per-item scores
are known: each benchmark's floor, the teacher T_s at the world's full size, the best small SFT and
the best student, the leads with their paired intervals, and a verdict that names what fails."""

from __future__ import annotations

import json

import numpy as np

from kdtools.bootstrap import Bootstrap, Items
from kdtools.itemscores import item_id
from tests.test_report import WORLD, invoke, read_csv
from tests.test_report_intervals import SEED, acc_rows, put_cell

N = 200


def first(k: int) -> np.ndarray:
    """N items, the first k right."""
    return (np.arange(N) < k).astype(float)


def cell(world_dir, model, method, size, per: dict, floor: dict | None = None) -> None:
    """A general-suite eval of BBH, GPQA, IFEval, MMLU-Pro (InfoBench absent) with those items."""
    rows, got = [], {}
    for bench, x in per.items():
        rows += acc_rows(bench, x)
        got[bench] = round(100 * float(np.mean(x)), 2)
    extra = {"teacher": None, "init": "base"} if method in ("sft", "floor") else {}
    put_cell(world_dir, model, method, "general", size, got, rows, **extra)
    if floor:  # the floor eval's benchmarks entries say which answer won
        path = world_dir / "evals" / model / method / "general" / size / "general.json"
        doc = json.loads(path.read_text())
        for bench, strategy in floor.items():
            doc["benchmarks"][bench]["floor"] = {"strategy": strategy, "scores": {strategy: got[bench]}}
        doc["backend"] = "floor"
        path.write_text(json.dumps(doc))


def test_fidelity_table_compares_teacher_and_students_with_the_floor(tmp_path, monkeypatch):
    world_dir = tmp_path / "results" / WORLD
    # BBH passes every bar: floor 10, teacher 80, the best small SFT 50 (8b), a student above the floor.
    # GPQA: the teacher 5 points over the floor, every student at it. IFEval: the teacher far above the
    # floor but only 5 over the best small SFT. MMLU-Pro: the teacher's eval lacks it.
    cell(world_dir, "floor", "floor", "none",
         {"bbh": first(20), "gpqa": first(50), "ifeval": first(10), "mmlu_pro": first(20)},
         floor={"bbh": "majority", "gpqa": "majority", "ifeval": "copy", "mmlu_pro": "majority"})
    cell(world_dir, "70b", "sft", "full", {"bbh": first(160), "gpqa": first(60), "ifeval": first(120)})
    for model, k in (("1b", 40), ("3b", 60), ("8b", 100)):
        cell(world_dir, model, "sft", "10k", {"bbh": first(k), "gpqa": first(50), "ifeval": first(110 if model == "8b" else 30),
                                              "mmlu_pro": first(20)})
    monkeypatch.chdir(tmp_path)
    result = invoke("--results", str(tmp_path / "results"), "report")
    assert result.exit_code == 0, result.output
    header, rows = read_csv(world_dir / "tables" / "fidelity.csv")
    assert header[:4] == ["Benchmark", "Floor", "Floor answer", "Teacher"]
    bbh, gpqa, ifeval, mmlu = (rows[(b,)] for b in ("BBH", "GPQA", "IF-Eval", "MMLU-Pro"))

    assert (bbh["Floor"], bbh["Floor answer"], bbh["Teacher"]) == ("10.00", "majority", "80.00")
    assert bbh["Teacher-Floor"].startswith("+70.00* [")
    assert bbh["Best small SFT"] == "50.00 (8b sft)" and bbh["Teacher-Best small SFT"].startswith("+30.00* [")
    assert bbh["Best student"] == "50.00 (8b sft 10k)" and bbh["Best student-Floor"].startswith("+40.00* [")
    assert bbh["Verdict"] == "ok"
    # the lead's interval is the paired bootstrap of those items (the report's seed and resamples)
    ids = [item_id(r) for r in acc_rows("bbh", first(160))]
    iv = Bootstrap(2000, SEED).paired(Items.mean("bbh", ids, list(100 * first(160))),
                                      Items.mean("bbh", ids, list(100 * first(20))))
    assert bbh["Teacher-Floor"] == f"+70.00* [{iv.lo:+.2f}, {iv.hi:+.2f}]"

    assert gpqa["Teacher-Floor"].startswith("+5.00")
    assert gpqa["Verdict"] == ("teacher +5.00 over the floor (bar +20); teacher +5.00 over the best small SFT "
                               "(bar +10); no student above the floor beyond noise")
    assert ifeval["Teacher-Floor"].startswith("+55.00*")
    assert ifeval["Verdict"] == "teacher +5.00 over the best small SFT (bar +10)"
    assert mmlu["Teacher"] == "-" and mmlu["Verdict"] == "the teacher's eval has no mmlu_pro (its `missing` says why)"
    # InfoBench has no eval at all, the domain tasks neither: no rows
    assert ("InfoBench",) not in rows and ("Summarization ROUGE-L",) not in rows

    report = json.loads((world_dir / "tables" / "report.json").read_text())
    fid = report["fidelity"]
    assert fid["file"] == "tables/fidelity.md" and fid["passing"] == 1
    assert fid["bars"] == {"teacher_over_floor": 20.0, "teacher_over_small_sft": 10.0}
    listed = {(x["suite"], x["metric"]): x for x in fid["rows"]}
    assert listed[("general", "bbh")]["teacher_over_floor"]["excludes_zero"] is True
    assert listed[("translation", "chrf")]["problems"] == ["no floor: run `kdtools eval --model floor --suite translation`"]
    # the floor's `none` size is not a rung of Table 3's ladder
    assert "none" not in report["sizes"]
