"""The project's error types: KdError for problems a user can fix, Preempted for a stop on signal.

The CLI turns a KdError into a single red line and exit code 2, always before any expensive
work (model loading, training) starts, so that nothing already written is touched.
"""

import errno
from pathlib import Path

DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class KdError(Exception):
    """A user-facing problem. The message names the problem and the fix, on one line."""


PREEMPTED_EXIT = 75  # EX_TEMPFAIL: Snakemake retries / Slurm requeues, and the rerun resumes


class Preempted(Exception):
    """Training stopped on SIGUSR1/SIGTERM after saving a checkpoint; the same command resumes.
    The CLI turns it into one line and exit code PREEMPTED_EXIT (not 2: nothing is wrong)."""


def disk_full_or(exc: BaseException, where: Path | str) -> BaseException:
    """A KdError naming the folder when `exc` is the disk (or a quota, or the file size limit)
    filling up; `exc` itself otherwise. safetensors reports it as a message, not an OSError."""
    text = str(exc)
    full = (isinstance(exc, OSError) and exc.errno in DISK_FULL) or any(
        s in text for s in ("No space left", "Disk quota", "File too large", "StorageFull", "FileTooLarge"))
    if not full:
        return exc
    return KdError(f"the disk filled while writing under {where} ({text[:120].strip()}): free space "
                   "there and rerun; finished outputs are untouched and the last checkpoint is kept")
