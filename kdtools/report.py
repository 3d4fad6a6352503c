"""`kdtools report`: the paper's Tables 1-3 and Figures 1-5, built from the eval JSONs only.

    kdtools --world toy report                     # reads results/toy/evals/**/<suite>.json
    kdtools report --results results/paper         # DIR = a world folder (it holds evals/) ...
    kdtools --world paper report --results /scratch/results   # ... or a results root (+ /paper)

Which folder: DIR is `report --results`, else the global --results / KDTOOLS_RESULTS / ./results.
If DIR/<world>/evals exists, the world folder is DIR/<world> (DIR is a results root, as for every
other verb); otherwise, if DIR/evals exists, DIR itself is the world folder. Outputs go to
<out>/tables/table{1,2,3}.{md,csv}, <out>/tables/fidelity.{md,csv} (each benchmark's floor, teacher
and best students: can this world test the claims? kdtools/fidelity.py), <out>/tables/intervals.csv and <out>/figures/fig{1..5}.png
(<out> = --out, else the world folder), each written atomically; a figure with no cells is not
drawn (report.json names the target that fills it). tables/report.json is written LAST (files,
filled vs missing cells per table, the intervals and why any is missing), so its existence means
the report completed. W&B gets the tables, the intervals and the figures when configured.

Intervals. Every KD-minus-SFT delta (Tables 1-3, Figures 2 and 4) gets a 95% paired bootstrap
interval over its benchmark's items from the evals' samples files (kdtools/intervals.py,
itemscores.py, bootstrap.py): `--resamples` (default 2,000) seeded by the world's seed; '*' marks
one that excludes 0; an Average resamples each benchmark on its own. Layout: evalindex.py reads the
evals and picks a cell's eval, tables.py builds the tables, figures.py draws, this module runs it.

Which eval fills a cell. Every `*.json` under evals/ is read and checked against the fields this
report uses (model, method, task, size, suite, metrics; typed as in eval.schema.json; extra
fields are fine). A missing field (`init`, `teacher`) means the method's default, as the CLI
trains it: SFT starts from the base model on general data and from the student's SFT on a
domain task, with no teacher; GKD from the student's SFT (SFT-S) with the same-data teacher 70b
(T_s); SeqKD from the base model with 70b. The synthetic-data size (Figure 5; Table 2's Mix and
2-Stage) is the `synthetic` field (e.g. `"100k"`), copied by eval from the model's run.json dims.
On general data, an eval in a `<size>+<variant>` folder other than init-*/teacher-* (e.g. a
sweep) fills no cell. When several evals fit one cell, the one in a folder without a `+variant`,
then on size `full`, then with the largest synthetic size (the paper's N=100k), then the newest wins.
An Average needs all of its parts (else '-'); a missing cell is '-', never an error.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from kdtools import figures, manifest, modelcard, tracking
from kdtools.errors import KdError
from kdtools.evalindex import Lookup, Record, load_evals
from kdtools.evaluation.floor import NAME as FLOOR
from kdtools.fidelity import Fidelity
from kdtools.intervals import Delta, Intervals
from kdtools.receipts import Receipts
from kdtools.tables import (DOMAIN, GENERAL, GENERAL_HEADERS, METRIC_NAMES, STRONG_TEACHER, STUDENTS, Table,
                            mean, table1, table2, table3, with_average)
from kdtools.world import World

console = Console()
RESAMPLES = 2000   # the default of --resamples: the percentile ends move by ~0.1 point between seeds


@dataclass(frozen=True)
class ReportJob:
    world: World
    world_dir: Path      # <results>/<world>: evals/ is read
    out_dir: Path        # tables/ and figures/ are written here (default: world_dir)
    resamples: int = RESAMPLES   # bootstrap resamples of the deltas' intervals (0: none)


def make_job(world: World, results: str | Path | None = None, out: str | Path | None = None,
             resamples: int = RESAMPLES) -> ReportJob:
    if resamples < 0 or 0 < resamples < 100:
        raise KdError(f"--resamples {resamples}: use at least 100 (default {RESAMPLES}), or 0 for no intervals")
    base = Path(results) if results else Path(world.results)
    for world_dir in (base / world.name, base):
        if (world_dir / "evals").is_dir():
            return ReportJob(world, world_dir, writable_dir(Path(out)) if out else world_dir, resamples)
    raise KdError(f"no eval results at {base / world.name / 'evals'}: run `kdtools --world {world.name} eval "
                  "--model ...` first, or pass --results <results root or world folder>")


def writable_dir(folder: Path) -> Path:
    """--out: a folder that exists or can be made, checked before any eval is read."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise KdError(f"--out {folder}: cannot make that folder ({exc.strerror}): pass a writable folder") from exc
    return folder


