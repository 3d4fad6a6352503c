"""Start-up and orchestration: wall time of `kdtools --help` and of the paper DAG's dry run.

    PYTHONPATH=. .venv/bin/python benchmarks/startup.py [--repeats 5]

(a) `kdtools --help` (the console script next to the interpreter; `python -m kdtools.cli --help`
    where it is not installed): the CLI imports no torch/transformers/trl at start (issue target:
    under 0.5 s).
(b) `snakemake -n all_tables --config world=paper --profile profiles/slurm`: the whole paper grid
    (316 jobs) expanded and resolved against an empty results folder, nothing submitted (target:
    under 10 s).
Each runs `--repeats` times, alternating; min, median and max are printed as JSON (last line).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed(cmd, env) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    bindir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    script = bindir / "kdtools"
    help_cmd = [str(script), "--help"] if script.exists() else [sys.executable, "-m", "kdtools.cli", "--help"]
    times = {"help": [], "dry_run": []}
    with tempfile.TemporaryDirectory() as tmp:
        dry_cmd = [str(bindir / "snakemake"), "all_tables", "-n", "-q", "--config", "world=paper",
                   f"results={tmp}", "--profile", "profiles/slurm"]
        timed(help_cmd, env)  # warm the file cache once
        for _ in range(args.repeats):
            times["help"].append(timed(help_cmd, env))
            times["dry_run"].append(timed(dry_cmd, env))

    def stats(values):
        return {"min": round(min(values), 3), "median": round(statistics.median(values), 3),
                "max": round(max(values), 3)}

    print(json.dumps({"help_s": stats(times["help"]), "help_cmd": " ".join([Path(help_cmd[0]).name, *help_cmd[1:]]),
                      "paper_dry_run_s": stats(times["dry_run"]), "repeats": args.repeats,
                      "targets_s": {"help": 0.5, "paper_dry_run": 10},
                      "machine": f"CPU, {os.cpu_count()} cores (shared)"}))


if __name__ == "__main__":
    main()
