"""One table of kdtools' speed on a device: the loss, a GKD step against TRL, and generation.

    make bench-gpu      # = python benchmarks/device_table.py --device cuda   (one H100/H200, < 6 min)
    make bench-cpu      # = .venv/bin/python benchmarks/device_table.py --device cpu --tiny

Runs, each in its own process (so no part's memory or compiled graphs carry into another):
  1. loss  benchmarks/fused_loss.py at Liger-Kernel's benchmark size (H 4096, V 128256, 8,192
           tokens, bf16): TRL on full logits, kdtools' fused loss at its CUDA chunk and at the CPU
           rule's chunk, liger-kernel when installed; gradient error against float64 and the
           loss rule's pick (kdtools.gkd_trainer.cuda_loss_impl);
  2. gkd   benchmarks/gkd_step.py workers: random-init Llama-3.2-1B-shaped student and
           3B-shaped teacher, bf16, sequence 1024 (896-token prompts), batch 8, 128 new tokens,
           TRL's GKDTrainer vs KdGKDTrainer at lambda 1 (every step on-policy) and lambda 0 (none);
           kdtools also with its static sampling cache off. Tokens/s at lambda 0.5 is
           (tok_on + tok_off) / (t_on + t_off) from those per-step means, as gkd_step.py computes it;
  3. gen   benchmarks/generation.py --shape 1b: the engine's HF backend vs model.generate, batch
           64 x 128 new tokens, greedy and temperature 1.
--tiny shrinks every size (a CPU check of the same code). Models come from configs: no network,
no files but temporary ones. Prints each part's JSON lines, then the table; --out FILE also
writes every JSON line there. Not a test: run it by hand and copy the table into the README.
"""

from __future__ import annotations

import argparse
import importlib.metadata as meta
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

FULL = {
    "loss": ["--tokens", "8192", "--vocab", "128256", "--hidden", "4096", "--dtype", "bfloat16", "--reps", "5"],
    "gkd": ["--student-shape", "2048,16,32,8,8192", "--teacher-shape", "3072,28,24,8,8192", "--vocab", "128256",
            "--seq", "1024", "--batch", "8", "--max-new-tokens", "128", "--prompt-tokens", "896",
            "--dtype", "bfloat16", "--rows", "64"],
    "gen": ["--shape", "1b", "--prompts", "64", "--batch-size", "64", "--max-new-tokens", "128",
            "--prompt-words", "256", "--reps", "2"],
}
TINY = {
    "loss": ["--tokens", "512", "--vocab", "16000", "--hidden", "64", "--dtype", "float32", "--reps", "2"],
    "gkd": ["--student-shape", "64,2,4,2,128", "--teacher-shape", "96,2,4,2,192", "--vocab", "1000",
            "--seq", "96", "--batch", "2", "--max-new-tokens", "16", "--prompt-tokens", "64", "--rows", "16"],
    "gen": ["--shape", "tiny", "--prompts", "16", "--batch-size", "16", "--max-new-tokens", "32",
            "--prompt-words", "40", "--reps", "2"],
}
# (impl, lambda, optimizer steps, untimed first steps, extra flags): the first on-policy steps of
# kdtools compile the sampler's decode step (static KV cache), so two are left out.
GKD_RUNS = [("kdtools", 1.0, 4, 2, []), ("trl", 1.0, 2, 1, []), ("kdtools", 0.0, 3, 1, []), ("trl", 0.0, 3, 1, []),
            ("kdtools", 1.0, 2, 1, ["--static-sampling", "off"])]


