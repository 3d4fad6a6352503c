"""Which eval fills a report cell: every eval JSON under `<world>/evals/`, read and checked, and
the lookup that picks one per cell (`kdtools report`; the rules are in its module docstring).

    records = load_evals(world_dir / "evals")
    rec = Lookup(records).find("3b", "gkd", "general", "40k")     # a Record, or None
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from kdtools import figures
from kdtools.errors import KdError
from kdtools.evaluation.floor import NAME as FLOOR

TEACHER = "70b"
REPORT_FIELDS = ("model", "method", "task", "size", "suite", "metrics")
ANY = object()  # a `find` criterion that accepts every value
# the general-data variants the paper's cells use (workflow/rules/common.smk); any other
# (e.g. a hyperparameter sweep '10k+beta-0') never fills a paper cell
GENERAL_VARIANTS = ("init-", "teacher-", "match-")


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
    match: str | None       # the KD run a compute-matched control (sft_long) matches
    variant: str            # the `+...` part of the size folder ('' = the default cell)
    started_at: str
    metrics: dict
    benchmarks: dict        # per benchmark: its lm-eval task and metric, the metrics it scored
    samples: Path           # <suite>.samples.jsonl: the per-item scores (may be absent)


def default_init(method: str, task: str) -> str | None:
    if method == "sft":
        return "base" if task == "general" else "sft"
    return {"gkd": "sft", "seqkd": "base", "sft_long": "sft"}.get(method)


def default_teacher(method: str) -> str | None:
    return None if method in ("sft", "base", "sft_long", FLOOR) else TEACHER


def _report_schema() -> dict:
    """eval.schema.json with only the fields the report reads required (provenance may be absent)."""
    from kdtools.evaluation.results import SCHEMA

    schema = json.loads(SCHEMA.read_text())
    return {**schema, "required": list(REPORT_FIELDS)}


def load_evals(evals_dir: Path) -> list[Record]:
    """Every eval JSON under `evals_dir` (hidden files skipped), in path order."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(_report_schema())
    return [read_record(path, validator)
            for path in sorted(p for p in evals_dir.rglob("*.json") if not p.name.startswith("."))]


def read_record(path: Path, validator=None) -> Record:
    """One eval JSON, checked against the fields the report reads; a bad one is a KdError naming it."""
    if validator is None:
        import jsonschema

        validator = jsonschema.Draft202012Validator(_report_schema())
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
    return Record(
        path=path, model=doc["model"], method=method, task=task, size=size, suite=doc["suite"],
        init=doc.get("init") or default_init(method, task),
        teacher=doc.get("teacher") or default_teacher(method),
        synthetic=None if synth is None else str(synth), match=doc.get("match"),
        variant=leaf[len(size) + 1:] if leaf.startswith(f"{size}+") else "",
        started_at=str(doc.get("started_at", "")), metrics=doc["metrics"],
        benchmarks=doc.get("benchmarks") or {},
        samples=path.with_name(doc.get("samples_file") or f"{doc['suite']}.samples.jsonl"))


class Lookup:
    """Finds the one eval that fills a cell (see the module docstring for the rules)."""

    def __init__(self, records: list[Record]):
        self.records = records

    def find(self, model: str, method: str, task: str, size=ANY, init=None, teacher=None,
             synthetic=ANY, match=ANY) -> Record | None:
        init = default_init(method, task) if init is None else init
        teacher = default_teacher(method) if teacher is None else teacher
        wanted = {"model": model, "method": method, "task": task, "suite": task, "size": size,
                  "init": init if init is not None else ANY, "teacher": teacher, "synthetic": synthetic,
                  "match": match}
        if method in ("mix", "two_stage"):
            wanted["init"] = ANY  # their start is the method's own business
        hits = [r for r in self.records
                if all(v is ANY or getattr(r, k) == v for k, v in wanted.items())
                and (task != "general" or all(p.startswith(GENERAL_VARIANTS) for p in r.variant.split("+") if p))]
        return max(hits, key=lambda r: (r.variant == "", r.size == "full", figures.size_value(r.synthetic) or 0,
                                        r.started_at), default=None)
