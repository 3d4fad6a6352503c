"""`kdtools report` over a hand-written, partial grid of eval JSONs (smoke world: sizes 10k, 20k,
40k, full): the paper's rows and columns, values in the right cells, Averages and KD-minus-SFT
deltas computed by hand, '-' for what is missing, valid PNGs, report.json last, W&B offline,
and one-line errors (exit 2) for bad input. The deltas' intervals: tests/test_report_intervals.py."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kdtools.cli import app
from kdtools.evaluation import results as eval_results
from tests.conftest import one_line_error, kdtools

runner = CliRunner()
WORLD = "smoke"
BENCH = ("bbh", "gpqa", "ifeval", "infobench", "mmlu_pro")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# benchmark -> (template, lm-eval metric, metrics it reports), as the smoke world's eval section has them
BENCH_INFO = {"bbh": ("kd_bbh", "exact_match,none", ["bbh"]), "gpqa": ("kd_gpqa", "acc,none", ["gpqa"]),
              "ifeval": ("kd_ifeval", "prompt_level_loose_acc,none", ["ifeval"]),
              "infobench": ("kd_infobench", None, ["infobench"]), "mmlu_pro": ("kd_mmlu_pro", "acc,none", ["mmlu_pro"]),
              "translation": ("kd_translation", None, ["chrf", "comet"]),
              "summarization": ("kd_summarization", None, ["rougeL"]), "arc": ("kd_arc", "acc,none", ["accuracy"])}


def benchmarks_of(suite: str) -> dict:
    """The eval JSON's `benchmarks` entry of a suite, as `kdtools eval` writes it."""
    names = BENCH if suite == "general" else (suite,)
    return {b: {"task": BENCH_INFO[b][0], "source": "test", "metrics": BENCH_INFO[b][2],
                "lm_eval_metric": BENCH_INFO[b][1], "n": 0} for b in names}


def eval_doc(model, method, task, size, metrics, **extra) -> dict:
    """An eval JSON as `kdtools eval` writes it (validated against eval.schema.json below)."""
    suite = task
    return {
        "schema_version": 1, "world": WORLD, "model": model, "method": method, "task": task,
        "size": size, "suite": suite, **extra, "weights": f"results/{WORLD}/models/{model}",
        "metrics": metrics, "missing": {}, "benchmarks": benchmarks_of(suite), "limit": None, "backend": "hf",
        "judge": None, "samples_file": f"{suite}.samples.jsonl", "config": {},
        "config_hash": "0123456789abcdef", "versions": {"python": "3"}, "git_commit": None,
        "host": "test", "started_at": "2026-01-01T00:00:00", "wall_time_s": 1.0,
    }


def put(world_dir: Path, doc: dict, variant: str = "") -> Path:
    eval_results.validate(doc)
    leaf = f"{doc['size']}+{variant}" if variant else doc["size"]
    path = world_dir / "evals" / doc["model"] / doc["method"] / doc["task"] / leaf / f"{doc['suite']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def general(values) -> dict:
    return dict(zip(BENCH, values, strict=True))


