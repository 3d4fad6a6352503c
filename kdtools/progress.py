"""Progress lines for long generation and evaluation in logs that are not a terminal (Slurm's,
Snakemake's): what is done, the rate, the time left, every KDTOOLS_PROGRESS_SECONDS (60 s).

    annotate: 2,048/100,000 prompts (2.0%) in 6m24s, 5.33 prompts/s, ETA 5h06m

On a terminal the stages show their own progress bars instead (rich, lm-eval's tqdm), so these
lines stay out of the way; KDTOOLS_PROGRESS_SECONDS set explicitly turns them on everywhere.
"""

from __future__ import annotations

import os
import sys
import time

DEFAULT_EVERY_S = 60.0


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class Lines:
    """Counts work done out of `total` and prints a line at most every `every_s` seconds (and at
    the end) to stderr, when stderr is not a terminal or KDTOOLS_PROGRESS_SECONDS is set."""

    def __init__(self, label: str, total: int, unit: str = "prompts", done: int = 0,
                 every_s: float | None = None, stream=None):
        env = os.environ.get("KDTOOLS_PROGRESS_SECONDS")
        self.stream = stream or sys.stderr
        self.on = env is not None or not self.stream.isatty()
        self.every_s = every_s if every_s is not None else float(env or DEFAULT_EVERY_S)
        self.label, self.total, self.unit = label, total, unit
        self.start_done = self.done = done
        self.started = self.last = time.monotonic()
        self.shown = done          # the count the last line showed
        if self.on and total:
            self._print(f"{self.label}: {done:,}/{total:,} {unit} to start with")

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if self.on and now - self.last >= self.every_s:
            self.last, self.shown = now, self.done
            self._print(self.line(now))

    def line(self, now: float | None = None) -> str:
        elapsed = (now or time.monotonic()) - self.started
        new = self.done - self.start_done
        rate = new / elapsed if elapsed > 0 else 0.0
        share = f" ({100 * self.done / self.total:.1f}%)" if self.total else ""
        eta = f", ETA {_duration((self.total - self.done) / rate)}" if rate > 0 and self.total else ""
        return (f"{self.label}: {self.done:,}/{self.total:,} {self.unit}{share} in {_duration(elapsed)}, "
                f"{rate:.2f} {self.unit}/s{eta}")

    def close(self) -> None:
        if self.on and self.done != self.shown:
            self._print(self.line())

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
