"""The paper's Tables 1-3 as rows of cells (`kdtools report` writes them as md, csv and rich).

    ivs = Intervals(2000, seed)
    tables = [table1(lookup, "full", ivs), table2(lookup, ivs), table3(lookup, ladder, ivs)]
    ivs.resolve()                          # the deltas' intervals, then render:
    tables[0].markdown(), tables[0].csv(), tables[0].intervals()

Score rows hold floats (None = no eval: '-'); every KD-minus-SFT row holds Deltas (kdtools.
intervals) and is followed by its '95% CI' row; a delta whose interval excludes 0 is marked '*'.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

from rich.table import Table as RichTable

from kdtools.evalindex import TEACHER, Lookup, Record
from kdtools.intervals import Delta, Intervals, legend
from kdtools.world import STUDENTS

GENERAL = ("bbh", "gpqa", "ifeval", "infobench", "mmlu_pro")
GENERAL_HEADERS = ("BBH", "GPQA", "IF-Eval", "InfoBench", "MMLU-Pro")
# domain task (= its suite) -> (paper's column group, metric)
DOMAIN = {"translation": ("Translation", "comet"), "summarization": ("Summarization", "rougeL"),
          "arc": ("ARC-Challenge", "accuracy")}
METRIC_NAMES = {"comet": "COMET", "rougeL": "ROUGE-L", "accuracy": "accuracy"}
STRONG_TEACHER = "70b-it"
TABLE2_METHODS = (("sft", "SFT"), ("gkd", "GKD"), ("mix", "Mix"), ("two_stage", "2-Stage"))
AVERAGE_NOTE = "An Average is shown only when every benchmark it averages exists for that row (else '-')."
CI = "95% CI"


def mean(values: list) -> float | None:
    return None if not values or any(v is None for v in values) else sum(values) / len(values)


def with_average(values: list) -> list:
    return [*values, mean(values)]


def general_deltas(ivs: Intervals, kd: Record | None, sft: Record | None) -> list[Delta]:
    """Per benchmark, then the Average (stratified over the five)."""
    return [*(ivs.delta([(kd, sft, m)]) for m in GENERAL), ivs.delta([(kd, sft, m) for m in GENERAL])]


@dataclass
class Table:
    name: str
    title: str
    columns: list[str]
    labels: int                          # how many leading columns are labels (strings)
    footnote: str
    resamples: int = 0                   # for the legend of the marks
    rows: list[list] = field(default_factory=list)   # labels, then float | Delta | None
    deltas: set = field(default_factory=set)         # indexes of KD-minus-SFT rows
    cis: set = field(default_factory=set)            # indexes of their '95% CI' rows
    filled: int = 0
    missing: int = 0
    block: int = 8                                   # value columns per terminal block

    def scores(self, rec: Record | None, metrics) -> list:
        """The record's scores, counted as filled or missing (Averages and deltas are not counted)."""
        out = [None if rec is None else rec.metrics.get(m) for m in metrics]
        self.filled += sum(v is not None for v in out)
        self.missing += sum(v is None for v in out)
        return out

    def add(self, labels: list, values: list) -> None:
        self.rows.append([*labels, *values])

    def add_delta(self, labels: list, deltas: list[Delta | None]) -> None:
        """A KD-minus-SFT row, then its '95% CI' row (the last label gets ' 95% CI')."""
        self.deltas.add(len(self.rows))
        self.rows.append([*labels, *deltas])
        self.cis.add(len(self.rows))
        self.rows.append([*labels[:-1], f"{labels[-1]} {CI}", *deltas])

    def text(self, i: int, v) -> str:
        if isinstance(v, str):
            return v
        if isinstance(v, Delta):
            return v.ci_text() if i in self.cis else v.text()
        return "-" if v is None else f"{v:.2f}"

    def cells(self) -> list[list[str]]:
        return [[self.text(i, v) for v in row] for i, row in enumerate(self.rows)]

    def note(self) -> str:
        return f"{self.footnote}\n\n{legend(self.resamples)}" if self.deltas else self.footnote

    def markdown(self) -> str:
        lines = [f"**{self.title}**", "", "| " + " | ".join(self.columns) + " |",
                 "|" + "|".join("---" if j < self.labels else "---:" for j in range(len(self.columns))) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in self.cells()]
        return "\n".join(lines + ["", self.note(), ""])

    def csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(self.columns)
        writer.writerows(self.cells())
        return buf.getvalue()

    def values(self) -> list[list]:
        """Numbers for W&B: score and delta rows (a delta as its value), no CI rows."""
        return [[v.value if isinstance(v, Delta) else v for v in row]
                for i, row in enumerate(self.rows) if i not in self.cis]

    def intervals(self) -> list[dict]:
        """One entry per delta with a value: where it is, and its interval or why there is none."""
        return [{"table": self.name, "row": " / ".join(self.rows[i][: self.labels]), "column": self.columns[j],
                 **v.as_dict()}
                for i in sorted(self.deltas) for j, v in enumerate(self.rows[i])
                if isinstance(v, Delta) and v.value is not None]

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
                              caption=self.note() if b == len(starts) - 1 else None)
            for j in range(self.labels):
                table.add_column(self.columns[j])
            for j, parts in zip(cols, split, strict=True):
                table.add_column(parts[-1] if group else self.columns[j], justify="right")
            for i, row in enumerate(cells):
                table.add_row(*row[: self.labels], *(row[j] for j in cols),
                              style="dim" if i in self.deltas | self.cis else None)
            out.append(table)
        return out


