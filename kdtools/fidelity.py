"""Can this world test the paper's claims? Every benchmark's floor next to the teacher and the
students (`kdtools report` writes tables/fidelity.{md,csv} and report.json `fidelity`).

    check = Fidelity(lookup, ladder, full, ivs)    # asks ivs for its deltas
    ivs.resolve()
    table = check.table()                          # a kdtools.tables.Table, after resolve

KD can only beat SFT on a benchmark where the teacher knows more than the answer format, and a
student's gain means something only above what an answer that knows nothing scores. Per
benchmark (the five general ones, then each domain task's metrics):

- Floor: `kdtools eval --model floor` (kdtools.evaluation.floor): the best of chance, a constant
  answer and copy-the-input, through the benchmark's own scorer;
- Teacher: T_s at the world's full size (the 70b's SFT on the general data, or on the task), and
  its lead over the floor (bar: TEACHER_OVER_FLOOR points);
- Best small SFT: the best student's SFT at the ladder's smallest size (general) or on the task
  (a domain task has one size), and the teacher's lead over it (bar: TEACHER_OVER_SFT points);
- Best student: the best score of any student cell the report read, and its lead over the floor:
  a benchmark where no student is above its floor beyond noise measures nothing about KD.

Leads are paired deltas with the report's 95% bootstrap intervals. The bars are those of the
fidelity issue; a world that misses them is reported as it is, never tuned until it passes.
"""

from __future__ import annotations

from dataclasses import dataclass

from kdtools.evalindex import TEACHER, Lookup, Record
from kdtools.evaluation.floor import NAME as FLOOR
from kdtools.intervals import Delta, Intervals
from kdtools.tables import DOMAIN, GENERAL, GENERAL_HEADERS, Table
from kdtools.world import STUDENTS

TEACHER_OVER_FLOOR = 20.0
TEACHER_OVER_SFT = 10.0
HEADERS = dict(zip(GENERAL, GENERAL_HEADERS, strict=True)) | {
    "chrf": "Translation chrF", "comet": "Translation COMET", "rougeL": "Summarization ROUGE-L",
    "accuracy": "ARC-Challenge accuracy"}
COLUMNS = ["Benchmark", "Floor", "Floor answer", "Teacher", "Teacher-Floor", "Best small SFT",
           "Teacher-Best small SFT", "Best student", "Best student-Floor", "Verdict"]


@dataclass
class Row:
    suite: str
    metric: str
    floor: Record | None
    teacher: Record | None
    small: Record | None          # the best student SFT at the smallest size
    small_label: str
    best: Record | None           # the best student cell of any method
    over_floor: Delta
    over_small: Delta
    best_over_floor: Delta

    def value(self, rec: Record | None) -> float | None:
        return None if rec is None else rec.metrics.get(self.metric)

    def floor_answer(self) -> str:
        if self.floor is None:
            return "-"
        bench = next((b for b in self.floor.benchmarks.values() if self.metric in b.get("metrics", ())), {})
        return str(bench.get("floor", {}).get("strategy", "-"))

    def problems(self) -> list[str]:
        """What keeps this benchmark from testing the claims (empty: nothing)."""
        if self.floor is None:
            return [f"no floor: run `kdtools eval --model {FLOOR} --suite {self.suite}`"]
        if self.value(self.floor) is None:
            return [f"the floor has no {self.metric} (its eval's `missing` says why)"]
        if self.teacher is None:
            return [f"no eval of the teacher ({TEACHER} SFT on {self.suite})"]
        if self.value(self.teacher) is None:
            return [f"the teacher's eval has no {self.metric} (its `missing` says why)"]
        out = []
        if self.over_floor.value < TEACHER_OVER_FLOOR:
            out.append(f"teacher {self.over_floor.value:+.2f} over the floor (bar +{TEACHER_OVER_FLOOR:.0f})")
        if self.over_small.value is not None and self.over_small.value < TEACHER_OVER_SFT:
            out.append(f"teacher {self.over_small.value:+.2f} over the best small SFT (bar +{TEACHER_OVER_SFT:.0f})")
        lead = self.best_over_floor
        if lead.value is None or lead.value <= 0 or (lead.interval is not None and not lead.interval.excludes_zero):
            out.append("no student above the floor beyond noise")
        return out


