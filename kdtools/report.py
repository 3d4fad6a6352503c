"""`kdtools report`: the paper's Tables 1-3 and Figures 1-5, built from the eval JSONs only.

    kdtools --world toy report                     # reads results/toy/evals/**/<suite>.json
    kdtools report --results results/paper         # DIR = a world folder (it holds evals/) ...
    kdtools --world paper report --results /scratch/results   # ... or a results root (+ /paper)

Which folder: DIR is `report --results`, else the global --results / KDTOOLS_RESULTS / ./results.
If DIR/<world>/evals exists, the world folder is DIR/<world> (DIR is a results root, as for every
other verb); otherwise, if DIR/evals exists, DIR itself is the world folder. Outputs go to
<out>/tables/table{1,2,3}.{md,csv} and <out>/figures/fig{1..5}.png (<out> = --out, else the world
folder), each written
atomically; tables/report.json is written LAST (files, filled vs missing cells per table), so
its existence means the report completed. W&B gets the tables and figures when configured.

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

import csv
import io
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table as RichTable

from kdtools import figures, manifest, tracking
from kdtools.errors import KdError
from kdtools.world import World

console = Console()

GENERAL = ("bbh", "gpqa", "ifeval", "infobench", "mmlu_pro")
GENERAL_HEADERS = ("BBH", "GPQA", "IF-Eval", "InfoBench", "MMLU-Pro")
# domain task (= its suite) -> (paper's column group, metric)
DOMAIN = {"translation": ("Translation", "comet"), "summarization": ("Summarization", "rougeL"),
          "arc": ("ARC-Challenge", "accuracy")}
METRIC_NAMES = {"comet": "COMET", "rougeL": "ROUGE-L", "accuracy": "accuracy"}
STUDENTS = ("1b", "3b", "8b")
TEACHER, STRONG_TEACHER = "70b", "70b-it"
TABLE2_METHODS = (("sft", "SFT"), ("gkd", "GKD"), ("mix", "Mix"), ("two_stage", "2-Stage"))
REPORT_FIELDS = ("model", "method", "task", "size", "suite", "metrics")
AVERAGE_NOTE = "An Average is shown only when every benchmark it averages exists for that row (else '-')."
ANY = object()  # a `find` criterion that accepts every value
# the general-data variants the paper's cells use (workflow/rules/common.smk); any other
# (e.g. a hyperparameter sweep '10k+beta-0') never fills a paper cell
GENERAL_VARIANTS = ("init-", "teacher-")


@dataclass(frozen=True)
class ReportJob:
    world: World
    world_dir: Path      # <results>/<world>: evals/ is read
    out_dir: Path        # tables/ and figures/ are written here (default: world_dir)


def make_job(world: World, results: str | Path | None = None, out: str | Path | None = None) -> ReportJob:
    base = Path(results) if results else Path(world.results)
    for world_dir in (base / world.name, base):
        if (world_dir / "evals").is_dir():
            return ReportJob(world, world_dir, writable_dir(Path(out)) if out else world_dir)
    raise KdError(f"no eval results at {base / world.name / 'evals'}: run `kdtools --world {world.name} eval "
                  "--model ...` first, or pass --results <results root or world folder>")


def writable_dir(folder: Path) -> Path:
    """--out: a folder that exists or can be made, checked before any eval is read."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise KdError(f"--out {folder}: cannot make that folder ({exc.strerror}): pass a writable folder") from exc
    return folder


# ---------------------------------------------------------------- reading the evals

@dataclass(frozen=True)
class Record:
    path: Path
    model: str
    method: str
    task: str
    size: str
    suite: str
    init: str | None
    teacher: str | None
    synthetic: str | None
    variant: str            # the `+...` part of the size folder ('' = the default cell)
    started_at: str
    metrics: dict


def default_init(method: str, task: str) -> str | None:
    if method == "sft":
        return "base" if task == "general" else "sft"
    return {"gkd": "sft", "seqkd": "base"}.get(method)


def default_teacher(method: str) -> str | None:
    return None if method in ("sft", "base") else TEACHER


