"""What a run spent (run.json `cost`), and how a generation several runs train on is divided.

    cost = costs.measure(started)                      # at the end of a run, on the main process
    use = costs.use(world_dir, pool_dir, "annotate", rows_used=5000)   # a shared generation it read
    shares, left = costs.divide(cost_s, rows, {"a": 5000, "b": 100000})   # report time

Every training run (staging.finish) and every generation that several runs share (a SeqKD
teacher's samples, `synth`, `annotate`) records in its run.json:

    "cost": {"device": "gpu", "device_name": "NVIDIA H100 80GB HBM3", "nodes": 2,
             "devices_per_node": 8, "wall_s": 5400.0, "earlier_s": 0.0,
             "device_seconds": 86400.0, "gpu_seconds": 86400.0, "unit": "GPU-s", "uses": [...]}

- GPU-seconds are wall x GPUs per node x nodes: the GPUs the job holds, busy or not, which is what
  a cluster bills (Slurm's SLURM_GPUS_ON_NODE when set, else the GPUs visible or the ranks on the
  node, whichever is larger).
- On a CPU there are no GPU-seconds: `gpu_seconds` is null and `device_seconds` counts CPU
  core-seconds (wall x torch threads x processes on the node x nodes), `unit` "CPU core-s".
- A run stopped by a signal (exit 75) or a crash and run again resumes in the same staging folder;
  the device-seconds of its earlier invocations are kept there (resume.json `earlier_s`) and
  added. A process killed with -9 loses its own.
- The teacher. SFT has none. A GKD job's teacher forward passes (and the student's on-policy
  sampling) happen inside the job, so they are in its own device-seconds, once. Generations made
  by a teacher (SeqKD's samples, `synth`, `annotate`) are outputs of their own, with their own
  cost; a run that trains on one lists it under `uses` (what, its cost, the rows it used of how
  many) and adds none of it to its own seconds.
- Dividing a generation among the runs that train on it (`divide`, done by `kdtools report`,
  which sees every run): each generated row's cost is split equally among the runs whose data
  include that row. Subsets are nested prefixes of one pool, so a run on 5k of a 100k pool pays
  for its 5k rows, shared with every larger run; the shares of all runs plus the cost of rows
  no run has used yet add up to the generation's cost exactly.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

from kdtools import manifest

SHARED = ("each use's cost is divided among the runs that train on it, row by row: a generated row's "
          "cost is split equally among the runs whose data include it (kdtools report, tables/receipts.csv)")


def _env_int(*names: str) -> int:
    """The first of these environment variables that holds an integer (0 if none)."""
    for name in names:
        value = os.environ.get(name, "").split("(")[0]   # SLURM_* may read '8(x2)'
        if value.strip().isdigit():
            return int(value)
    return 0


def devices() -> dict:
    """The devices this job holds: kind, name, nodes, devices per node (GPUs, or CPU cores)."""
    import torch

    local = max(1, _env_int("LOCAL_WORLD_SIZE"))
    nodes = _env_int("SLURM_JOB_NUM_NODES", "SLURM_NNODES") or max(1, _env_int("WORLD_SIZE") // local)
    if torch.cuda.is_available():
        per_node = max(torch.cuda.device_count(), local, _env_int("SLURM_GPUS_ON_NODE"))
        return {"device": "gpu", "device_name": torch.cuda.get_device_name(0), "nodes": nodes,
                "devices_per_node": per_node, "unit": "GPU-s"}
    cores = torch.get_num_threads() * local
    name = platform.processor() or platform.machine() or "cpu"
    return {"device": "cpu", "device_name": f"{name} ({os.cpu_count()} cores on the host)", "nodes": nodes,
            "devices_per_node": cores, "unit": "CPU core-s"}


def measure(started: float, earlier_s: float = 0.0, uses: list[dict] | None = None) -> dict:
    """This invocation's device-seconds since `started`, plus `earlier_s` device-seconds of earlier
    invocations of the same run; `uses`: the shared generations it trained on (see `use`)."""
    held = devices()
    wall = time.time() - started
    spent = wall * held["devices_per_node"] * held["nodes"] + earlier_s
    out = {**held, "wall_s": round(wall, 3), "earlier_s": round(earlier_s, 3),
           "device_seconds": round(spent, 3), "gpu_seconds": round(spent, 3) if held["device"] == "gpu" else None}
    if uses:
        out |= {"uses": uses, "shared": SHARED}
    return out


def use(world_dir: Path, generation: Path, kind: str, rows_used: int) -> dict:
    """A shared generation (a folder whose run.json has a `cost`) that a run trains `rows_used`
    rows of: recorded in that run's `cost.uses`, its path relative to the world folder."""
    done = manifest.read_manifest(generation) or {}
    cost = done.get("cost") or {}
    try:
        where = str(Path(generation).resolve().relative_to(Path(world_dir).resolve()))
    except ValueError:
        where = str(generation)
    return {"kind": kind, "generation": where, "config_hash": done.get("config_hash"),
            "device": cost.get("device"), "device_seconds": cost.get("device_seconds"),
            "rows": generated_rows(done), "rows_used": int(rows_used)}


def uses_of(world, specs) -> list[dict]:
    """`use` of each (generation folder, kind, rows used or None = all of them) a job trains on."""
    from kdtools import paths

    world_dir = paths.world_dir(world.results, world.name)
    out = []
    for folder, kind, rows in specs:
        done = manifest.read_manifest(folder) or {}
        out.append(use(world_dir, folder, kind, rows if rows is not None else generated_rows(done) or 0))
    return out


def generated_rows(done: dict) -> int | None:
    """How many rows a generation's run.json says it made: inputs kept (synth), or prompts
    answered (annotate, SeqKD samples; a prompt's K samples are one row: runs use them together)."""
    for key in ("kept", "prompts"):
        if isinstance(done.get(key), int):
            return done[key]
    return None


def divide(cost_s: float, rows: int, used: dict) -> tuple[dict, float]:
    """Split a generation's cost over the runs that use it, row by row.

    `used`: run -> rows it uses (a prefix of the pool's `rows`; more is capped at `rows`).
    -> ({run: its share}, the cost of rows no run uses). The shares and that rest add up to
    `cost_s`. Rows [a, b) cost cost_s * (b - a) / rows and are split equally among the runs
    that use at least b rows."""
    if rows <= 0:
        raise ValueError(f"a generation of {rows} rows cannot be divided")
    cuts = sorted({min(max(int(r), 0), rows) for r in used.values()} | {0})
    share = dict.fromkeys(used, 0.0)
    for a, b in zip(cuts, cuts[1:], strict=False):
        users = [run for run, r in used.items() if min(r, rows) >= b]
        for run in users:
            share[run] += cost_s * (b - a) / rows / len(users)
    return share, cost_s * (rows - cuts[-1]) / rows