def _best(records: list[Record], metric: str) -> Record | None:
    scored = [r for r in records if r is not None and r.metrics.get(metric) is not None]
    return max(scored, key=lambda r: (r.metrics[metric], str(r.path)), default=None)


class Fidelity:
    def __init__(self, lk: Lookup, ladder: list[str], full: str, ivs: Intervals):
        self.ivs = ivs
        self.rows: list[Row] = []
        smallest = ladder[0] if ladder else None
        for suite, metrics, teacher_size, small_size in (
                [("general", GENERAL, full, smallest)]
                + [(task, _domain_metrics(task), "full", "full") for task in DOMAIN]):
            floor = lk.find(FLOOR, FLOOR, suite)
            teacher = lk.find(TEACHER, "sft", suite, teacher_size)
            small = [lk.find(s, "sft", suite, small_size) for s in STUDENTS] if small_size else []
            cells = [r for r in lk.records if r.model in STUDENTS and r.suite == suite]
            for metric in metrics:
                best_small, best = _best(small, metric), _best(cells, metric)
                self.rows.append(Row(
                    suite, metric, floor, teacher, best_small, small_size or "-", best,
                    ivs.delta([(teacher, floor, metric)]), ivs.delta([(teacher, best_small, metric)]),
                    ivs.delta([(best, floor, metric)])))

    def table(self) -> Table:
        """After ivs.resolve(): one row per benchmark metric that some eval scored."""
        t = Table("fidelity", "Fidelity: can this world test the paper's claims? (each benchmark's floor, "
                  "teacher and best students)", COLUMNS, 1,
                  f"Scores 0-100. Floor: the best answer that knows nothing (chance, a constant answer or the "
                  f"input copied; `kdtools eval --model {FLOOR}`, docs/eval.md). Teacher: T_s ({TEACHER} SFT) at "
                  f"the world's full size, on the general data or the task. Best small SFT: the best student's SFT "
                  f"at the smallest ladder size (a domain task: on the task). Best student: any student cell. "
                  f"Bars: the teacher at least +{TEACHER_OVER_FLOOR:.0f} over the floor and +{TEACHER_OVER_SFT:.0f} "
                  "over the best small SFT, and some student above the floor. Leads carry their 95% paired "
                  "bootstrap interval; * = it excludes 0.")
        for row in self.rows:
            if all(row.value(r) is None for r in (row.floor, row.teacher, row.best)):
                continue  # no eval scored this metric
            problems = row.problems()
            t.add([HEADERS.get(row.metric, row.metric)], [
                t.scores(row.floor, [row.metric])[0], row.floor_answer(),
                t.scores(row.teacher, [row.metric])[0], _lead(row.over_floor),
                _labelled(row.small, row.metric, row.small_label), _lead(row.over_small),
                _labelled(row.best, row.metric), _lead(row.best_over_floor),
                "ok" if not problems else "; ".join(problems)])
        return t

    def summary(self) -> dict:
        """For report.json: per benchmark, the numbers and what fails."""
        listed = []
        for row in self.rows:
            listed.append({"suite": row.suite, "metric": row.metric, "floor": row.value(row.floor),
                           "floor_answer": row.floor_answer(), "teacher": row.value(row.teacher),
                           "teacher_over_floor": row.over_floor.as_dict(),
                           "teacher_over_small_sft": row.over_small.as_dict(),
                           "best_student": None if row.best is None else str(row.best.path),
                           "best_student_over_floor": row.best_over_floor.as_dict(),
                           "problems": row.problems()})
        return {"bars": {"teacher_over_floor": TEACHER_OVER_FLOOR, "teacher_over_small_sft": TEACHER_OVER_SFT},
                "benchmarks": len(listed), "passing": sum(not x["problems"] for x in listed), "rows": listed}


def _domain_metrics(task: str) -> tuple[str, ...]:
    metric = DOMAIN[task][1]
    return (metric, "chrf") if task == "translation" else (metric,)


def _lead(d: Delta) -> str:
    return d.text() + ("" if d.interval is None else f" {d.ci_text()}")


def _labelled(rec: Record | None, metric: str, size: str | None = None) -> str:
    if rec is None or rec.metrics.get(metric) is None:
        return "-"
    what = f"{rec.model} {rec.method}" + ("" if size is not None else f" {rec.path.parent.name}")
    return f"{rec.metrics[metric]:.2f} ({what})"