def _report_schema() -> dict:
    """eval.schema.json with only the fields the report reads required (provenance may be absent)."""
    from kdtools.evaluation.results import SCHEMA

    schema = json.loads(SCHEMA.read_text())
    return {**schema, "required": list(REPORT_FIELDS)}


def load_evals(evals_dir: Path) -> list[Record]:
    import jsonschema

    validator = jsonschema.Draft202012Validator(_report_schema())
    records = []
    for path in sorted(p for p in evals_dir.rglob("*.json") if not p.name.startswith(".")):
        try:
            doc = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise KdError(f"eval result {path} is not valid JSON ({exc}): rerun `kdtools eval --force` "
                          "for that model or delete the file") from exc
        if not isinstance(doc, dict):
            raise KdError(f"eval result {path} is not a JSON object: rerun `kdtools eval --force` or delete it")
        missing = [k for k in REPORT_FIELDS if k not in doc]
        if missing:
            raise KdError(f"eval result {path} lacks required field(s) {', '.join(missing)}: rerun "
                          "`kdtools eval --force` for that model or delete the file")
        error = next(iter(sorted(validator.iter_errors(doc), key=lambda e: [str(p) for p in e.path])), None)
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "top level"
            raise KdError(f"eval result {path}: {where}: {error.message.splitlines()[0]}: rerun "
                          "`kdtools eval --force` for that model or delete the file")
        method, task, size = doc["method"], doc["task"], str(doc["size"])
        synth = doc.get("synthetic")
        leaf = path.parent.name
        records.append(Record(
            path=path, model=doc["model"], method=method, task=task, size=size, suite=doc["suite"],
            init=doc.get("init") or default_init(method, task),
            teacher=doc.get("teacher") or default_teacher(method),
            synthetic=None if synth is None else str(synth),
            variant=leaf[len(size) + 1:] if leaf.startswith(f"{size}+") else "",
            started_at=str(doc.get("started_at", "")), metrics=doc["metrics"]))
    return records


class Lookup:
    """Finds the one eval that fills a cell (see the module docstring for the rules)."""

    def __init__(self, records: list[Record]):
        self.records = records

    def find(self, model: str, method: str, task: str, size=ANY, init=None, teacher=None,
             synthetic=ANY) -> Record | None:
        init = default_init(method, task) if init is None else init
        teacher = default_teacher(method) if teacher is None else teacher
        wanted = {"model": model, "method": method, "task": task, "suite": task, "size": size,
                  "init": init if init is not None else ANY, "teacher": teacher, "synthetic": synthetic}
        if method in ("mix", "two_stage"):
            wanted["init"] = ANY  # their start is the method's own business
        hits = [r for r in self.records
                if all(v is ANY or getattr(r, k) == v for k, v in wanted.items())
                and (task != "general" or all(p.startswith(GENERAL_VARIANTS) for p in r.variant.split("+") if p))]
        return max(hits, key=lambda r: (r.variant == "", r.size == "full", figures.size_value(r.synthetic) or 0,
                                        r.started_at), default=None)


# ---------------------------------------------------------------- tables

def mean(values: list) -> float | None:
    return None if not values or any(v is None for v in values) else sum(values) / len(values)


def minus(a: list, b: list) -> list:
    return [None if x is None or y is None else x - y for x, y in zip(a, b, strict=True)]