def run(cmd: list[str], timeout: float, out) -> list[dict]:
    """Run a benchmark script; echo and collect its JSON lines (a failure is a row too)."""
    env = {**os.environ, "TRL_EXPERIMENTAL_SILENCE": "1", "TOKENIZERS_PARALLELISM": "false",
           "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    started = time.time()
    try:
        proc = subprocess.run([sys.executable, *cmd], capture_output=True, text=True, timeout=timeout, env=env)
        text, code, stderr = proc.stdout, proc.returncode, proc.stderr
    except subprocess.TimeoutExpired as exc:  # its output so far still counts
        def as_text(b):
            return b.decode(errors="replace") if isinstance(b, bytes) else (b or "")
        text, code, stderr = as_text(exc.stdout), f"timeout after {timeout:.0f}s", as_text(exc.stderr)
    rows = []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # the trainers' own log lines
        if isinstance(row, dict):
            rows.append(row)
            print(line, flush=True)
            if out:
                out.write(line + "\n")
    if code != 0:
        err = {"cmd": " ".join(Path(c).name for c in cmd[:5]), "error": f"exit {code}", "stderr": stderr[-1500:]}
        print(json.dumps(err), flush=True)
        rows.append(err)
    print(f"# {' '.join(Path(c).name for c in cmd[:2])} ...: {time.time() - started:.0f}s", file=sys.stderr, flush=True)
    return rows


def size(mb: float) -> str:
    return f"{mb / 1024:.1f} GB" if mb >= 1024 else f"{mb:.0f} MB"


def fmt(x, unit="", digits=3):
    if x is None:
        return "-"
    return f"{x:.{digits}g}{unit}" if isinstance(x, float) else f"{x}{unit}"


def loss_rows(rows) -> list[tuple[str, str]]:
    table = []
    errors = {r["accuracy"]: r for r in rows if "accuracy" in r}
    for r in rows:
        if "method" not in r or "tokens" not in r:
            continue
        label = f"loss {r['method']}" + (f" (chunk {r['chunk_size']})" if "chunk_size" in r else "")
        if "seconds" in r:
            err = errors.get(r["method"], {}).get("grad_err")
            table.append((label, f"{r['seconds'] * 1e3:.1f} ms, peak {size(r['peak_mb'])}"
                          + (f", grad err vs fp64 {err:.1e}" if err is not None else "")))
        else:
            table.append((label, (r.get("oom") and "out of memory") or r.get("skipped") or r.get("error", "?")))
    for r in rows:
        if "loss_rule" in r:
            rule = r["loss_rule"]
            table.append(("loss rule (fastest with grad err <= 1e-2)", f"picks {rule['picks']} from {rule['measured']}; "
                          f"the shipped table picks {rule['shipped_table_picks']}"))
    return table


def gkd_rows(rows) -> list[tuple[str, str]]:
    ok = [r for r in rows if "impl" in r and "error" not in r]
    table = []

    def get(impl, lmbda):  # the first such run: kdtools' default sampler before its static-off run
        return next((r for r in ok if r["impl"] == impl and r["lmbda"] == lmbda), None)

    for r in ok:
        name = f"gkd {r['impl']} lambda {r['lmbda']:g}" + (
            "" if r["impl"] == "trl" else f" ({'static' if r.get('static_sampling') else 'dynamic'} sampling cache)")
        step = r["onpolicy_step_s"] if r["lmbda"] == 1.0 else r["offpolicy_step_s"]
        peak = size(r.get("peak_total_mb", r["peak_mb"]))
        table.append((name, f"{fmt(step, ' s')} per step, {r['tokens_per_s']:.0f} tok/s, peak {peak}"
                      + (f", sampling fell back: {r['sampling_fell_back']}" if r.get("sampling_fell_back") else "")))
    at_half = {}
    for impl in ("trl", "kdtools"):
        on, off = get(impl, 1.0), get(impl, 0.0)
        if on and off and on["onpolicy_step_s"] and off["offpolicy_step_s"]:
            rate = ((on["onpolicy_step_tokens"] + off["offpolicy_step_tokens"])
                    / (on["onpolicy_step_s"] + off["offpolicy_step_s"]))
            peak = max(r.get("peak_total_mb", r["peak_mb"]) for r in (on, off))
            at_half[impl] = (rate, peak)
            table.append((f"gkd {impl} at lambda 0.5", f"{rate:.0f} tok/s, peak {size(peak)}; on-policy step "
                          f"{on['onpolicy_step_s'] / off['offpolicy_step_s']:.1f}x the off-policy step"))
    if len(at_half) == 2:
        (trl_rate, trl_peak), (kd_rate, kd_peak) = at_half["trl"], at_half["kdtools"]
        table.append(("gkd kdtools / TRL at lambda 0.5", f"{kd_rate / trl_rate:.2f}x tokens/s at "
                      f"{kd_peak / trl_peak:.2f}x the peak memory"))
    for r in rows:
        if "error" in r:
            table.append(("gkd (failed)", f"{r['cmd']}: {r['error']} {r.get('stderr', '')[-300:]}"))
    return table


def gen_rows(rows) -> list[tuple[str, str]]:
    table = []
    for r in rows:
        if r.get("summary"):
            for mode in ("greedy", "t1"):
                table.append((f"generation {mode} ({r['shape']}, batch {r['batch_size']}, {r['max_new_tokens']} tokens)",
                              f"engine {r[f'{mode}_engine_tokens_per_s']:.0f} tok/s vs model.generate "
                              f"{r[f'{mode}_generate_tokens_per_s']:.0f} ({r[f'{mode}_engine_vs_generate']:.2f}x)"
                              + (f"; greedy identical {r['greedy_identical']}/{r['prompts']}" if mode == "greedy" else "")))
        elif "error" in r:
            table.append(("generation (failed)", r["error"] + " " + r.get("stderr", "")[-200:]))
    return table


def versions() -> str:
    out = []
    for name in ("torch", "transformers", "trl", "accelerate", "liger-kernel"):
        try:
            out.append(f"{name} {meta.version(name)}")
        except meta.PackageNotFoundError:
            out.append(f"{name} -")
    return ", ".join(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda", help="cuda or cpu")
    p.add_argument("--tiny", action="store_true", help="tiny sizes (a CPU run of the same code)")
    p.add_argument("--parts", default="loss,gkd,gen", help="comma-separated subset of loss, gkd, gen")
    p.add_argument("--out", type=Path, default=None, help="also write every JSON line to this file")
    p.add_argument("--budget", type=float, default=360, help="seconds for everything: parts past it are cut")
    args = p.parse_args(argv)
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error("--device cuda but torch sees no CUDA device (use --device cpu --tiny, i.e. make bench-cpu)")
    sizes = TINY if args.tiny else FULL
    cuda = args.device.startswith("cuda")
    device_name = torch.cuda.get_device_name(0) if cuda else f"CPU ({os.cpu_count()} cores)"
    parts = args.parts.split(",")
    started = time.time()

    reserve = 60 if "gen" in parts else 0  # the GKD runs leave generation its minute

    def left(cap: float, keep: float = 0) -> float:
        """A part's timeout: its cap, or what is left of --budget less `keep`."""
        return max(1.0, min(cap, args.budget - keep - (time.time() - started)))

    out = open(args.out, "w") if args.out else None  # noqa: SIM115 (closed below)
    table: list[tuple[str, str]] = []
    dev = ["--device", args.device]
    if "loss" in parts:
        loss = str(HERE / "fused_loss.py")
        # on a GPU also the fused loss at the CPU rule's chunk: what the device rule buys
        methods = "trl,fused,liger" + (",fused:cpu-rule" if cuda else "")
        table += loss_rows(run([loss, *sizes["loss"], *dev, "--chunk-size", "auto", "--methods", methods,
                                "--accuracy"], left(150), out))
    if "gkd" in parts:
        rows = []
        for impl, lmbda, steps, warmup, extra in GKD_RUNS:
            if extra and not cuda:
                continue  # the static cache is a CUDA path: on a CPU both runs would be the dynamic one
            if left(240, reserve) < 30:
                rows.append({"cmd": f"gkd_step.py {impl} lambda {lmbda}", "error": "not run: out of --budget"})
                continue
            rows += run([str(HERE / "gkd_step.py"), "--worker", impl, "--lmbda", str(lmbda), "--steps", str(steps),
                         "--warmup-steps", str(warmup), *sizes["gkd"], *dev, *extra], left(240, reserve), out)
        table += gkd_rows(rows)
    if "gen" in parts:
        table += gen_rows(run([str(HERE / "generation.py"), *sizes["gen"], *dev], left(150), out))
    if out:
        out.close()
    width = max((len(a) for a, _ in table), default=10)
    print("=" * 100)
    print(f"kdtools on {device_name}{' (tiny sizes)' if args.tiny else ''}: {versions()}; "
          f"{time.time() - started:.0f} s")
    print(f"| {'what':<{width}} | result |\n|{'-' * (width + 2)}|---|")
    for what, result in table:
        print(f"| {what:<{width}} | {result} |")


if __name__ == "__main__":
    main()