# ---------------------------------------------------------------- figures' data

def figure_data(lk: Lookup, ladder: list[str], top: str, ivs: Intervals) -> dict:
    """What each figure plots, as lists (None = no eval; Figures 2 and 4 add the GKD-SFT Deltas,
    made plain by `plain` once resolved): figures.py only draws. `top` is the size standing for
    the full data (the world's grid.full)."""

    def avg(rec):
        return mean([None if rec is None else rec.metrics.get(m) for m in GENERAL])

    def benches(rec):
        return with_average([None if rec is None else rec.metrics.get(m) for m in GENERAL])

    def domain(model, method, task):
        return lk.find(model, method, task)

    fig1_kinds = {"SFT": dict(method="sft"), "GKD (SFT-S)": dict(method="gkd", init="sft"),
                  "GKD (Base-S)": dict(method="gkd", init="base")}
    synth_sizes = sorted({r.synthetic for r in lk.records if r.method == "two_stage" and r.synthetic},
                         key=lambda s: (figures.size_value(s) is None, figures.size_value(s) or 0, s))
    fig2 = {m: {k: [lk.find(m, k, "general", s) for s in ladder] for k in ("sft", "gkd")} for m in STUDENTS}
    fig4 = {task: {k: [domain(s, k, task) for s in STUDENTS] for k in ("sft", "gkd")} for task in DOMAIN}
    return {
        "fig1": {"sizes": ladder, "top": top, "categories": [*GENERAL_HEADERS, "Average"],
                 "lines": {k: [avg(lk.find("8b", task="general", size=s, **kw)) for s in ladder]
                           for k, kw in fig1_kinds.items()},
                 "bars": {k: benches(lk.find("8b", task="general", size=top, **kw)) for k, kw in fig1_kinds.items()}},
        "fig2": {"sizes": ladder,
                 "panels": {m: {"SFT": [avg(r) for r in fig2[m]["sft"]], "GKD": [avg(r) for r in fig2[m]["gkd"]]}
                            for m in STUDENTS},
                 "deltas": {m: [ivs.delta([(g, s, b) for b in GENERAL]) for g, s in zip(fig2[m]["gkd"], fig2[m]["sft"], strict=True)]
                            for m in STUDENTS}},
        "fig3": {"top": top, "categories": [*GENERAL_HEADERS, "Average"],
                 "bars": {"GKD (T_s = 70b SFT)": benches(lk.find("8b", "gkd", "general", top)),
                          f"GKD-IT ({STRONG_TEACHER})": benches(lk.find("8b", "gkd", "general", top,
                                                                        teacher=STRONG_TEACHER))}},
        "fig4": {"panels": {f"{name} ({METRIC_NAMES[metric]})": {
            "categories": list(STUDENTS),
            "bars": {label: [getattr(r, "metrics", {}).get(metric) for r in fig4[task][m]]
                     for m, label in (("sft", "SFT"), ("gkd", "GKD"))},
            "deltas": [ivs.delta([(g, s, metric)]) for g, s in zip(fig4[task]["gkd"], fig4[task]["sft"], strict=True)]}
            for task, (name, metric) in DOMAIN.items()}},
        "fig5": {"sizes": synth_sizes, "panels": {f"{name} ({METRIC_NAMES[metric]})": {
            s: [getattr(lk.find(s, "two_stage", task, synthetic=n), "metrics", {}).get(metric) for n in synth_sizes]
            for s in STUDENTS} for task, (name, metric) in DOMAIN.items()}},
    }