@dataclass
class Table:
    name: str
    title: str
    columns: list[str]
    labels: int                          # how many leading columns are labels (strings)
    footnote: str
    rows: list[list] = field(default_factory=list)   # labels, then float | None
    deltas: set = field(default_factory=set)         # indexes of KD-minus-SFT rows (signed)
    filled: int = 0
    missing: int = 0
    block: int = 8                                   # value columns per terminal block

    def scores(self, rec: Record | None, metrics) -> list:
        """The record's scores, counted as filled or missing (Averages and deltas are not counted)."""
        out = [None if rec is None else rec.metrics.get(m) for m in metrics]
        self.filled += sum(v is not None for v in out)
        self.missing += sum(v is None for v in out)
        return out

    def add(self, labels: list, values: list, delta: bool = False) -> None:
        if delta:
            self.deltas.add(len(self.rows))
        self.rows.append([*labels, *values])

    def text(self, i: int, v) -> str:
        if isinstance(v, str):
            return v
        return "-" if v is None else (f"{v:+.2f}" if i in self.deltas else f"{v:.2f}")

    def cells(self) -> list[list[str]]:
        return [[self.text(i, v) for v in row] for i, row in enumerate(self.rows)]

    def markdown(self) -> str:
        lines = [f"**{self.title}**", "", "| " + " | ".join(self.columns) + " |",
                 "|" + "|".join("---" if j < self.labels else "---:" for j in range(len(self.columns))) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in self.cells()]
        return "\n".join(lines + ["", self.footnote, ""])

    def csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(self.columns)
        writer.writerows(self.cells())
        return buf.getvalue()

    def rich(self) -> list[RichTable]:
        """For the terminal: a wide table is cut into blocks of `block` value columns; a block whose
        columns share a group ('Translation SFT', 'Translation GKD') is titled by it."""
        cells, starts = self.cells(), range(self.labels, len(self.columns), self.block)
        out = []
        for b, start in enumerate(starts):
            cols = list(range(start, min(start + self.block, len(self.columns))))
            split = [self.columns[j].rsplit(" ", 1) for j in cols]
            group = split[0][0] if all(len(p) == 2 and p[0] == split[0][0] for p in split) else None
            title = "\n".join(x for x in (self.title if b == 0 else None, group) if x)
            table = RichTable(title=title or None, title_justify="left", caption_justify="left",
                              caption=self.footnote if b == len(starts) - 1 else None)
            for j in range(self.labels):
                table.add_column(self.columns[j])
            for j, parts in zip(cols, split, strict=True):
                table.add_column(parts[-1] if group else self.columns[j], justify="right")
            for i, row in enumerate(cells):
                table.add_row(*row[: self.labels], *(row[j] for j in cols), style="dim" if i in self.deltas else None)
            out.append(table)
        return out


def with_average(values: list) -> list:
    return [*values, mean(values)]


def table1(lk: Lookup, top: str) -> Table:
    t = Table("table1", f"Table 1: 8b trained on the full data ({top}): SFT vs GKD vs SeqKD",
              ["Method", *GENERAL_HEADERS, "Average"], 1,
              f"Scores 0-100. KD rows distil from T_s (70b SFT'd on the same data). {AVERAGE_NOTE} "
              "'GKD-SFT' and 'SeqKD-SFT' are differences where both cells exist.")
    sft = with_average(t.scores(lk.find("8b", "sft", "general", top), GENERAL))
    gkd = with_average(t.scores(lk.find("8b", "gkd", "general", top), GENERAL))
    seqkd = with_average(t.scores(lk.find("8b", "seqkd", "general", top), GENERAL))
    t.add(["SFT"], sft)
    t.add(["GKD"], gkd)
    t.add(["SeqKD"], seqkd)
    t.add(["GKD-SFT"], minus(gkd, sft), delta=True)
    t.add(["SeqKD-SFT"], minus(seqkd, sft), delta=True)
    return t


