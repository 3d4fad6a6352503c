"""Weights & Biases: on when configured, grouped so runs compare side by side.

Configured means WANDB_API_KEY is set or WANDB_MODE is online/offline (tests use offline); set
WANDB_MODE=disabled to switch it off. Every run carries experiment, student, method, size, task,
init and teacher in its config and group. The key itself is never logged or written.
"""

from __future__ import annotations

import os

from kdtools import ranks
from kdtools.world import World


def wandb_enabled() -> bool:
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("disabled", "dryrun_disabled"):
        return False
    return mode in ("online", "offline") or bool(os.environ.get("WANDB_API_KEY"))


def start_run(world: World, verb: str, dims: dict, config: dict, out_dir) -> bool:
    """Open a W&B run named after the output folder; return whether one was opened.

    `dims` are the experiment's dimensions (student, method, size, task, init, teacher): they go
    into the run config, the group (world/task/method/size) and tags, so runs line up."""
    if not wandb_enabled() or not ranks.is_main():
        return False
    import wandb

    group = "/".join(str(dims.get(k, "-")) for k in ("task", "method", "size"))
    wandb.init(
        project=os.environ.get("WANDB_PROJECT") or world.wandb.get("project", "kdtools"),
        entity=os.environ.get("WANDB_ENTITY") or world.wandb.get("entity"),
        name="/".join(str(p) for p in out_dir.parts[-5:]),
        group=f"{world.name}/{group}",
        job_type=verb,
        tags=[world.name, verb, *(f"{k}:{v}" for k, v in dims.items() if v is not None)],
        config={"world": world.name, "verb": verb, **dims, "kdtools": config},
        dir=os.environ.get("WANDB_DIR") or str(world.results),
        reinit="finish_previous",
    )
    return True


def finish_run(summary: dict) -> None:
    import wandb

    if wandb.run is not None:
        wandb.run.summary.update(summary)
        wandb.finish()
