"""Preemption-safe training: checkpoints on SIGUSR1/SIGTERM and every `train.save_steps`, a
resume that continues exactly where the run stopped, and a stop on a non-finite loss.

    kdtools sft --model 70b --data 40k     # signalled by Slurm's --signal=TERM@600: exit 75
    kdtools sft --model 70b --data 40k     # the same command again: resumes from the checkpoint

Slurm sends SIGTERM minutes before the time limit (profiles/slurm asks for it with
--signal=TERM@600), on preemption and on `scancel`; SIGUSR1 does the same for sbatch scripts
that prefer it (`--signal=B:USR1@600` plus a trap that forwards it). The handler only records
the signal; at the end of the current
optimizer step the trainer saves a full checkpoint (model, optimizer, scheduler, RNG states,
position in the data) into `<output>.partial/trainer/checkpoint-<step>` and stops, and the
process exits with code 75 (EX_TEMPFAIL, errors.PREEMPTED_EXIT) so Snakemake's retry or Slurm's requeue runs it
again. A checkpoint counts only once its `trainer_state.json` (the last file transformers
writes) parses; anything else under the staging folder is debris of a kill and is removed.
"""

from __future__ import annotations

import math
import shutil
import signal
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from transformers import TrainerCallback

from kdtools import manifest, ranks
from kdtools.errors import KdError, Preempted, disk_full_or

console = Console(stderr=True, soft_wrap=True)
SIGNALS = (signal.SIGUSR1, signal.SIGTERM)
STATE_FILE = "trainer_state.json"   # transformers writes it last into a checkpoint folder


class NonFiniteLoss(KdError):
    """The loss or the gradients became NaN/inf: retrying the same config would do it again."""


def step_of(folder: Path) -> int:
    return int(folder.name.rsplit("-", 1)[1])


def complete(folder: Path) -> bool:
    return manifest.read_json(folder / STATE_FILE) is not None


def last_checkpoint(trainer_dir: Path) -> Path | None:
    """The newest complete checkpoint under `trainer_dir`; incomplete ones (killed while saving)
    are deleted (by the main process) so that transformers never sees them."""
    found = sorted(Path(trainer_dir).glob("checkpoint-*"), key=step_of) if Path(trainer_dir).is_dir() else []
    done = [c for c in found if complete(c)]
    for debris in (c for c in found if c not in done and ranks.is_main()):
        console.print(f"[yellow]removing incomplete checkpoint[/] {debris}")
        shutil.rmtree(debris, ignore_errors=True)
    return done[-1] if done else None


class Guard(TrainerCallback):
    """Records SIGUSR1/SIGTERM and turns them into save-and-stop at the end of the step; raises
    NonFiniteLoss before an optimizer step would write NaN/inf into the weights."""

    def __init__(self):
        self.signal: str | None = None
        self.began = False
        self.last_save: int | None = None

    def handle(self, signum, frame) -> None:
        self.signal = signal.Signals(signum).name
        console.print(f"[yellow]{self.signal}: saving a checkpoint at the end of this step[/]")

    def on_train_begin(self, args, state, control, **kwargs):
        self.began = True

    def on_step_end(self, args, state, control, **kwargs):
        self.agree(args)
        if self.signal:
            control.should_save = True
            control.should_training_stop = True
        elif state.global_step >= state.max_steps:
            control.should_save = False  # the finished model is saved by the stage, not as a checkpoint

    def agree(self, args) -> None:
        """Under several ranks, stop when any rank was signalled: all must save together (a rank
        that saved alone would wait for the others forever)."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return
        import torch

        flag = torch.tensor([1 if self.signal else 0], device=args.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() and not self.signal:
            self.signal = "SIGTERM (another rank)"

    def on_save(self, args, state, control, **kwargs):
        self.last_save = state.global_step

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        import torch

        grads = [p.grad for p in model.parameters() if p.grad is not None] if model is not None else []
        if grads and not torch.isfinite(torch.nn.utils.get_total_norm(grads)):
            raise NonFiniteLoss(self.nonfinite_message(args, state.global_step + 1, "gradients"))

    def on_log(self, args, state, control, logs=None, **kwargs):
        # Under DeepSpeed the gradients are sharded away from the parameters: the loss tells.
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            raise NonFiniteLoss(self.nonfinite_message(args, state.global_step, "loss"))

    def nonfinite_message(self, args, step: int, what: str) -> str:
        last = last_checkpoint(Path(args.output_dir))
        kept = (f"the last good checkpoint ({last}) is kept and a rerun of the same config resumes "
                "from it" if last else "no checkpoint had been saved (set train.save_steps to keep one)")
        return (f"non-finite {what} at step {step}: training stopped before the weights were "
                f"updated; {kept}; lower --lr or check the data for broken rows")


@contextmanager
def signals_to(guard: Guard):
    """While training: SIGUSR1/SIGTERM only set a flag (the step finishes, then it saves)."""
    previous = {s: signal.signal(s, guard.handle) for s in SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def train(trainer, guard: Guard, trainer_dir: Path):
    """trainer.train(), resumed from the last complete checkpoint under `trainer_dir` if any.
    Raises Preempted when a signal stopped it (checkpoint saved), KdError when a checkpoint
    cannot be loaded or the disk fills."""
    resume = last_checkpoint(trainer_dir)
    if resume:
        console.print(f"[bold]resuming[/] from {resume} (step {step_of(resume)})")
    try:
        with signals_to(guard):
            result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    except KdError:
        raise
    except Exception as exc:
        if resume and not guard.began:
            raise KdError(f"checkpoint {resume} cannot be loaded ({type(exc).__name__}: "
                          f"{str(exc)[:160]}): delete it and rerun to train from the start") from exc
        raise disk_full_or(exc, trainer_dir) from exc
    if guard.signal:
        ranks.barrier()  # every rank's part of the checkpoint is written before any rank exits
        from kdtools import tracking

        tracking.preempted()
        raise Preempted(f"stopped by {guard.signal} at step {trainer.state.global_step}: checkpoint "
                        f"saved under {trainer_dir}; rerun the same command to resume")
    return result


def save_model(trainer, folder: Path) -> None:
    """The finished model into the staging folder; a full disk becomes one KdError line."""
    try:
        trainer.save_model(str(folder))
    except Exception as exc:
        raise disk_full_or(exc, folder) from exc