def table1(lk: Lookup, top: str, ivs: Intervals) -> Table:
    t = Table("table1", f"Table 1: 8b trained on the full data ({top}): SFT vs GKD vs SeqKD",
              ["Method", *GENERAL_HEADERS, "Average"], 1,
              f"Scores 0-100. KD rows distil from T_s (70b SFT'd on the same data). {AVERAGE_NOTE} "
              "'GKD-SFT' and 'SeqKD-SFT' are differences where both cells exist.", ivs.resamples)
    recs = {m: lk.find("8b", m, "general", top) for m in ("sft", "gkd", "seqkd")}
    for method, label in (("sft", "SFT"), ("gkd", "GKD"), ("seqkd", "SeqKD")):
        t.add([label], with_average(t.scores(recs[method], GENERAL)))
    t.add_delta(["GKD-SFT"], general_deltas(ivs, recs["gkd"], recs["sft"]))
    t.add_delta(["SeqKD-SFT"], general_deltas(ivs, recs["seqkd"], recs["sft"]))
    return t


def table2(lk: Lookup, ivs: Intervals) -> Table:
    groups = [*(g for g, _ in DOMAIN.values()), "Average", "Translation chrF"]
    columns = ["Model", *(f"{g} {label}" for g in groups for _, label in TABLE2_METHODS)]
    t = Table("table2", "Table 2: domain tasks (Translation COMET, Summarization ROUGE-L, ARC-Challenge "
              "accuracy): SFT vs GKD vs Mix vs 2-Stage", columns, 1,
              "Scores 0-100. Mix and 2-Stage use the largest synthetic set evaluated (paper: 100k). "
              "Average = mean of Translation (COMET), Summarization and ARC-Challenge; "
              f"{AVERAGE_NOTE} Rows 'KD-SFT' give each KD method minus SFT where both exist.",
              ivs.resamples, block=len(TABLE2_METHODS))
    tasks = [*((task, metric) for task, (_, metric) in DOMAIN.items())]

    def row(model: str, methods) -> tuple[list, dict]:
        recs = {(m, task): lk.find(model, m, task) if m in methods else None
                for m, _ in TABLE2_METHODS for task in DOMAIN}
        per_task = {task: [t.scores(recs[m, task], [metric])[0] for m, _ in TABLE2_METHODS]
                    for task, metric in tasks}
        chrf = [t.scores(recs[m, "translation"], ["chrf"])[0] for m, _ in TABLE2_METHODS]
        avg = [mean([per_task[task][j] for task in DOMAIN]) for j in range(len(TABLE2_METHODS))]
        return [*(v for task in DOMAIN for v in per_task[task]), *avg, *chrf], recs

    t.add([f"Teacher ({TEACHER} SFT)"], row(TEACHER, ("sft",))[0])
    for student in STUDENTS:
        values, recs = row(student, [m for m, _ in TABLE2_METHODS])
        t.add([student], values)
        kd_methods = [m for m, _ in TABLE2_METHODS[1:]]
        deltas = [*([None, *(ivs.delta([(recs[m, task], recs["sft", task], metric)]) for m in kd_methods)]
                    for task, metric in tasks),
                  [None, *(ivs.delta([(recs[m, task], recs["sft", task], metric)
                                      for task, metric in tasks]) for m in kd_methods)],
                  [None, *(ivs.delta([(recs[m, "translation"], recs["sft", "translation"], "chrf")])
                           for m in kd_methods)]]
        t.add_delta([f"{student} KD-SFT"], [d for group in deltas for d in group])
    return t


def table3(lk: Lookup, ladder: list[str], ivs: Intervals) -> Table:
    t = Table("table3", "Table 3: students x data size, SFT vs GKD (general data, SFT-S, teacher 70b)",
              ["Model", "Data Size", "Method", *GENERAL_HEADERS, "Average"], 3,
              f"Scores 0-100. GKD starts from the student's SFT on the same data (SFT-S) and distils from "
              f"T_s (70b SFT'd on the same data). {AVERAGE_NOTE} 'GKD-SFT' rows: GKD minus SFT where both exist.",
              ivs.resamples)
    for model in STUDENTS:
        for size in ladder:
            sft, gkd = lk.find(model, "sft", "general", size), lk.find(model, "gkd", "general", size)
            t.add([model, size, "SFT"], with_average(t.scores(sft, GENERAL)))
            t.add([model, size, "GKD"], with_average(t.scores(gkd, GENERAL)))
            t.add_delta([model, size, "GKD-SFT"], general_deltas(ivs, gkd, sft))
    return t