def write_grid(world_dir: Path) -> None:
    """A realistic partial grid: some cells missing, some variants that must not leak."""
    sft, gkd = dict(init="base", teacher=None), dict(init="sft", teacher="70b")
    # Table 3 / Figure 2
    put(world_dir, eval_doc("1b", "sft", "general", "10k", general([10, 20, 30, 40, 50]), **sft))
    put(world_dir, eval_doc("1b", "gkd", "general", "10k", general([12, 21, 33, 41, 50.5]), **gkd))
    put(world_dir, eval_doc("1b", "sft", "general", "20k", general([11, 22, 33, 44, 55]), **sft))
    # 3b: one benchmark not computed -> no Average, no delta there
    put(world_dir, eval_doc("3b", "sft", "general", "10k", general([20, 25, None, 50, 30]), **sft))
    put(world_dir, eval_doc("3b", "gkd", "general", "10k", general([21, 26, 40, 51, 31]), **gkd))
    for size, base in (("10k", 30.0), ("40k", 35.0)):
        put(world_dir, eval_doc("8b", "sft", "general", size, general([base] * 5), **sft))
        put(world_dir, eval_doc("8b", "gkd", "general", size, general([base + 1] * 5), **gkd))
        # Figure 1's Base-S: must not fill Table 3's GKD cells
        put(world_dir, eval_doc("8b", "gkd", "general", size, general([base - 5] * 5),
                                init="base", teacher="70b"), variant="init-base")
    # Table 1 / Figure 3 (8b, full); no `init`/`teacher` field on SFT = the defaults
    put(world_dir, eval_doc("8b", "sft", "general", "full", general([40, 30, 70, 80, 35])))
    put(world_dir, eval_doc("8b", "gkd", "general", "full", general([42.5, 31, 68, 81, 36]), **gkd))
    put(world_dir, eval_doc("8b", "seqkd", "general", "full", general([41.25, None, None, None, None]),
                            init="base", teacher="70b", samples=5))
    put(world_dir, eval_doc("8b", "gkd", "general", "full", general([45, 33, 72, 84, 38]),
                            init="sft", teacher="70b-it"), variant="teacher-70b-it")
    # a hyperparameter sweep in a variant folder: must never fill the default cell (8b 20k is empty)
    put(world_dir, eval_doc("8b", "gkd", "general", "20k", general([99] * 5), **gkd), variant="beta-0")
    # an untrained alias: not part of any table
    put(world_dir, eval_doc("1b", "base", "general", "none", general([1, 2, 3, 4, 5])))
    # Table 2 / Figures 4-5
    put(world_dir, eval_doc("70b", "sft", "translation", "full", {"comet": 86.31, "chrf": 60.0}, init="sft"))
    put(world_dir, eval_doc("70b", "sft", "summarization", "full", {"rougeL": 44.99}, init="sft"))
    put(world_dir, eval_doc("1b", "sft", "translation", "full", {"comet": 68.0, "chrf": 40.0}, init="sft"))
    put(world_dir, eval_doc("1b", "gkd", "translation", "full", {"comet": 69.87, "chrf": 41.0}, **gkd))
    put(world_dir, eval_doc("1b", "mix", "translation", "full", {"comet": 78.13, "chrf": 50.0},
                            teacher="70b", synthetic="100k"), variant="synth-100k")
    for n, score in (("5k", 70.0), ("20k", 75.0), ("100k", 78.65)):
        put(world_dir, eval_doc("1b", "two_stage", "translation", "full", {"comet": score, "chrf": 45.0},
                                teacher="70b", synthetic=n, an_unknown_field=True), variant=f"synth-{n}")
    put(world_dir, eval_doc("1b", "sft", "summarization", "full", {"rougeL": 37.03}, init="sft"))
    put(world_dir, eval_doc("1b", "gkd", "summarization", "full", {"rougeL": 38.63}, **gkd))
    put(world_dir, eval_doc("1b", "sft", "arc", "full", {"accuracy": 26.71}, init="sft"))
    put(world_dir, eval_doc("1b", "gkd", "arc", "full", {"accuracy": 38.05}, **gkd))
    put(world_dir, eval_doc("3b", "gkd", "arc", "full", {"accuracy": 68.69}, **gkd))
    put(world_dir, eval_doc("3b", "two_stage", "arc", "full", {"accuracy": 80.46},
                            teacher="70b", synthetic="100k"), variant="synth-100k")


def read_csv(path: Path) -> tuple[list[str], dict[tuple, dict]]:
    """-> (header, {row labels: {column: text}})."""
    rows = list(csv.reader(path.open()))
    header = rows[0]
    labels = {"table1": 1, "table2": 1, "table3": 3, "fidelity": 1}[path.stem]
    return header, {tuple(r[:labels]): dict(zip(header, r, strict=True)) for r in rows[1:]}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """The real CLI in a subprocess, W&B offline into the test folder."""
    results = tmp_path_factory.mktemp("report") / "results"
    world_dir = results / WORLD
    write_grid(world_dir)
    proc = kdtools("report", results=results, env={"WANDB_MODE": "offline", "WANDB_DIR": str(results.parent)})
    return world_dir, proc


