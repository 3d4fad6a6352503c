"""Receipts: for every KD cell of Tables 1-3, did distillation pay, against SFT and against the
same number of steps of SFT, and at what cost (`kdtools report` writes tables/receipts.{md,csv}).

    rc = Receipts(job.world, job.world_dir, lookup, ladder, ivs)   # asks ivs for its deltas
    ivs.resolve()
    rc.markdown(), rc.csv(), rc.figure(), rc.summary()

A cell compares three models on the same evaluation:
- KD: the distilled student (GKD of Table 3 and Table 1, SeqKD of Table 1, GKD-IT of Figure 3,
  GKD, Mix and 2-Stage of Table 2);
- SFT: the same student fine-tuned on the same data (the table's own SFT cell);
- SFT-long, the compute-matched control (`kdtools sft --match`, method sft_long): that SFT
  continued on the same data for as many optimizer steps as KD adds over it. On a domain task
  GKD adds none (both start from the general SFT and train the same epochs), so SFT is its
  step-matched control and there is no SFT-long.
Gains are KD minus the other on the table's metric (the Average of the five general benchmarks;
a domain task's metric, chrF where COMET is missing), each with the report's 95% paired bootstrap
interval (kdtools.intervals). Costs (kdtools.cellcosts) count from the start the models share:
SFT = its own run; GKD = the SFT it continues + GKD (with the teacher's forward passes); SeqKD =
its run + its share of the teacher's samples; Mix and 2-Stage = their runs + their shares of the
synthetic inputs and the teacher's annotations; SFT-long = the SFT + its extra steps. The
teacher's own training is shown beside, not added: a team that already has the teacher does not
pay it again. "Points per extra hour" = the gain over SFT / (KD's hours - SFT's hours).

The verdict: "paid" when KD beats the compute-matched SFT (its interval above 0); "beats SFT only"
when it beats SFT but not clearly the same steps of SFT (or there is no control yet); "no clear
gain" when the interval over SFT includes 0; "lost" when SFT or SFT-long is clearly better.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

from kdtools import paths
from kdtools.cellcosts import Cost, Ledger, Part
from kdtools.evalindex import TEACHER, Lookup, Record
from kdtools.intervals import Delta, Intervals
from kdtools.tables import DOMAIN, GENERAL, STRONG_TEACHER, STUDENTS

DOMAIN_LABELS = {"gkd": "GKD", "mix": "Mix", "two_stage": "2-Stage"}
NO_STEPS = ("GKD adds no student steps over SFT here (both start from the general SFT and train the same "
            "epochs on the task data): SFT is its step-matched control")


@dataclass
class Side:
    record: Record | None
    parts: list[Part]
    cost: Cost | None = None


@dataclass
class Cell:
    tables: list[str]
    student: str
    data: str                     # the size (general) or the task
    method: str                   # the KD label: GKD, SeqKD, GKD-IT, Mix, 2-Stage
    metric: str                   # what the gains are on: Average, ROUGE-L, ...
    kd: Side
    sft: Side
    control: Side | None
    control_note: str | None      # why there is no control side (None: there is one, or it is missing)
    teacher: Part | None          # the teacher's own training (reported, not added)
    pairs: object = None          # (kd, other) -> the Intervals pairs of the metric
    deltas: dict = field(default_factory=dict)   # vs_sft, vs_control, control_vs_sft
    teacher_cost: Cost | None = None

    @property
    def name(self) -> str:
        return f"{' · '.join(self.tables)} · {self.student} · {self.data} · {self.method}"


class Receipts:
    def __init__(self, world, world_dir: Path, lk: Lookup, ladder: list[str], ivs: Intervals,
                 ledger: Ledger | None = None):
        self.world, self.world_dir, self.lk, self.ivs = world, Path(world_dir), lk, ivs
        self.ledger = ledger or Ledger(world, world_dir)
        self.top = world.grid.full
        self.cells: list[Cell] = []
        for cell in [*self.table3(ladder), *self.table1(), *self.figure3(), *self.table2()]:
            same = next((c for c in self.cells if (c.kd.record is not None and c.kd.record is cell.kd.record)
                         or (c.kd.parts == cell.kd.parts and c.method == cell.method)), None)
            if same is None:
                self.cells.append(cell)
            elif cell.tables[0] not in same.tables:
                same.tables.append(cell.tables[0])
        for c in self.cells:   # only evaluated models are costed (a missing run.json is estimated)
            for side in (c.kd, c.sft, c.control):
                if side is not None and side.record is not None:
                    self.ledger.register(side.parts)
            c.deltas = {"vs_sft": ivs.delta(c.pairs(c.kd.record, c.sft.record)),
                        "vs_control": ivs.delta(c.pairs(c.kd.record, c.control.record)) if c.control else None,
                        "control_vs_sft": ivs.delta(c.pairs(c.control.record, c.sft.record)) if c.control else None}
        for c in self.cells:
            for side in (c.kd, c.sft, c.control):
                if side is not None and side.record is not None:
                    side.cost = self.ledger.cost(side.parts)
            c.teacher_cost = self.ledger.cost([c.teacher]) if c.teacher and c.kd.record else None

    # ---------------------------------------------------------------- the cells and their chains
    def folder(self, model, method, task, size, variant="") -> Path:
        return paths.model_dir(self.world_dir.parent, self.world_dir.name, model, method, task, size, variant)

    def part(self, who, method, task, size, leaf="", rule=None, **wc) -> Part:
        """The job that trains `who` with `method` into <size>[+<leaf>] (its rule's wildcards: task,
        size and `wc`)."""
        wc = {"task": task, "size": size, **wc}
        return Part(f"{method} {who} {task}/{size}{'+' + leaf if leaf else ''}",
                    (self.folder(who, method, task, size, leaf),), rule or method, tuple(sorted(wc.items())))

    def sft_part(self, model, task, size) -> Part:
        return self.part(model, "sft", task, size, model=model)

    def control(self, student, task, size, match, base: list[Part], synthetic=None) -> Side:
        label = f"{match}-{synthetic}" if synthetic else match
        rec = self.lk.find(student, "sft_long", task, size, match=match,
                           **({"synthetic": synthetic} if synthetic else {}))
        part = self.part(student, "sft_long", task, size, f"match-{label}", model=student, match=label)
        return Side(rec, [*base, part])

    def general_pairs(self, a, b):
        return [(a, b, m) for m in GENERAL]

    def table3(self, ladder) -> list[Cell]:
        out = []
        for s in STUDENTS:
            for n in ladder:
                sft = [self.sft_part(s, "general", n)]
                kd = [*sft, self.part(s, "gkd", "general", n, student=s)]
                out.append(Cell(["Table 3"], s, n, "GKD", "Average",
                                Side(self.lk.find(s, "gkd", "general", n), kd),
                                Side(self.lk.find(s, "sft", "general", n), sft),
                                self.control(s, "general", n, "gkd", sft), None,
                                self.sft_part(TEACHER, "general", n), self.general_pairs))
        return out

    def table1(self) -> list[Cell]:
        s, n = "8b", self.top
        sft = [self.sft_part(s, "general", n)]
        sft_side = Side(self.lk.find(s, "sft", "general", n), sft)
        gkd = Cell(["Table 1"], s, n, "GKD", "Average",
                   Side(self.lk.find(s, "gkd", "general", n), [*sft, self.part(s, "gkd", "general", n, student=s)]),
                   sft_side, self.control(s, "general", n, "gkd", sft), None,
                   self.sft_part(TEACHER, "general", n), self.general_pairs)
        seqkd = Cell(["Table 1"], s, n, "SeqKD", "Average",
                     Side(self.lk.find(s, "seqkd", "general", n), [self.part(s, "seqkd", "general", n, student=s)]),
                     Side(sft_side.record, sft), self.control(s, "general", n, "seqkd", sft), None,
                     self.sft_part(TEACHER, "general", n), self.general_pairs)
        return [gkd, seqkd]

    def figure3(self) -> list[Cell]:
        s, n = "8b", self.top
        sft = [self.sft_part(s, "general", n)]
        variant = f"teacher-{STRONG_TEACHER}"
        kd = [*sft, self.part(s, "gkd", "general", n, variant, rule="gkd_variant", student=s, variant=variant)]
        return [Cell(["Figure 3"], s, n, "GKD-IT", "Average",
                     Side(self.lk.find(s, "gkd", "general", n, teacher=STRONG_TEACHER), kd),
                     Side(self.lk.find(s, "sft", "general", n), sft), self.control(s, "general", n, "gkd", sft),
                     None, None, self.general_pairs)]

    def table2(self) -> list[Cell]:
        out = []
        synth = self.world.synth.get("sizes") or {}
        grid_top = self.world.grid.synthetic[-1] if self.world.grid.synthetic else None
        for task, (_, metric) in DOMAIN.items():
            for s in STUDENTS:
                sft = [self.sft_part(s, task, "full")]
                sft_rec = self.lk.find(s, "sft", task)
                for method, label in DOMAIN_LABELS.items():
                    rec = self.lk.find(s, method, task)
                    if method == "gkd":
                        kd, note = [self.part(s, "gkd", task, "full", student=s)], None
                        control = self.control(s, task, "full", "gkd", sft)
                        if control.record is None and not self.adds_steps(kd[0], sft[0]):
                            control, note = None, NO_STEPS
                    else:
                        top = (rec.synthetic if rec is not None and rec.synthetic else grid_top)
                        if top is None:
                            continue
                        kd = self.synthetic_parts(label, s, method, task, top, synth)
                        control, note = self.control(s, task, "full", method, sft, top), None
                    out.append(Cell(["Table 2"], s, task, label, metric, Side(rec, kd), Side(sft_rec, sft), control,
                                    note, self.sft_part(TEACHER, task, "full"), self.domain_pairs(metric)))
        return out

    def adds_steps(self, kd: Part, sft: Part) -> bool:
        """Whether the finished KD run trained more optimizer steps than the SFT (same start)."""
        runs = [self.ledger.run(p.folders[-1]) for p in (kd, sft)]
        steps = [((r or {}).get("metrics") or {}).get("steps") for r in runs]
        return None not in steps and steps[0] > steps[1]

    def synthetic_parts(self, label, s, method, task, top, synth) -> list[Part]:
        """Mix or 2-Stage at synthetic size `top`: one job (2-Stage writes stage 1 too), trained on
        `top` rows of the task's synthetic inputs and of the teacher's annotation of them."""
        grid_top = self.world.grid.synthetic[-1] if self.world.grid.synthetic else top
        rows, pool_rows = synth.get(top, 0), synth.get(grid_top, 0)
        data = paths.data_dir(self.world_dir.parent, self.world_dir.name, "annotated")
        uses = ((data / task / paths.model_name(TEACHER) / grid_top, "annotate",
                 (("label", grid_top), ("n", pool_rows), ("task", task)), rows),
                (paths.data_dir(self.world_dir.parent, self.world_dir.name, "synth") / task, "synth",
                 (("label", grid_top), ("n", pool_rows), ("task", task)), rows))
        variant = f"synthetic-{top}"
        folders = ((self.folder(s, "synth_sft", task, "full", variant),) if method == "two_stage" else ()) + \
            (self.folder(s, method, task, "full", variant),)
        wc = (("label", top), ("method", method), ("student", s), ("task", task))
        return [Part(f"{method} {s} {task}/full+{variant}", folders, "gkd_synthetic", wc, uses)]

    def domain_pairs(self, metric):
        def pairs(a, b):
            use = metric
            if metric == "comet" and any(r is not None and r.metrics.get("comet") is None for r in (a, b)):
                use = "chrf"   # COMET needs its own environment; chrF is always there
            return [(a, b, use)]
        return pairs

    # ---------------------------------------------------------------- rendering
    def rows(self) -> list[dict]:
        """One dict per cell (the CSV's columns); call after the Intervals are resolved."""
        if getattr(self, "_rows", None) is None:
            self._rows = [self.row(c) for c in self.cells]
        return self._rows

    def row(self, c: Cell) -> dict:
        d = c.deltas
        kd, sft, ctl = c.kd.cost, c.sft.cost, c.control.cost if c.control else None
        unit = next((x.unit for x in (kd, sft, ctl) if x is not None and x.seconds is not None), None)
        same = kd is not None and sft is not None and kd.seconds is not None and sft.seconds is not None \
            and kd.device == sft.device
        ratio = kd.seconds / sft.seconds if same and sft.seconds > 0 else None
        extra = (kd.seconds - sft.seconds) / 3600 if same else None
        gain = d["vs_sft"].value
        per_hour = gain / extra if gain is not None and extra is not None and extra > 0 else None
        metric = c.pairs(c.kd.record, c.sft.record)[0][2] if c.metric != "Average" else "average"
        why = [x for x in (c.control_note, d["vs_sft"].why, kd and kd.why and f"KD cost: {kd.why}",
                           sft and sft.why and f"SFT cost: {sft.why}") if x]
        if c.control is not None and c.control.record is None:
            why.append("no compute-matched SFT evaluated yet: `kdtools sft --match` trains one (the workflow "
                       "target `controls` trains and evaluates the grid's)")
        return {
            "table": " · ".join(c.tables), "student": c.student, "data": c.data, "method": c.method, "metric": metric,
            "kd_score": score(c.kd.record, c.pairs), "sft_score": score(c.sft.record, c.pairs),
            "control_score": score(c.control.record, c.pairs) if c.control else None,
            **flat("gain_vs_sft", d["vs_sft"]), **flat("gain_vs_control", d["vs_control"]),
            **flat("control_vs_sft", d["control_vs_sft"]),
            "unit": unit, "kd_cost_h": hours(kd), "sft_cost_h": hours(sft), "control_cost_h": hours(ctl),
            "cost_estimated": any(x is not None and x.estimated for x in (kd, sft, ctl)),
            "cost_ratio": ratio, "extra_cost_h": extra, "gain_per_extra_h": per_hour,
            "teacher_training_h": hours(c.teacher_cost), "verdict": verdict(d["vs_sft"], d["vs_control"]),
            "sentence": sentence(c, ratio, unit, kd, sft), "why": "; ".join(why) or None,
        }

    def markdown(self) -> str:
        rows = self.rows()
        head = ("| Table | Student | Data | KD | Δ vs SFT [95% CI] | Δ vs SFT-long [95% CI] | KD cost | SFT cost | "
                "SFT-long cost | × SFT | points / extra h | verdict |")
        lines = ["**Receipts: did distillation pay?** Gains on the table's metric (points, 0-100) with 95% paired "
                 "bootstrap intervals; SFT-long = the compute-matched SFT (the SFT continued for as many steps as "
                 "KD adds); costs in device-hours from the shared start (`~` = estimated by `kdtools plan`).", "",
                 head, "|" + "---|" * 4 + "---:|" * 7 + "---|"]
        for r in rows:
            lines.append("| " + " | ".join([
                r["table"], r["student"], r["data"], r["method"] + ("" if r["metric"] == "average" else f" ({r['metric']})"),
                delta_text(r, "gain_vs_sft"), delta_text(r, "gain_vs_control"),
                cost_text(r["kd_cost_h"], r), cost_text(r["sft_cost_h"], r), cost_text(r["control_cost_h"], r),
                "-" if r["cost_ratio"] is None else f"{r['cost_ratio']:.1f}x",
                "-" if r["gain_per_extra_h"] is None else f"{r['gain_per_extra_h']:+.3g}", r["verdict"]]) + " |")
        units = sorted({r["unit"] for r in rows if r["unit"]})
        lines += ["", f"Units: {', '.join(units) or '-'} (GPU-h = wall x GPUs x nodes; on a CPU, core-hours). "
                  "'-': not evaluated, no interval, or no cost; tables/receipts.csv says why.", "",
                  "In plain words:", ""]
        said = [r for r in rows if r["gain_vs_sft"] is not None]
        lines += [f"- **{r['table']} · {r['student']} · {r['data']} · {r['method']}**: {r['sentence']}" for r in said]
        if len(said) < len(rows):
            lines.append(f"- {len(rows) - len(said)} other cell(s): KD or SFT not evaluated yet.")
        return "\n".join(lines) + "\n"

    COLUMNS = ("table", "student", "data", "method", "metric", "kd_score", "sft_score", "control_score",
               "gain_vs_sft", "gain_vs_sft_lo", "gain_vs_sft_hi", "gain_vs_control", "gain_vs_control_lo",
               "gain_vs_control_hi", "control_vs_sft", "control_vs_sft_lo", "control_vs_sft_hi", "unit",
               "kd_cost_h", "sft_cost_h", "control_cost_h", "cost_estimated", "cost_ratio", "extra_cost_h",
               "gain_per_extra_h", "teacher_training_h", "verdict", "sentence", "why")

    def csv(self) -> str:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, self.COLUMNS, lineterminator="\n")
        writer.writeheader()
        for r in self.rows():
            writer.writerow({k: round(v, 6) if isinstance(v, float) else v for k, v in r.items()})
        return buf.getvalue()

    def figure(self) -> dict:
        """Gain over SFT vs cost across the ladder, per student (Table 3's cells): figures.py draws it."""
        panels, units = {}, set()
        for c in self.cells:
            if "Table 3" not in c.tables:
                continue
            panel = panels.setdefault(c.student, {"GKD": [], "SFT-long (compute-matched)": [], "SFT": []})
            d = c.deltas
            for series, side, delta in (("GKD", c.kd, d["vs_sft"]),
                                        ("SFT-long (compute-matched)", c.control, d["control_vs_sft"])):
                panel[series].append(point(side, delta, c.data))
            panel["SFT"].append(point(c.sft, None, c.data, zero=c.sft.record is not None))
            units |= {s.cost.unit for s in (c.kd, c.sft, c.control) if s and s.cost and s.cost.seconds is not None}
        return {"unit": " / ".join(sorted(units)) or "device-hours", "panels": panels}

    def summary(self) -> dict:
        rows = self.rows()
        return {"cells": len(rows), "with_gain": sum(r["gain_vs_sft"] is not None for r in rows),
                "with_control": sum(r["gain_vs_control"] is not None for r in rows),
                "with_cost": sum(r["kd_cost_h"] is not None and r["sft_cost_h"] is not None for r in rows),
                "verdicts": {v: sum(r["verdict"] == v for r in rows) for v in sorted({r["verdict"] for r in rows})},
                "generations": self.ledger.generations}

    def by_model(self) -> dict[Path, list[dict]]:
        """Each evaluated model's receipts lines (for its model card): folder -> [{cell, role, ...}]."""
        out: dict[Path, list[dict]] = {}
        for c, r in zip(self.cells, self.rows(), strict=True):
            for role, side in (("the distilled model", c.kd), ("its SFT baseline", c.sft),
                               ("its compute-matched SFT", c.control)):
                if side is None or side.record is None or r["gain_vs_sft"] is None:
                    continue
                folder = self.world_dir / "models" / side.record.path.parent.relative_to(self.world_dir / "evals")
                out.setdefault(folder, []).append({"cell": c.name, "role": role, "sentence": r["sentence"],
                                                   "verdict": r["verdict"]})
        return out


