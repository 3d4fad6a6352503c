"""`wandb agent` for the loopback cluster, where no W&B server answers (KDTOOLS_SWEEP_AGENT in
sweeps/agent.sbatch). It takes one grid point of sweeps/gkd.yaml, expands the sweep's command as
the agent does (${env}, ${args}) and runs it through wandb's own AgentProcess with
forward_signals=True, the code that `wandb agent --forward-signals` runs, then exits with the
run's code. What a CPU node cannot honour is overridden here, as on a command line: the ranks
per node (SWEEP_TASKS_PER_NODE) and the GPUs (dropped).

    python tests/slurm/sweep_agent.py ENTITY/PROJECT/SWEEP_ID
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import yaml
from wandb.wandb_agent import AgentProcess

POINT = {"lmbda": 0.0, "beta": 0.9, "temperature": 0.7}


def command() -> list[str]:
    sweep = yaml.safe_load(Path("sweeps/gkd.yaml").read_text())
    args = [f"--{name}={value}" for name, value in POINT.items()]
    expanded = []
    for part in sweep["command"]:
        if part == "${env}":
            expanded.append("/usr/bin/env")
        elif part == "${args}":
            expanded += args
        elif part.startswith("--tasks-per-node="):
            expanded.append(f"--tasks-per-node={os.environ['SWEEP_TASKS_PER_NODE']}")
        elif part != "--gpus":
            expanded.append(part)
    return expanded


def main() -> int:
    run = AgentProcess(env=dict(os.environ), command=command(), forward_signals=True)
    while (code := run.poll()) is None:
        time.sleep(0.5)
    return code


if __name__ == "__main__":
    sys.exit(main())