def table2(lk: Lookup) -> Table:
    groups = [*(g for g, _ in DOMAIN.values()), "Average", "Translation chrF"]
    columns = ["Model", *(f"{g} {label}" for g in groups for _, label in TABLE2_METHODS)]
    t = Table("table2", "Table 2: domain tasks (Translation COMET, Summarization ROUGE-L, ARC-Challenge "
              "accuracy): SFT vs GKD vs Mix vs 2-Stage", columns, 1,
              "Scores 0-100. Mix and 2-Stage use the largest synthetic set evaluated (paper: 100k). "
              "Average = mean of Translation (COMET), Summarization and ARC-Challenge; "
              f"{AVERAGE_NOTE} Rows 'KD-SFT' give each KD method minus SFT where both exist.",
              block=len(TABLE2_METHODS))

    def row(model: str, methods) -> list:
        per_task = {task: [t.scores(lk.find(model, m, task), [metric])[0] if m in methods else None
                           for m, _ in TABLE2_METHODS] for task, (_, metric) in DOMAIN.items()}
        chrf = [t.scores(lk.find(model, m, "translation"), ["chrf"])[0] if m in methods else None
                for m, _ in TABLE2_METHODS]
        avg = [mean([per_task[task][j] for task in DOMAIN]) for j in range(len(TABLE2_METHODS))]
        return [*(v for task in DOMAIN for v in per_task[task]), *avg, *chrf]

    t.add([f"Teacher ({TEACHER} SFT)"], row(TEACHER, ("sft",)))
    n = len(TABLE2_METHODS)
    for student in STUDENTS:
        values = row(student, [m for m, _ in TABLE2_METHODS])
        t.add([student], values)
        sft = [values[g * n] for g in range(len(groups)) for _ in range(n)]
        delta = [None if j % n == 0 else d for j, d in enumerate(minus(values, sft))]
        t.add([f"{student} KD-SFT"], delta, delta=True)
    return t


def table3(lk: Lookup, ladder: list[str]) -> Table:
    t = Table("table3", "Table 3: students x data size, SFT vs GKD (general data, SFT-S, teacher 70b)",
              ["Model", "Data Size", "Method", *GENERAL_HEADERS, "Average"], 3,
              f"Scores 0-100. GKD starts from the student's SFT on the same data (SFT-S) and distils from "
              f"T_s (70b SFT'd on the same data). {AVERAGE_NOTE} 'GKD-SFT' rows: GKD minus SFT where both exist.")
    for model in STUDENTS:
        for size in ladder:
            sft = with_average(t.scores(lk.find(model, "sft", "general", size), GENERAL))
            gkd = with_average(t.scores(lk.find(model, "gkd", "general", size), GENERAL))
            t.add([model, size, "SFT"], sft)
            t.add([model, size, "GKD"], gkd)
            t.add([model, size, "GKD-SFT"], minus(gkd, sft), delta=True)
    return t


# ---------------------------------------------------------------- figures' data

def figure_data(lk: Lookup, ladder: list[str], top: str) -> dict:
    """What each figure plots, as plain lists (None = no eval): figures.py only draws. `top` is the
    size standing for the full data (the world's grid.full)."""

    def avg(rec):
        return mean([None if rec is None else rec.metrics.get(m) for m in GENERAL])

    def benches(rec):
        return with_average([None if rec is None else rec.metrics.get(m) for m in GENERAL])

    fig1_kinds = {"SFT": dict(method="sft"), "GKD (SFT-S)": dict(method="gkd", init="sft"),
                  "GKD (Base-S)": dict(method="gkd", init="base")}
    synth_sizes = sorted({r.synthetic for r in lk.records if r.method == "two_stage" and r.synthetic},
                         key=lambda s: (figures.size_value(s) is None, figures.size_value(s) or 0, s))
    return {
        "fig1": {"sizes": ladder, "top": top, "categories": [*GENERAL_HEADERS, "Average"],
                 "lines": {k: [avg(lk.find("8b", task="general", size=s, **kw)) for s in ladder]
                           for k, kw in fig1_kinds.items()},
                 "bars": {k: benches(lk.find("8b", task="general", size=top, **kw)) for k, kw in fig1_kinds.items()}},
        "fig2": {"sizes": ladder,
                 "panels": {m: {"SFT": [avg(lk.find(m, "sft", "general", s)) for s in ladder],
                                "GKD": [avg(lk.find(m, "gkd", "general", s)) for s in ladder]} for m in STUDENTS}},
        "fig3": {"top": top, "categories": [*GENERAL_HEADERS, "Average"],
                 "bars": {"GKD (T_s = 70b SFT)": benches(lk.find("8b", "gkd", "general", top)),
                          f"GKD-IT ({STRONG_TEACHER})": benches(lk.find("8b", "gkd", "general", top,
                                                                        teacher=STRONG_TEACHER))}},
        "fig4": {"panels": {f"{name} ({METRIC_NAMES[metric]})": {
            "categories": list(STUDENTS),
            "bars": {label: [getattr(lk.find(s, m, task), "metrics", {}).get(metric) for s in STUDENTS]
                     for m, label in (("sft", "SFT"), ("gkd", "GKD"))}} for task, (name, metric) in DOMAIN.items()}},
        "fig5": {"sizes": synth_sizes, "panels": {f"{name} ({METRIC_NAMES[metric]})": {
            s: [getattr(lk.find(s, "two_stage", task, synthetic=n), "metrics", {}).get(metric) for n in synth_sizes]
            for s in STUDENTS} for task, (name, metric) in DOMAIN.items()}},
    }