def test_tables_have_the_papers_rows_and_columns(report):
    world_dir, proc = report
    header1, rows1 = read_csv(world_dir / "tables" / "table1.csv")
    assert header1 == ["Method", "BBH", "GPQA", "IF-Eval", "InfoBench", "MMLU-Pro", "Average"]
    assert list(rows1) == [("SFT",), ("GKD",), ("SeqKD",), ("GKD-SFT",), ("GKD-SFT 95% CI",), ("SeqKD-SFT",),
                           ("SeqKD-SFT 95% CI",)]
    header3, rows3 = read_csv(world_dir / "tables" / "table3.csv")
    assert header3 == ["Model", "Data Size", "Method", "BBH", "GPQA", "IF-Eval", "InfoBench", "MMLU-Pro", "Average"]
    assert list(rows3) == [(m, s, k) for m in ("1b", "3b", "8b") for s in ("10k", "20k", "40k", "full")
                           for k in ("SFT", "GKD", "GKD-SFT", "GKD-SFT 95% CI")]
    header2, rows2 = read_csv(world_dir / "tables" / "table2.csv")
    methods = ("SFT", "GKD", "Mix", "2-Stage")
    assert header2 == ["Model", *(f"{g} {m}" for g in ("Translation", "Summarization", "ARC-Challenge",
                                                        "Average", "Translation chrF") for m in methods)]
    assert list(rows2) == [("Teacher (70b SFT)",), *(row for s in ("1b", "3b", "8b")
                                                     for row in ((s,), (f"{s} KD-SFT",), (f"{s} KD-SFT 95% CI",)))]
    md = (world_dir / "tables" / "table3.md").read_text()
    assert "| Model | Data Size | Method | BBH |" in md and "Average is shown only when" in md
    assert "Table 3" in proc.stdout and "Table 1" in proc.stdout  # printed with rich


def test_values_land_in_their_cells(report):
    world_dir, _ = report
    _, t1 = read_csv(world_dir / "tables" / "table1.csv")
    assert [t1[("SFT",)][c] for c in ("BBH", "GPQA", "IF-Eval", "InfoBench", "MMLU-Pro")] == \
        ["40.00", "30.00", "70.00", "80.00", "35.00"]
    assert t1[("GKD",)]["BBH"] == "42.50"   # the T_s run, not GKD-IT's 45
    _, t3 = read_csv(world_dir / "tables" / "table3.csv")
    assert t3[("1b", "20k", "SFT")]["InfoBench"] == "44.00"
    assert t3[("8b", "10k", "GKD")]["BBH"] == "31.00"    # SFT-S, not the Base-S 25
    assert t3[("8b", "full", "SFT")]["MMLU-Pro"] == "35.00"
    assert t3[("8b", "20k", "GKD")]["BBH"] == "-"       # the beta-0 sweep is not the paper's cell
    _, t2 = read_csv(world_dir / "tables" / "table2.csv")
    assert t2[("Teacher (70b SFT)",)]["Translation SFT"] == "86.31"
    assert t2[("Teacher (70b SFT)",)]["Summarization SFT"] == "44.99"
    assert t2[("1b",)]["Translation 2-Stage"] == "78.65"  # the largest synthetic set (100k)
    assert t2[("1b",)]["Translation chrF GKD"] == "41.00"
    assert t2[("3b",)]["ARC-Challenge 2-Stage"] == "80.46"


def test_averages_and_deltas_by_hand(report):
    world_dir, _ = report
    _, t1 = read_csv(world_dir / "tables" / "table1.csv")
    assert t1[("SFT",)]["Average"] == "51.00"            # (40+30+70+80+35)/5
    assert t1[("GKD",)]["Average"] == "51.70"            # (42.5+31+68+81+36)/5
    assert [t1[("GKD-SFT",)][c] for c in ("BBH", "GPQA", "IF-Eval", "InfoBench", "MMLU-Pro", "Average")] == \
        ["+2.50", "+1.00", "-2.00", "+1.00", "+1.00", "+0.70"]
    assert t1[("SeqKD-SFT",)]["BBH"] == "+1.25" and t1[("SeqKD-SFT",)]["GPQA"] == "-"
    _, t3 = read_csv(world_dir / "tables" / "table3.csv")
    assert t3[("1b", "10k", "SFT")]["Average"] == "30.00"
    assert t3[("1b", "10k", "GKD")]["Average"] == "31.50"
    assert [t3[("1b", "10k", "GKD-SFT")][c] for c in ("BBH", "GPQA", "IF-Eval", "InfoBench", "MMLU-Pro", "Average")] == \
        ["+2.00", "+1.00", "+3.00", "+1.00", "+0.50", "+1.50"]
    _, t2 = read_csv(world_dir / "tables" / "table2.csv")
    assert t2[("1b",)]["Average SFT"] == "43.91"         # (68+37.03+26.71)/3
    assert t2[("1b",)]["Average GKD"] == "48.85"         # (69.87+38.63+38.05)/3
    delta = t2[("1b KD-SFT",)]
    assert (delta["Translation SFT"], delta["Translation GKD"], delta["Translation Mix"],
            delta["Translation 2-Stage"]) == ("-", "+1.87", "+10.13", "+10.65")
    assert delta["Average GKD"] == "+4.94"               # 48.85 - 43.9133
    assert delta["ARC-Challenge GKD"] == "+11.34"