def plain(data):
    """Deltas -> {delta, lo, hi, marked} (lo/hi None without an interval), or None without a value."""
    if isinstance(data, Delta):
        iv = data.interval
        return None if data.value is None else {
            "delta": data.value, "lo": iv and iv.lo, "hi": iv and iv.hi, "marked": bool(iv and iv.excludes_zero)}
    if isinstance(data, dict):
        return {k: plain(v) for k, v in data.items()}
    if isinstance(data, list):
        return [plain(v) for v in data]
    return data


# ---------------------------------------------------------------- run

def world_ladder(job: ReportJob, records: list[Record]) -> list[str]:
    """The world's ladder (grid.sizes) in config order, then any other general size found in the evals."""
    ladder = list(job.world.grid.sizes)
    extra = {r.size for r in records
             if r.task == "general" and r.method not in ("base", FLOOR) and r.size not in ladder}
    return ladder + sorted(extra, key=lambda s: (figures.size_value(s) is None, figures.size_value(s) or 0, s))


INTERVAL_COLUMNS = ("table", "row", "column", "delta", "lo", "hi", "excludes_zero", "items", "why")


def intervals_csv(listed: list[dict]) -> str:
    """tables/intervals.csv: one row per delta, with its interval or why there is none."""
    import csv
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, INTERVAL_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(listed)
    return buf.getvalue()


def log_wandb(job: ReportJob, tables: list[Table], pngs: dict[str, Path], listed: list[dict],
              receipts_rows: list[dict] | None = None) -> dict | None:
    """One W&B run (job_type report) with every table and figure; None when W&B is off."""
    if not tracking.wandb_enabled():
        return None
    import wandb

    world = job.world
    run = wandb.init(
        project=os.environ.get("WANDB_PROJECT") or world.wandb.get("project", "kdtools"),
        entity=os.environ.get("WANDB_ENTITY") or world.wandb.get("entity"),
        name=f"{world.name}/report", group=f"{world.name}/report", job_type="report",
        tags=[world.name, "report"], config={"world": world.name, "verb": "report"},
        dir=os.environ.get("WANDB_DIR") or str(job.world_dir), reinit="finish_previous",
    )
    payload = {t.name: wandb.Table(columns=t.columns, data=t.values()) for t in tables}
    payload["intervals"] = wandb.Table(columns=list(INTERVAL_COLUMNS),
                                       data=[[x.get(c) for c in INTERVAL_COLUMNS] for x in listed])
    if receipts_rows is not None:
        payload["receipts"] = wandb.Table(columns=list(Receipts.COLUMNS),
                                          data=[[r.get(c) for c in Receipts.COLUMNS] for r in receipts_rows])
    payload |= {(f"{name}_figure" if name in payload else name): wandb.Image(str(path), caption=name)
                for name, path in pngs.items()}   # the receipts' table and figure share a name
    run.log(payload)
    run.summary.update({f"{t.name}/{k}": getattr(t, k) for t in tables for k in ("filled", "missing")})
    info = {"id": run.id, "dir": str(Path(run.dir).parent), "mode": os.environ.get("WANDB_MODE", "online")}
    wandb.finish()
    return info


def fill_hint(job: ReportJob, name: str) -> str:
    """Why a figure is not drawn, and the workflow target that fills it."""
    profile = "local" if job.world.toy else "slurm"
    target = "table3 controls" if name == "receipts" else name
    return (f"no cells, not drawn; `snakemake --profile profiles/{profile} {target} --config world={job.world.name}` "
            "fills it")


def update_cards(job: ReportJob, records: list[Record], rc: Receipts, ivs: Intervals) -> int:
    """Every evaluated model folder here gets its receipts lines (receipts.json) and a fresh model
    card (scores with intervals, the receipts); folders not on this machine are skipped."""
    lines = rc.by_model()
    folders = {job.world_dir / "models" / r.path.parent.relative_to(job.world_dir / "evals")
               for r in records if r.method != "base"}
    done = 0
    for folder in sorted(folders):
        run_ = manifest.read_manifest(folder)
        if run_ is None:
            continue
        rows = [{**x, "model_config_hash": run_.get("config_hash")} for x in lines.get(folder, [])]
        modelcard.write_receipts(folder, rows)
        done += modelcard.update(folder, job.world, job.world_dir, ivs) is not None
    return done


