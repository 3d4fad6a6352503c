"""Time and peak memory of a call, for the benchmarks, on a CPU or a CUDA device.

    from peakmem import measure, timed   # benchmarks/ is on sys.path when a script there runs
    seconds, peak_mb, result = measure(fn, *args)                   # CPU: peak RSS growth
    seconds, peak_mb, result = measure(fn, *args, device="cuda")    # torch.cuda.max_memory_allocated
    per_call_seconds = timed(fn, device="cuda", reps=5, warmup=2)   # CUDA events after warm-up

On CUDA, time comes from CUDA events recorded around the call (so queued GPU work is counted)
and memory from torch's allocator: the peak of `max_memory_allocated` during the call over what
was allocated before it.

The kernel's high-water mark (VmHWM) is reset before the call and read after it; where /proc
does not allow the reset, a psutil thread samples the RSS every millisecond instead (both are
taken, the larger wins). Run the measured code in a fresh process with glibc's mmap threshold
lowered (MALLOC_MMAP_THRESHOLD_=65536, see `BENCH_ENV`) so freed tensors go back to the OS and one
measurement's heap does not hide the next one's peak.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

BENCH_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "TRL_EXPERIMENTAL_SILENCE": "1",
             "TOKENIZERS_PARALLELISM": "false", "WANDB_MODE": "disabled"}


def _status_mb(field):
    return int(re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024


def _reset_high_water_mark():
    """Reset VmHWM (Linux >= 4.0); False where /proc does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def is_cuda(device) -> bool:
    return str(device).startswith("cuda")


def sync(device) -> None:
    if is_cuda(device):
        import torch

        torch.cuda.synchronize(device)


class Clock:
    """Elapsed seconds between marks: CUDA events on a GPU (no sync until read), perf_counter on a CPU."""

    def __init__(self, device):
        self.cuda = is_cuda(device)
        self.marks = []

    def mark(self):
        if self.cuda:
            import torch

            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())

    def intervals(self) -> list[float]:
        """Seconds between consecutive marks (waits for the GPU)."""
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            return [a.elapsed_time(b) / 1e3 for a, b in zip(self.marks, self.marks[1:], strict=False)]
        return [b - a for a, b in zip(self.marks, self.marks[1:], strict=False)]


def timed(fn, device="cpu", reps=5, warmup=1, before=None) -> list[float]:
    """Seconds of each of `reps` calls of fn() after `warmup` untimed ones; `before()` runs
    untimed before every call (e.g. clearing gradients)."""
    for _ in range(warmup):
        if before:
            before()
        fn()
    sync(device)
    out = []
    for _ in range(reps):
        if before:
            before()
        clock = Clock(device)
        clock.mark()
        fn()
        clock.mark()
        out.extend(clock.intervals())
    return out


def measure(fn, *args, device="cpu"):
    """(seconds, peak memory growth in MB during the call, result) of fn(*args): RSS on a CPU,
    torch.cuda.max_memory_allocated over the memory allocated at the call on CUDA."""
    if is_cuda(device):
        import torch

        sync(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        clock = Clock(device)
        clock.mark()
        result = fn(*args)
        clock.mark()
        seconds = clock.intervals()[0]
        return seconds, (torch.cuda.max_memory_allocated(device) - base) / 2**20, result
    import psutil

    proc = psutil.Process()
    base = proc.memory_info().rss
    exact = _reset_high_water_mark()
    peak, stop = [base], threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    result = fn(*args)
    seconds = time.perf_counter() - start
    stop.set()
    sampler.join()
    peak_mb = (peak[0] - base) / 2**20
    if exact:
        peak_mb = max(peak_mb, _status_mb("VmHWM") - base / 2**20)
    return seconds, peak_mb, result