# ---------------------------------------------------------------- pieces of a row
def score(rec: Record | None, pairs) -> float | None:
    if rec is None:
        return None
    values = [rec.metrics.get(m) for _, _, m in pairs(rec, rec)]
    return None if any(v is None for v in values) else sum(values) / len(values)


def flat(name: str, d: Delta | None) -> dict:
    iv = d.interval if d is not None else None
    return {name: None if d is None else d.value, f"{name}_lo": iv and iv.lo, f"{name}_hi": iv and iv.hi}


def hours(cost: Cost | None) -> float | None:
    return None if cost is None else cost.hours


def delta_text(r: dict, name: str) -> str:
    if r[name] is None:
        return "-"
    lo, hi = r[f"{name}_lo"], r[f"{name}_hi"]
    mark = "*" if lo is not None and (lo > 0 or hi < 0) else ""
    return f"{r[name]:+.2f}{mark}" + ("" if lo is None else f" [{lo:+.2f}, {hi:+.2f}]")


def fmt_hours(h: float) -> str:
    return f"{h:,.0f}" if h >= 100 else f"{h:.2f}" if h >= 1 else f"{h:.3g}"


def cost_text(h: float | None, r: dict) -> str:
    return "-" if h is None else ("~" if r["cost_estimated"] else "") + fmt_hours(h)