def write_text(path: Path, text: str) -> None:
    manifest.atomic_write_text(path, text)
    os.chmod(path, 0o644)  # temp files are 0600; results are shared


def run(job: ReportJob) -> dict:
    started = time.time()
    records = load_evals(job.world_dir / "evals")
    ladder = world_ladder(job, records)
    lk = Lookup(records)
    ivs = Intervals(job.resamples, job.world.seed)
    tables = [table1(lk, job.world.grid.full, ivs), table2(lk, ivs), table3(lk, ladder, ivs)]
    data = figure_data(lk, ladder, job.world.grid.full, ivs)
    rc = Receipts(job.world, job.world_dir, lk, ladder, ivs)
    check = Fidelity(lk, ladder, job.world.grid.full, ivs)
    ivs.resolve()
    tables.append(check.table())
    tables_dir, figures_dir = job.out_dir / "tables", job.out_dir / "figures"
    written, summary = [], {}
    for t in tables:
        for ext, text in (("md", t.markdown()), ("csv", t.csv())):
            write_text(tables_dir / f"{t.name}.{ext}", text)
            written.append(f"tables/{t.name}.{ext}")
        for block in t.rich():
            console.print(block)
        summary[t.name] = {"title": t.title, "rows": len(t.rows), "cells": t.filled + t.missing,
                           "filled": t.filled, "missing": t.missing}
    listed = [x for t in tables for x in t.intervals()]
    write_text(tables_dir / "intervals.csv", intervals_csv(listed))
    written.append("tables/intervals.csv")
    receipts_rows = rc.rows()
    for ext, text in (("md", rc.markdown()), ("csv", rc.csv())):
        write_text(tables_dir / f"receipts.{ext}", text)
        written.append(f"tables/receipts.{ext}")
    console.print("Receipts (tables/receipts.md):\n" + "\n".join(
        f"  {r['table']} · {r['student']} · {r['data']} · {r['method']}: {r['sentence']}" for r in receipts_rows),
        markup=False, highlight=False)
    cards = update_cards(job, records, rc, ivs)
    pngs, drawn = {}, {}
    for name, fig in {**plain(data), "receipts": rc.figure()}.items():
        path = figures_dir / f"{name}.png"
        n = figures.draw(name, fig, path)
        if n:
            pngs[name] = path
            written.append(f"figures/{name}.png")
            drawn[name] = {"file": f"figures/{name}.png", "points": n}
        else:
            drawn[name] = {"file": None, "points": 0, "not_drawn": fill_hint(job, name)}
            console.print(f"{name}: {drawn[name]['not_drawn']}")
    wandb_run = log_wandb(job, tables, pngs, listed, receipts_rows)
    report = {
        "verb": "report", "world": job.world.name, "world_dir": str(job.world_dir),
        "evals_read": len(records), "sizes": ladder, "written": written, "tables": summary,
        "figures": drawn,
        "intervals": {**ivs.describe(), "file": "tables/intervals.csv",
                      "deltas": len(listed), "with_interval": sum("lo" in x for x in listed),
                      "marked": sum(bool(x.get("excludes_zero")) for x in listed),
                      "without": [x for x in listed if "lo" not in x]},
        "cell_counts_note": "filled/missing count score cells read from evals; Averages and deltas are derived",
        "fidelity": {"file": "tables/fidelity.md", **check.summary()},
        "receipts": {"files": ["tables/receipts.md", "tables/receipts.csv"], **rc.summary(),
                     "model_cards": cards},
        "wandb": wandb_run, "versions": manifest.versions(),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "wall_time_s": round(time.time() - started, 3),
    }
    manifest.atomic_write_json(tables_dir / "report.json", report)  # last: it means the report is complete
    os.chmod(tables_dir / "report.json", 0o644)
    console.print(f"report: {len(records)} evals -> {tables_dir} and {figures_dir} ("
                  + ", ".join(f"{t.name} {t.filled}/{t.filled + t.missing} cells" for t in tables)
                  + f"; {report['intervals']['with_interval']}/{len(listed)} deltas with a 95% interval, "
                  f"{report['intervals']['marked']} excluding 0)")
    return report
