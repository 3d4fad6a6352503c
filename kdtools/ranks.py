"""Several processes, one run: which rank this is, and what only the main process does.

    torchrun --nproc_per_node 2 -m kdtools.cli --world smoke sft --model 1b --data 10k
    accelerate launch --multi_gpu --num_processes 8 -m kdtools.cli sft --model 8b --data 40k
    srun --ntasks-per-node 8 ... kdtools sft ...     # the workflow's line (kdtools.launch)

Every launcher sets RANK, WORLD_SIZE and LOCAL_RANK. The main process (rank 0) alone takes an
output's lock, decides whether the work is already done, prepares the staging folder, writes
manifests and eval JSONs and logs to W&B; the other ranks follow its decision (`from_main`).
Every rank trains, checkpoints and resumes together (kdtools.checkpoint).

Work that takes long and must happen once (a teacher's samples, a teacher cache) is done by the
main process while the others wait for its result on the file system (`wait_until`), never in a
collective: a gloo or NCCL collective times out after 30 minutes, a 70B teacher's generation
does not.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import TypeVar

from kdtools.errors import KdError

T = TypeVar("T")
FOLLOWER_EXIT = 2      # a follower's exit code when the main process refused the job (its line says why)


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def distributed() -> bool:
    return world_size() > 1


def _state():
    """accelerate's process state, created once per process (the process group is joined on the
    first call: gloo on CPU, NCCL on CUDA). The Trainer later adopts the same process group."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def barrier() -> None:
    if distributed():
        _state().wait_for_everyone()


def from_main(decide: Callable[[], T]) -> T:
    """Run `decide` on the main process only and return its result on every rank. A KdError it
    raises is raised on the main process (one line, exit 2 at the CLI) while the other ranks exit
    quietly with the same code, so the log holds the reason once."""
    if not distributed():
        return decide()
    from accelerate.utils import broadcast_object_list

    _state()
    box: list = [None]
    if is_main():
        try:
            box[0] = ("ok", decide())
        except KdError as exc:
            box[0] = ("error", exc)
    broadcast_object_list(box, from_process=0)
    status, value = box[0]
    if status == "error":
        if is_main():
            raise value
        raise SystemExit(FOLLOWER_EXIT)
    return value


def wait_until(ready: Callable[[], bool], what: str, poll_s: float = 5.0) -> None:
    """Followers: wait for the main process's file-system result (no collective, so no timeout);
    if the main process fails, the launcher (torchrun, srun --kill-on-bad-exit) stops us."""
    if is_main() or ready():
        return
    print(f"rank {rank()}: waiting for the main process to write {what}", flush=True)
    while not ready():
        time.sleep(poll_s)


def exit_main_last(code: int) -> None:
    """End every rank of a stopped run (each has written its part of the checkpoint: the ranks
    met after saving) so that the launcher sees `code`: the others exit 0 at once and the main
    process exits with `code` a moment later. `srun --kill-on-bad-exit` kills a step's remaining
    tasks as soon as one exits non-zero, so a rank exiting 75 first would have the main process
    killed (exit 15) and the retry logic would read a crash."""
    sys.stdout.flush()
    sys.stderr.flush()
    if not is_main():
        os._exit(0)
    time.sleep(2.0)
    os._exit(code)