def test_missing_cells_are_dashes(report):
    world_dir, _ = report
    _, t1 = read_csv(world_dir / "tables" / "table1.csv")
    assert t1[("SeqKD",)]["GPQA"] == "-" and t1[("SeqKD",)]["Average"] == "-"  # no Average from 1 of 5
    _, t3 = read_csv(world_dir / "tables" / "table3.csv")
    assert t3[("3b", "10k", "SFT")]["IF-Eval"] == "-" and t3[("3b", "10k", "SFT")]["Average"] == "-"
    assert t3[("3b", "10k", "GKD")]["Average"] == "33.80"
    assert t3[("3b", "10k", "GKD-SFT")]["IF-Eval"] == "-" and t3[("3b", "10k", "GKD-SFT")]["BBH"] == "+1.00"
    assert t3[("3b", "10k", "GKD-SFT")]["Average"] == "-"
    assert set(t3[("1b", "20k", "GKD")].values()) >= {"-"} and t3[("1b", "20k", "GKD")]["BBH"] == "-"
    assert all(v == "-" for k, v in t3[("3b", "40k", "SFT")].items() if k not in ("Model", "Data Size", "Method"))
    _, t2 = read_csv(world_dir / "tables" / "table2.csv")
    assert t2[("Teacher (70b SFT)",)]["Translation GKD"] == "-"
    assert t2[("Teacher (70b SFT)",)]["Average SFT"] == "-"   # no ARC for the teacher
    assert t2[("8b",)]["Translation SFT"] == "-"
    assert t2[("3b KD-SFT",)]["ARC-Challenge GKD"] == "-"      # no 3b SFT on ARC


def test_figures_are_pngs(report):
    world_dir, _ = report
    for i in range(1, 6):
        png = world_dir / "figures" / f"fig{i}.png"
        data = png.read_bytes()
        assert data[:8] == PNG_MAGIC, png
        assert len(data) > 20_000, (png, len(data))  # drawn axes and text, not an empty canvas


def test_report_json_is_last_and_counts_cells(report):
    world_dir, _ = report
    summary = json.loads((world_dir / "tables" / "report.json").read_text())
    written = [world_dir / p for p in summary["written"]]
    # Tables 1-3 and fidelity, intervals.csv, receipts.{md,csv}, Figures 1-5 and the receipts' (costs
    # estimated: no run.json)
    assert len(written) == 8 + 1 + 2 + 5 + 1 and all(p.is_file() for p in written)
    assert "tables/fidelity.md" in summary["written"]
    last = (world_dir / "tables" / "report.json").stat().st_mtime_ns
    assert all(p.stat().st_mtime_ns <= last for p in written)
    assert summary["tables"]["table1"] == {**summary["tables"]["table1"], "filled": 11, "missing": 4, "cells": 15}
    assert summary["tables"]["table3"]["cells"] == 3 * 4 * 2 * 5
    assert summary["evals_read"] == 31
    assert summary["figures"]["fig5"]["points"] == 4     # 1b translation 5k/20k/100k + 3b arc 100k
    assert summary["figures"]["fig3"]["points"] == 12


def test_wandb_offline_run(report):
    world_dir, _ = report
    runs = list((world_dir.parents[1] / "wandb").glob("offline-run-*"))
    assert runs, "no offline W&B run directory"
    summary = json.loads((world_dir / "tables" / "report.json").read_text())
    assert summary["wandb"]["id"] in runs[0].name



def invoke(*args):
    return runner.invoke(app, ["--world", WORLD, *args])