# ---------------------------------------------------------------- run

def world_ladder(job: ReportJob, records: list[Record]) -> list[str]:
    """The world's ladder (grid.sizes) in config order, then any other general size found in the evals."""
    ladder = list(job.world.grid.sizes)
    extra = {r.size for r in records if r.task == "general" and r.method != "base" and r.size not in ladder}
    return ladder + sorted(extra, key=lambda s: (figures.size_value(s) is None, figures.size_value(s) or 0, s))


def log_wandb(job: ReportJob, tables: list[Table], pngs: dict[str, Path]) -> dict | None:
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
    payload = {t.name: wandb.Table(columns=t.columns, data=t.rows) for t in tables}
    payload |= {name: wandb.Image(str(path), caption=name) for name, path in pngs.items()}
    run.log(payload)
    run.summary.update({f"{t.name}/{k}": getattr(t, k) for t in tables for k in ("filled", "missing")})
    info = {"id": run.id, "dir": str(Path(run.dir).parent), "mode": os.environ.get("WANDB_MODE", "online")}
    wandb.finish()
    return info


def run(job: ReportJob) -> dict:
    started = time.time()
    records = load_evals(job.world_dir / "evals")
    ladder = world_ladder(job, records)
    lk = Lookup(records)
    tables = [table1(lk, job.world.grid.full), table2(lk), table3(lk, ladder)]
    tables_dir, figures_dir = job.out_dir / "tables", job.out_dir / "figures"
    written, summary = [], {}
    for t in tables:
        for ext, text in (("md", t.markdown()), ("csv", t.csv())):
            manifest.atomic_write_text(tables_dir / f"{t.name}.{ext}", text)
            os.chmod(tables_dir / f"{t.name}.{ext}", 0o644)  # temp files are 0600; results are shared
            written.append(f"tables/{t.name}.{ext}")
        for block in t.rich():
            console.print(block)
        summary[t.name] = {"title": t.title, "rows": len(t.rows), "cells": t.filled + t.missing,
                           "filled": t.filled, "missing": t.missing}
    pngs, points = {}, {}
    for name, data in figure_data(lk, ladder, job.world.grid.full).items():
        pngs[name] = figures_dir / f"{name}.png"
        points[name] = figures.draw(name, data, pngs[name])
        written.append(f"figures/{name}.png")
    wandb_run = log_wandb(job, tables, pngs)
    report = {
        "verb": "report", "world": job.world.name, "world_dir": str(job.world_dir),
        "evals_read": len(records), "sizes": ladder, "written": written, "tables": summary,
        "figures": {name: {"file": f"figures/{name}.png", "points": n} for name, n in points.items()},
        "cell_counts_note": "filled/missing count score cells read from evals; Averages and deltas are derived",
        "wandb": wandb_run, "versions": manifest.versions(),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "wall_time_s": round(time.time() - started, 3),
    }
    manifest.atomic_write_json(tables_dir / "report.json", report)  # last: it means the report is complete
    os.chmod(tables_dir / "report.json", 0o644)
    console.print(f"report: {len(records)} evals -> {tables_dir} and {figures_dir} ("
                  + ", ".join(f"{t.name} {t.filled}/{t.filled + t.missing} cells" for t in tables) + ")")
    return report
