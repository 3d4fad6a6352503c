"""Process start and imports of one workflow job, per verb: what every toy job pays before work.

    PYTHONPATH=. .venv/bin/python benchmarks/job_start.py [--repeats 3] [--results DIR]

Builds the smoke world once (under --results, default a temp folder), then for each verb runs
the job a workflow rule would run, as its own process, `--repeats` times:
  sft (1 step), gkd (1 step), eval (--limit 2 of the general suite), data --task arc.
Each run goes through `python -X importtime -m kdtools.cli ...` on one thread (the toy rules'
OMP_NUM_THREADS=1). Printed per verb (min over repeats): the wall time of the process, the time
spent importing modules (the sum of -X importtime's top-level entries: every import the process
did, whoever asked for it), and the heaviest top-level packages. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)$")


def verbs(results: str) -> dict[str, list[str]]:
    models = Path(results) / "smoke" / "models"
    return {
        "sft": ["sft", "--model", "1b", "--data", "10k", "--max-steps", "1", "--force",
                "--out", str(models / "bench-sft")],
        "gkd": ["gkd", "--student", "1b", "--data", "10k", "--max-steps", "1", "--force",
                "--out", str(models / "bench-gkd")],
        "eval": ["eval", "--model", "1b", "--suite", "general", "--limit", "2", "--force",
                 "--out", str(Path(results) / "bench-eval" / "general.json")],
        "data": ["data", "--task", "arc", "--force"],
    }


def imports(stderr: str) -> tuple[float, dict[str, float]]:
    """(seconds importing, {top-level package: seconds}) from -X importtime's lines."""
    total, per = 0.0, defaultdict(float)
    for line in stderr.splitlines():
        m = LINE.match(line)
        if m and len(m.group(3)) == 1:          # a top-level import (one space of indent)
            seconds = int(m.group(2)) / 1e6
            total += seconds
            per[m.group(4).split(".")[0]] += seconds
    return total, dict(per)


def run(args: list[str], results: str, env: dict) -> tuple[float, float, dict]:
    cmd = [sys.executable, "-X", "importtime", "-m", "kdtools.cli", "--world", "smoke",
           "--results", results, *args]
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    total, per = imports(proc.stderr)
    return wall, total, per


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--results", default=None)
    args = p.parse_args(argv)
    results = args.results or tempfile.mkdtemp(prefix="kdtools-jobstart-")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "KDTOOLS_COMET_PYTHON": "none",
           "PYTHONPATH": str(REPO)}
    setup = [["toy"], ["data"], ["data", "--task", "arc"], ["sft", "--model", "1b", "--data", "10k"],
             ["sft", "--model", "70b", "--data", "10k"]]
    for a in setup:
        subprocess.run([sys.executable, "-m", "kdtools.cli", "--world", "smoke", "--results", results, *a],
                       cwd=REPO, env=env, check=True, capture_output=True)
    out = {}
    for verb, a in verbs(results).items():
        runs = [run(a, results, env) for _ in range(args.repeats)]
        wall = min(r[0] for r in runs)
        best = min(runs, key=lambda r: r[1])
        top = sorted(best[2].items(), key=lambda kv: -kv[1])[:8]
        out[verb] = {"wall_s": round(wall, 2), "imports_s": round(best[1], 2),
                     "top": {k: round(v, 2) for k, v in top}}
        print(f"{verb:5s} process {wall:5.2f} s, imports {best[1]:5.2f} s: "
              + ", ".join(f"{k} {v:.2f}" for k, v in top), flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