def test_malformed_json_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    write_grid(tmp_path / WORLD)
    bad = tmp_path / WORLD / "evals" / "1b" / "sft" / "general" / "40k" / "general.json"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"model": "1b", "metrics": {')
    one_line_error(invoke("report", "--results", str(tmp_path)), str(bad), "not valid JSON")
    assert not (tmp_path / WORLD / "tables" / "report.json").exists()


def test_eval_without_a_required_field(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    doc = eval_doc("1b", "sft", "general", "10k", general([1, 2, 3, 4, 5]))
    del doc["metrics"]
    path = tmp_path / WORLD / "evals" / "1b" / "sft" / "general" / "10k" / "general.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(doc))
    one_line_error(invoke("--results", str(tmp_path), "report"), str(path), "metrics")
    doc = eval_doc("1b", "sft", "general", "10k", {"bbh": "high"})
    path.write_text(json.dumps(doc))
    one_line_error(invoke("--results", str(tmp_path), "report"), str(path), "metrics/bbh")


def test_results_folder_missing(tmp_path):
    one_line_error(invoke("report", "--results", str(tmp_path / "nowhere")), "no eval results", "kdtools --world smoke eval")


def test_deltas_without_samples_files_have_dash_intervals(report):
    """This grid's evals have no samples files beside them: every delta keeps its value, its CI
    row is '-', nothing is marked, and report.json says why for each."""
    world_dir, _ = report
    _, t1 = read_csv(world_dir / "tables" / "table1.csv")
    assert t1[("GKD-SFT",)]["BBH"] == "+2.50" and t1[("GKD-SFT 95% CI",)]["BBH"] == "-"
    _, t3 = read_csv(world_dir / "tables" / "table3.csv")
    assert all(v == "-" for k, v in t3[("1b", "10k", "GKD-SFT 95% CI")].items()
               if k not in ("Model", "Data Size", "Method"))
    summary = json.loads((world_dir / "tables" / "report.json").read_text())
    iv = summary["intervals"]
    assert iv["resamples"] == 2000 and iv["seed"] == 7 and iv["with_interval"] == 0 and iv["marked"] == 0
    assert iv["deltas"] == len(iv["without"]) > 0
    assert all(x["why"].startswith("no per-item scores: ") and x["why"].endswith(".samples.jsonl is missing")
               for x in iv["without"])
    assert "excludes 0" in (world_dir / "tables" / "table3.md").read_text()   # the legend


def test_world_folder_as_results_and_empty_grid(tmp_path, monkeypatch):
    """--results may name the world folder itself; with no evals at all, every cell is '-' and
    no figure is drawn: the report names the target that fills each (no crash, no empty panel)."""
    monkeypatch.setenv("WANDB_MODE", "disabled")
    world_dir = tmp_path / "anywhere"
    (world_dir / "evals").mkdir(parents=True)
    result = invoke("report", "--results", str(world_dir))
    assert result.exit_code == 0, result.output
    summary = json.loads((world_dir / "tables" / "report.json").read_text())
    assert all(t["filled"] == 0 for t in summary["tables"].values())
    assert all(f["points"] == 0 and f["file"] is None for f in summary["figures"].values())
    assert summary["figures"]["fig4"]["not_drawn"] == (
        "no cells, not drawn; `snakemake --profile profiles/local fig4 --config world=smoke` fills it")
    assert "fig2: no cells, not drawn; `snakemake --profile profiles/local fig2" in " ".join(result.output.split())
    assert not (world_dir / "figures").exists() or not list((world_dir / "figures").iterdir())
    assert summary["wandb"] is None
    _, t3 = read_csv(world_dir / "tables" / "table3.csv")
    assert list(t3)[:3] == [("1b", "10k", "SFT"), ("1b", "10k", "GKD"), ("1b", "10k", "GKD-SFT")]
    assert t3[("8b", "20k", "GKD-SFT")]["Average"] == "-"  # the world's grid ladder, even when empty


def test_out_puts_tables_and_figures_elsewhere(tmp_path, monkeypatch):
    """`--out DIR` (the workflow's demo report): the same report under DIR, the world folder's
    own tables untouched."""
    monkeypatch.setenv("WANDB_MODE", "disabled")
    world_dir = tmp_path / "results" / WORLD
    write_grid(world_dir)
    result = invoke("--results", str(tmp_path / "results"), "report", "--out", str(tmp_path / "demo"))
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "demo" / "tables" / "report.json").read_text())
    assert summary["tables"]["table1"]["filled"] > 0 and summary["world_dir"] == str(world_dir)
    assert (tmp_path / "demo" / "figures" / "fig2.png").read_bytes()[:8] == PNG_MAGIC
    assert not (world_dir / "tables").exists() and not (world_dir / "figures").exists()
    (tmp_path / "a-file").write_text("x")
    one_line_error(invoke("--results", str(tmp_path / "results"), "report", "--out", str(tmp_path / "a-file")),
                   "--out", "pass a writable folder")
