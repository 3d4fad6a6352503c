"""Model output folders for the training stages (sft, gkd, seqkd): lock, stage, publish, skip.

A stage trains into a hidden `.<name>.partial` sibling of its output folder, writes the model,
the tokenizer and finally run.json there, then renames it into place. A folder with run.json is
finished work; one without is debris from a crash and is replaced. The staging folder of a run
stopped midway keeps its checkpoints for a rerun of the same config (kdtools.checkpoint); any
other config starts it afresh. A lock file beside the output stops two jobs writing one folder.
With several ranks, the main process alone locks, decides and prepares (`claim`); the others
train into the folder it names.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import time
from collections.abc import Callable
from contextlib import ExitStack, contextmanager
from pathlib import Path

from rich.console import Console

from kdtools import manifest, paths, ranks
from kdtools.errors import KdError

console = Console(stderr=True, soft_wrap=True)


def check_writable(out: Path) -> None:
    """Fail early (before any model loads) when the output folder cannot be written."""
    parent = Path(out).parent
    blocking = next((p for p in [parent, *parent.parents] if p.exists()), parent)
    if not blocking.is_dir():
        raise KdError(f"cannot write to {parent}: {blocking} is a file, not a folder; pick another --out")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        probe = parent / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise KdError(f"cannot write to {parent} ({exc.strerror}): pick another --out or fix permissions") from None


def already_done(out: Path, config: dict, force: bool) -> bool:
    """True when `out` holds a finished run of this exact config (and --force is not given).
    A finished run of a different config is an error unless forced: never overwrite silently."""
    done = manifest.read_manifest(out)
    if done is None:
        return False
    if done.get("config_hash") == manifest.config_hash(config):
        if not force:
            console.print(f"[green]up to date:[/] {out} (delete it or pass --force to retrain)")
        return not force
    if not force:
        raise KdError(
            f"{out} holds a finished run with a different config: pass --force to replace it "
            "or --out to write elsewhere"
        )
    return False


RESUME_FILE = "resume.json"


def partial_dir(out: Path, config: dict) -> Path:
    """The staging folder next to `out`: kept when an interrupted run of this same config left
    it (its checkpoints resume the run), otherwise emptied and stamped with the config's hash."""
    partial = Path(out).parent / f".{Path(out).name}.partial"
    stamp = manifest.read_json(partial / RESUME_FILE) or {}
    if stamp.get("config_hash") == manifest.config_hash(config):
        return partial
    if partial.exists():
        shutil.rmtree(partial)
    manifest.atomic_write_json(partial / RESUME_FILE, {"config_hash": manifest.config_hash(config)})
    return partial


@contextmanager
def locked(out: Path):
    """Hold an exclusive lock on `out` (a `.<name>.lock` file beside it) while writing it. A second
    job aimed at the same output fails at once with one line instead of corrupting the first's
    work. POSIX record locks: released by the kernel when the holder dies, and honoured by NFSv4
    and Lustre, so it also guards jobs on different nodes."""
    path = Path(out).parent / f".{Path(out).name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise KdError(f"{out} is being written by {holder} (lock {path}): wait for that job to "
                          "finish or stop it, then rerun") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"kdtools pid {os.getpid()} on {socket.gethostname()}")
        handle.flush()
        try:
            yield
        finally:
            fcntl.lockf(handle, fcntl.LOCK_UN)


@contextmanager
def claim(out: Path, config: Callable[[], dict], force: bool, prepare: Callable[[], None] | None = None,
          prepared: Callable[[], bool] | None = None):
    """The start of every training stage, on every rank: yields the staging folder to train into,
    or None when `out` already holds a finished run of `config()` (a job's bound `config`, read
    after `prepare`: the config hashes the files it makes). The main process takes the lock
    (held until the block ends) and runs `prepare` (e.g. the teacher's samples) before the ranks
    meet, while the others wait until `prepared()` holds; then the main process decides and
    prepares the staging folder, and every rank follows. A KdError on the main process stops it
    with exit 2 (the launcher stops the others; after the ranks meet, they exit 2 too)."""
    with ExitStack() as held:
        if ranks.is_main():
            held.enter_context(locked(out))
            if prepare is not None:
                prepare()
        elif prepared is not None:
            ranks.wait_until(prepared, f"what {Path(out).name} trains on")
        partial = ranks.from_main(lambda: None if already_done(out, config(), force) else partial_dir(out, config()))
        try:
            yield partial
        except BaseException:
            if partial is not None and ranks.is_main():
                keep_spent(partial)
            raise


_BEGUN: dict[Path, float] = {}   # staging folder -> when its training began in this process


def begin(partial: Path) -> float:
    """Training into `partial` starts now: the time its cost counts from (returned)."""
    _BEGUN[Path(partial)] = now = time.time()
    return now


def keep_spent(partial: Path) -> None:
    """A run stopped midway (signal, crash): add the device-seconds since its training began to the
    staging folder's resume.json, so the run that resumes there counts them (kdtools.costs)."""
    started = _BEGUN.pop(Path(partial), None)
    stamp = manifest.read_json(partial / RESUME_FILE)
    if started is None or stamp is None:
        return
    from kdtools import costs

    spent = costs.measure(started)["device_seconds"]
    manifest.atomic_write_json(partial / RESUME_FILE, {**stamp, "earlier_s": stamp.get("earlier_s", 0.0) + spent})


def finish(partial: Path, out: Path, tokenizer, verb: str, config: dict, started: float,
           metrics: dict, dims: dict, wandb_on: bool, world=None, uses: list[dict] | None = None) -> dict:
    """The last steps of every training stage, in this order: tokenizer beside the weights, the
    trainer's scratch removed, W&B closed, the cost (kdtools.costs: this invocation's and earlier
    ones' device-seconds, the shared generations it trained on), the model card, run.json written
    (last), the folder moved into place."""
    from kdtools import costs, modelcard, tracking

    tokenizer.save_pretrained(str(partial))
    shutil.rmtree(partial / "trainer", ignore_errors=True)
    earlier = (manifest.read_json(partial / RESUME_FILE) or {}).get("earlier_s", 0.0)
    (partial / RESUME_FILE).unlink(missing_ok=True)
    run = tracking.current_run() if wandb_on else None   # where `kdtools eval` adds its scores
    if wandb_on:
        tracking.finish_run({k: v for k, v in metrics.items() if k != "loss_curve"})
    payload = manifest.run_payload(verb, config, started, metrics=metrics, dims=dims, wandb=run,
                                   cost=costs.measure(started, earlier, uses))
    _BEGUN.pop(Path(partial), None)
    if world is not None:
        modelcard.refresh(partial, world, payload, Path(out).name)
    manifest.atomic_write_json(Path(partial) / paths.MANIFEST, payload)
    publish(partial, out)
    return payload


def publish(partial: Path, out: Path) -> None:
    """Move a complete staging folder (run.json already inside) into place."""
    if Path(out).exists():
        shutil.rmtree(out)
    os.replace(partial, out)
