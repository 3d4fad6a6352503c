"""Weights & Biases: on when configured, grouped so runs compare side by side, and one run per
output however often its job is preempted and retried.

Configured means WANDB_API_KEY is set or WANDB_MODE is online/offline (tests use offline); set
WANDB_MODE=disabled to switch it off. Only the main process logs. Every run carries experiment,
student, method, size, task, init and teacher in its config and group. The key itself is never
logged or written.

A training run's id is derived from its output folder and config hash (`run_id`), with
resume="allow": a job preempted and retried by Snakemake or requeued by Slurm continues the same
W&B run. Under a sweep the agent names the run (WANDB_RUN_ID): that id is kept, and a run stopped
by a signal is marked preempting, so the sweep requeues it and the next agent resumes it.
`kdtools eval` adds its scores to the summary of the run that trained the model (its id is in
the model's run.json), so a sweep or a group compares runs on the paper's metrics, not only on
the training loss.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from kdtools import ranks
from kdtools.world import World


def wandb_enabled() -> bool:
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("disabled", "dryrun_disabled"):
        return False
    return mode in ("online", "offline") or bool(os.environ.get("WANDB_API_KEY"))


def run_id(out_dir, config_hash: str) -> str:
    """The W&B id of the run that writes `out_dir` with this config: the same for every retry
    (W&B ids: letters, digits, dashes; stable across machines sharing the results folder)."""
    where = hashlib.sha256(str(Path(out_dir).resolve()).encode()).hexdigest()[:10]
    return f"{config_hash}-{where}"


def _project(world: World) -> dict:
    return {"project": os.environ.get("WANDB_PROJECT") or world.wandb.get("project", "kdtools"),
            "entity": os.environ.get("WANDB_ENTITY") or world.wandb.get("entity")}


def group_of(world: World, dims: dict) -> str:
    return f"{world.name}/" + "/".join(str(dims.get(k, "-")) for k in ("task", "method", "size"))


def start_run(world: World, verb: str, dims: dict, config: dict, out_dir) -> bool:
    """Open (or resume) the W&B run of the output folder `out_dir`; return whether one is open.

    `dims` are the experiment's dimensions (student, method, size, task, init, teacher): they go
    into the run config, the group (world/task/method/size) and tags, so runs line up."""
    if not wandb_enabled() or not ranks.is_main():
        return False
    import wandb

    from kdtools.manifest import config_hash

    swept = bool(os.environ.get("WANDB_SWEEP_ID"))
    wandb.init(
        **_project(world),
        id=None if swept else run_id(out_dir, config_hash(config)),
        resume="allow",
        name="/".join(str(p) for p in Path(out_dir).parts[-5:]),
        group=group_of(world, dims),
        job_type=verb,
        tags=[world.name, verb, *(f"{k}:{v}" for k, v in dims.items() if v is not None)],
        config={"world": world.name, "verb": verb, **dims, "kdtools": config},
        dir=os.environ.get("WANDB_DIR") or str(world.results),
        reinit="finish_previous",
    )
    return True


def current_run() -> dict | None:
    """Where the open run lives (for run.json): {id, project, entity}; None when none is open."""
    if not wandb_enabled() or not ranks.is_main():
        return None
    import wandb

    run = wandb.run
    return None if run is None else {"id": run.id, "project": run.project, "entity": run.entity or None}


def finish_run(summary: dict) -> None:
    import wandb

    if wandb.run is not None:
        wandb.run.summary.update(summary)
        wandb.finish()


def preempted() -> None:
    """A signal stopped training (checkpoint saved): tell a sweep to requeue this run, and close
    it so the retry can resume it."""
    if not wandb_enabled() or not ranks.is_main():
        return
    import wandb

    if wandb.run is not None:
        wandb.mark_preempting()
        wandb.finish(exit_code=75)


def log_eval(world: World, trained: dict | None, dims: dict, suite: str, metrics: dict, eval_id: str,
             out_dir) -> None:
    """Add an evaluation's scores (eval/<suite>/<metric>) to the summary of the run that trained
    the model (`trained`: the model's run.json), in its group; a base model's evaluation gets a
    run of its own (`eval_id`) in the group of its cell."""
    if not wandb_enabled() or not ranks.is_main():
        return
    import wandb

    where = (trained or {}).get("wandb") or {}
    project = _project(world)
    project.update({k: where[k] for k in ("project", "entity") if where.get(k)})
    wandb.init(**project, id=where.get("id") or eval_id, resume="allow", group=group_of(world, dims),
               job_type=None if where.get("id") else "eval", dir=os.environ.get("WANDB_DIR") or str(world.results),
               config={"world": world.name, **dims}, reinit="finish_previous")
    scores = {f"eval/{suite}/{name}": value for name, value in metrics.items() if value is not None}
    wandb.run.summary.update(scores)
    wandb.log(scores)
    wandb.finish()
