"""Peak resident-memory growth of a call, for the benchmarks (CPU; CUDA uses torch's counters).

    from peakmem import measure          # benchmarks/ is on sys.path when a script there runs
    seconds, peak_mb, result = measure(fn, *args)

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


def measure(fn, *args):
    """(seconds, peak RSS growth in MB over the RSS at the call, result) of fn(*args)."""
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
