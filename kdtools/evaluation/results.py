"""The eval stage's outputs: `<suite>.json` (schema: workflow/schemas/eval.schema.json,
docs/eval.md), `<suite>.samples.jsonl` beside it, and the summary table printed at the end.

The samples are written first and the JSON last, each atomically, so an existing JSON means
the whole evaluation completed (and its `samples_file` is there).
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from kdtools import manifest

SCHEMA_VERSION = 1
SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "eval.schema.json"
# the paper's column order (Tables 1 and 3), then the domain tasks' metrics
METRIC_ORDER = ("bbh", "gpqa", "ifeval", "infobench", "mmlu_pro", "comet", "chrf", "rougeL", "accuracy")


def samples_path(out: Path) -> Path:
    return out.with_name(out.name[: -len(".json")] + ".samples.jsonl")


def ordered(metrics: dict) -> dict:
    known = [k for k in METRIC_ORDER if k in metrics]
    return {k: metrics[k] for k in known + sorted(set(metrics) - set(known))}


def build_payload(job, metrics: dict, benchmarks: dict, missing: dict, backend: str, started: float,
                  judge: dict | None) -> dict:
    """The `<suite>.json` document (see docs/eval.md for every field)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "world": job.world.name,
        "model": job.model,
        "method": job.method,
        "task": job.task,
        "size": job.size,
        "suite": job.suite,
        **job.extra_dims(),
        "weights": job.weights,
        "metrics": ordered(metrics),
        "missing": missing,
        "benchmarks": benchmarks,
        "limit": job.limit,
        "backend": backend,
        "judge": judge,
        "samples_file": samples_path(job.out).name,
        "config": job.config(),
        "config_hash": manifest.config_hash(job.config()),
        "versions": manifest.versions(),
        "git_commit": manifest.git_commit(),
        "host": socket.gethostname(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "wall_time_s": round(time.time() - started, 3),
    }


def write(out: Path, payload: dict, samples: list[dict]) -> None:
    """Samples first, the JSON last (both atomic)."""
    lines = "".join(json.dumps(s, ensure_ascii=False, default=str) + "\n" for s in samples)
    manifest.atomic_write_text(samples_path(out), lines)
    manifest.atomic_write_json(out, payload)


def read(out: Path) -> dict | None:
    try:
        return json.loads(Path(out).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def validate(payload: dict) -> None:
    """Check a result against eval.schema.json (tests and `kdtools eval` both use it)."""
    import jsonschema

    jsonschema.validate(payload, json.loads(SCHEMA.read_text()))


def print_table(payload: dict, console: Console) -> None:
    """One row per metric: value, examples, and what it is (lm-eval task / scorer)."""
    title = (f"{payload['model']} · {payload['method']} · {payload['task']} · {payload['size']}"
             f" — suite {payload['suite']}" + (f" (limit {payload['limit']})" if payload["limit"] else ""))
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    table.add_column("score (0-100)", justify="right")
    table.add_column("n", justify="right")
    table.add_column("from")
    for name, value in payload["metrics"].items():
        bench = next((b for b in payload["benchmarks"].values() if name in b["metrics"]), {})
        shown = "—" if value is None else f"{value:.2f}"
        note = payload["missing"].get(name)
        table.add_row(name, shown, str(bench.get("n", "")),
                      f"[yellow]{note}[/]" if note else bench.get("source", ""))
    console.print(table)