def ci_words(d: Delta) -> str:
    iv = d.interval
    return "" if iv is None else f" (95% CI {iv.lo:.1f} to {iv.hi:.1f})"


def verb(value: float) -> str:
    return "beat" if value > 0 else "trailed" if value < 0 else "matched"


def verdict(vs_sft: Delta, vs_control: Delta | None) -> str:
    if vs_sft.value is None:
        return "-"
    ctl = vs_control.interval if vs_control is not None else None
    if ctl is not None and ctl.lo > 0:
        return "paid"
    if ctl is not None and ctl.hi < 0:
        return "lost"
    iv = vs_sft.interval
    if iv is None:
        return "no interval"
    if iv.hi < 0:
        return "lost"
    if iv.lo > 0:
        return "beats SFT only"
    return "no clear gain"


def sentence(c: Cell, ratio: float | None, unit: str | None, kd: Cost | None, sft: Cost | None) -> str:
    """One line a team lead can read: KD vs SFT, vs the compute-matched SFT, and for how much."""
    g, ctl = c.deltas["vs_sft"], c.deltas["vs_control"]
    if g.value is None:
        missing = [n for n, side in (("KD", c.kd), ("SFT", c.sft)) if side.record is None]
        return f"{c.method} vs SFT: not evaluated yet ({' and '.join(missing) or 'a metric'} missing)."
    text = f"{c.method} {verb(g.value)} SFT by {abs(g.value):.1f} points{ci_words(g)}"
    if ctl is not None and ctl.value is not None:
        same = verb(ctl.value) == verb(g.value)
        text += (" and" if same else f" but {verb(ctl.value)}") + \
            f" the compute-matched SFT by {abs(ctl.value):.1f}{ci_words(ctl)}"
    elif c.control_note:
        text += " (it adds no student steps: SFT is its step-matched control)"
    else:
        text += " (no compute-matched SFT yet)"
    if ratio is not None:
        words = {"GPU-h": "GPU-hours", "CPU core-h": "CPU core-hours"}.get(unit or "", "device-hours")
        est = ", estimated" if (kd and kd.estimated) or (sft and sft.estimated) else ""
        text += f", for {ratio:.1f}x the {words} ({fmt_hours(kd.hours)} vs {fmt_hours(sft.hours)}{est})"
    return text + "."


def point(side: Side | None, delta: Delta | None, label: str, zero: bool = False) -> dict | None:
    """A figure point: x = the side's cost in hours, y = its gain over SFT (0 for SFT itself)."""
    if side is None or side.cost is None or side.cost.seconds is None:
        return None
    if zero:
        return {"x": side.cost.hours, "y": 0.0, "lo": None, "hi": None, "marked": False, "label": label,
                "estimated": side.cost.estimated}
    if delta is None or delta.value is None:
        return None
    iv = delta.interval
    return {"x": side.cost.hours, "y": delta.value, "lo": iv and iv.lo, "hi": iv and iv.hi,
            "marked": bool(iv and iv.excludes_zero), "label": label, "estimated": side.cost.estimated}
