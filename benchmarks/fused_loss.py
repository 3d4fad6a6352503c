"""Time and peak memory of the GKD loss: TRL's on full logits vs kdtools' fused chunked loss (and
liger-kernel's on CUDA), on a CPU or a GPU.

    .venv/bin/python benchmarks/fused_loss.py [--tokens 256,1024] [--vocab 32000,128256] \
        [--hidden 256] [--chunk-size 128|auto] [--png out.png] \
        [--device cpu|cuda] [--dtype float32|bfloat16] [--methods trl,fused,liger] [--accuracy]

The README's CPU sweep (issue 7: tokens 512..8192, vocabulary 32k..256k, the trainer's chunk rule):
    .venv/bin/python benchmarks/fused_loss.py --tokens 512,2048,8192 --vocab 32000,128256,256000 \
        --hidden 128 --chunk-size auto --png docs/perf-fused-loss.png
Liger-Kernel's benchmark size on a GPU (what `make bench-gpu` runs):
    python benchmarks/fused_loss.py --device cuda --dtype bfloat16 --tokens 8192 --vocab 128256 \
        --hidden 4096 --chunk-size auto --methods trl,fused,liger --accuracy

For each (tokens, vocab) it times forward + backward of
  (a) "trl":   logits = h @ W.T for student and teacher (as a trainer's lm_head would), then
               `trl.experimental.gkd.GKDTrainer.generalized_jsd_loss`;
  (b) "fused": `kdtools.losses.fused_generalized_jsd_loss` on the hidden states and weights;
  (c) "liger": `kdtools.gkd_trainer.liger_jsd_loss` (liger-kernel's Triton kernel; CUDA only),
and prints one JSON object per line, then a JSON summary. Every token is a label (no -100), so
all process the same tokens; beta = 0.5. Each method runs in its own process.

CPU: one timed call; peak memory is the growth of the resident set over the inputs (glibc's mmap
threshold lowered so freed tensors go back to the OS, and the kernel's high-water mark reset
before each measurement; where /proc does not allow that, a psutil thread samples the RSS every
millisecond). A TRL run that would not fit in the available memory is skipped.
CUDA: --warmup calls, then the median of --reps calls timed with CUDA events, and the peak of
torch.cuda.max_memory_allocated over the inputs; an out-of-memory point is reported as "oom".
--accuracy (one more process): each method's loss and gradients in --dtype against kdtools' fused
loss in float64 (tested equal to TRL's), as ||x - ref|| / ||ref||; the summary then says which
loss `kdtools.gkd_trainer.cuda_loss_impl`'s rule (the fastest within 1e-2 gradient error) picks
from these figures, and prints the MEASURED_LOSSES row for this GPU.

Not a test: run it by hand. The default CPU sweep takes about 2 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
from peakmem import BENCH_ENV, is_cuda, measure, timed  # noqa: E402

TRL_BYTES_PER_LOGIT = 16 * 4  # measured: the TRL path holds ~15 float32 (N, V) tensors at its peak
BETA = 0.5


def _inputs(tokens, vocab, hidden, seed=0, device="cpu", dtype="float32"):
    import torch

    g = torch.Generator(device=device).manual_seed(seed)
    kw = {"generator": g, "device": device}
    dt = getattr(torch, dtype)
    s_hidden = torch.randn(1, tokens, hidden, **kw).to(dt).requires_grad_()
    s_weight = (torch.randn(vocab, hidden, **kw) * (2.0 / hidden**0.5)).to(dt).requires_grad_()
    t_hidden = torch.randn(1, tokens, hidden, **kw).to(dt)
    t_weight = (torch.randn(vocab, hidden, **kw) * (3.0 / hidden**0.5)).to(dt)
    labels = torch.randint(0, vocab, (1, tokens), **kw)
    return s_hidden, s_weight, t_hidden, t_weight, labels


def _step(method, s_hidden, s_weight, t_hidden, t_weight, labels, beta, chunk_size):
    """One forward + backward; returns the loss (a 0-d tensor, not read back)."""
    import torch

    if method == "trl":
        from trl.experimental.gkd import GKDTrainer

        student_logits = s_hidden @ s_weight.T
        with torch.no_grad():
            teacher_logits = t_hidden @ t_weight.T
        loss = GKDTrainer.generalized_jsd_loss(student_logits, teacher_logits, labels, beta=beta)
    elif method == "liger":
        from kdtools.gkd_trainer import liger_jsd_loss

        loss = liger_jsd_loss(s_hidden, s_weight, t_hidden, t_weight, labels, beta)
    else:
        from kdtools.losses import fused_generalized_jsd_loss

        loss = fused_generalized_jsd_loss(s_hidden, s_weight, t_hidden, t_weight, labels,
                                          beta=beta, chunk_size=chunk_size)
    loss.backward()
    return loss.detach()


def _chunk(args, vocab, method="fused"):
    """The fused loss's chunk: 'fused:N' says N; else --chunk-size (a number, or 'auto': the
    device's rule, losses.chunk_tokens; 'cpu-rule': the CPU's rule on any device)."""
    from kdtools.losses import chunk_tokens

    size = method.split(":")[1] if ":" in method else args.chunk_size
    if size in ("auto", "cpu-rule"):
        return chunk_tokens(vocab, args.device if size == "auto" else "cpu")
    return int(size)


def worker(method, grid, args):
    """Measure one method over the grid, in this process; print one JSON line per point."""
    import torch

    if method == "trl":
        from trl.experimental.gkd import GKDTrainer  # noqa: F401  (import outside the timing)
    cuda = is_cuda(args.device)
    if not cuda:
        _step(method, *_inputs(16, grid[0][1], args.hidden), BETA, 16)  # warm up thread pools
    kind = method.split(":")[0]  # 'fused:130' is the fused loss at 130 tokens per chunk
    for tokens, vocab in grid:
        chunk = _chunk(args, vocab, method)
        row = dict(tokens=tokens, vocab=vocab, hidden=args.hidden, method=method, device=args.device,
                   dtype=args.dtype, **({"chunk_size": chunk} if kind == "fused" else {}))
        need = tokens * vocab * TRL_BYTES_PER_LOGIT
        if method == "trl" and not cuda:
            import psutil

            if need > 0.8 * psutil.virtual_memory().available:
                print(json.dumps({**row, "skipped": f"needs ~{need / 2**30:.1f} GiB"}), flush=True)
                continue
        inputs = _inputs(tokens, vocab, args.hidden, device=args.device, dtype=args.dtype)

        step = functools.partial(_step, kind, *inputs, BETA, chunk)

        def clear(inputs=inputs):
            inputs[0].grad = inputs[1].grad = None

        try:
            if cuda:
                timed(step, args.device, reps=0, warmup=args.warmup, before=clear)
                clear()
                _, peak_mb, loss = measure(step, device=args.device)
                secs = timed(step, args.device, reps=args.reps, warmup=0, before=clear)
                seconds = statistics.median(secs)
                extra = {"seconds_all": [round(s, 5) for s in secs]}
            else:
                seconds, peak_mb, loss = measure(step)
                extra = {}
            print(json.dumps({**row, "seconds": round(seconds, 5), "peak_mb": round(peak_mb, 1),
                              "loss": float(loss), **extra}), flush=True)
        except torch.cuda.OutOfMemoryError as exc:
            print(json.dumps({**row, "oom": str(exc)[:200]}), flush=True)
        del inputs, step, clear
        if cuda:
            torch.cuda.empty_cache()


def rel(x, ref) -> float:
    x, ref = x.detach().double(), ref.detach().double()
    return float((x - ref).norm() / ref.norm().clamp_min(1e-300))


def accuracy(grid, args):
    """Each method's loss and gradients in args.dtype against the float64 fused loss, per point."""
    import torch

    for tokens, vocab in grid:
        # the reference sees the same (rounded) inputs: what is measured is the computation's error
        *tensors, labels = _inputs(tokens, vocab, args.hidden, seed=1, device=args.device)
        low = [t.detach().to(getattr(torch, args.dtype)) for t in tensors]
        reference = None
        for method in ["fp64", *(m for m in args.methods if ":" not in m)]:
            dtype = torch.float64 if method == "fp64" else low[0].dtype
            inputs = [t.detach().to(dtype).requires_grad_(i < 2) for i, t in enumerate(low)] + [labels]
            try:
                loss = _step("fused" if method == "fp64" else method, *inputs, BETA, _chunk(args, vocab))
            except torch.cuda.OutOfMemoryError as exc:
                print(json.dumps({"accuracy": method, "tokens": tokens, "vocab": vocab, "oom": str(exc)[:200]}))
                continue
            result = (loss, inputs[0].grad, inputs[1].grad)
            if reference is None:
                reference = result
                continue
            err = dict(zip(("loss", "grad_h", "grad_w"), (rel(a, b) for a, b in zip(result, reference, strict=True)),
                           strict=True))
            print(json.dumps({"accuracy": method, "tokens": tokens, "vocab": vocab, "dtype": args.dtype,
                              "rel_err_vs_fp64": err, "grad_err": max(err["grad_h"], err["grad_w"])}), flush=True)
            del inputs, result
            if is_cuda(args.device):
                torch.cuda.empty_cache()


def summarise(rows, args):
    by_key = {(r["tokens"], r["vocab"], r["method"]): r for r in rows if "seconds" in r}
    points = []
    for tokens in args.tokens:
        for vocab in args.vocab:
            trl, fused = by_key.get((tokens, vocab, "trl")), by_key.get((tokens, vocab, "fused"))
            if not (trl and fused):
                continue
            points.append(dict(
                tokens=tokens, vocab=vocab,
                trl_seconds=trl["seconds"], fused_seconds=fused["seconds"],
                speedup=round(trl["seconds"] / fused["seconds"], 2),
                trl_peak_mb=trl["peak_mb"], fused_peak_mb=fused["peak_mb"],
                memory_ratio=round(trl["peak_mb"] / max(fused["peak_mb"], 1e-3), 1),
                loss_abs_diff=abs(trl["loss"] - fused["loss"]),
            ))
    out = dict(summary=points, hidden=args.hidden, chunk_size=args.chunk_size, beta=BETA, dtype=args.dtype,
               device=args.device, cpu_threads=os.cpu_count())
    if is_cuda(args.device):
        import torch

        out["gpu"] = torch.cuda.get_device_name(0)
        out["versions"] = {"torch": torch.__version__}
    errors = {r["accuracy"]: r["grad_err"] for r in rows if "grad_err" in r}
    if errors:
        from kdtools.gkd_trainer import GRAD_TOLERANCE, cuda_loss_impl

        # the rule on the largest measured point: (ms, worst gradient error) per implementation
        tokens, vocab = max(args.tokens), max(args.vocab)
        measured = {m: (round(by_key[(tokens, vocab, m)]["seconds"] * 1e3, 1), float(f"{errors[m]:.2g}"))
                    for m in ("liger", "fused") if m in errors and (tokens, vocab, m) in by_key}
        name = out.get("gpu", "cpu")
        out["loss_rule"] = {"measured": measured, "grad_tolerance": GRAD_TOLERANCE,
                            "picks": cuda_loss_impl(name, "liger" in measured, {name.lower(): measured}),
                            "shipped_table_picks": cuda_loss_impl(name, "liger" in measured)}
    return out


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(10, 4))
    series = sorted({(r["method"], r["tokens"]) for r in rows if "seconds" in r})
    for method, tokens in series:
        pts = sorted((r["vocab"], r["seconds"], r["peak_mb"]) for r in rows
                     if "seconds" in r and r["method"] == method and r["tokens"] == tokens)
        style = "-o" if method == "fused" else "--s"
        label = f"{method}, {tokens} tokens"
        ax_t.plot([p[0] for p in pts], [p[1] for p in pts], style, label=label)
        ax_m.plot([p[0] for p in pts], [p[2] for p in pts], style, label=label)
    ax_t.set(xlabel="vocabulary", ylabel="forward + backward (s)", title="time")
    ax_m.set(xlabel="vocabulary", ylabel="peak memory growth (MB)", title="memory", yscale="log")
    ax_t.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _ints(text):
    return [int(x) for x in text.split(",") if x]


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=_ints, default=[256, 1024], help="comma-separated N = B*T")
    parser.add_argument("--vocab", type=_ints, default=[32000, 128256], help="comma-separated V")
    parser.add_argument("--hidden", type=int, default=256, help="hidden size of both models")
    # Smaller than the default token counts, so that the sweep exercises the chunking.
    parser.add_argument("--chunk-size", default="128",
                        help="tokens per chunk (fused), or 'auto': the trainer's rule, losses.chunk_tokens")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--methods", default="fused,trl", type=lambda t: [m for m in t.split(",") if m],
                        help="comma-separated: fused, fused:N (N tokens a chunk, or fused:cpu-rule), trl, "
                             "liger (CUDA with liger-kernel)")
    parser.add_argument("--reps", type=int, default=5, help="timed calls per point (CUDA)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls first (CUDA)")
    parser.add_argument("--accuracy", action="store_true", help="also gradients vs float64 (and the loss rule)")
    parser.add_argument("--png", type=Path, default=None, help="also plot time and memory vs vocab")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if "liger" in args.methods:
        import importlib.util

        if not (is_cuda(args.device) and importlib.util.find_spec("liger_kernel")):
            args.methods = [m for m in args.methods if m != "liger"]
            print(json.dumps({"method": "liger", "skipped": "needs CUDA and liger-kernel (pip install .[gpu])"}))
    return args


def main(argv=None):
    args = parse(argv)
    grid = sorted((t, v) for t in args.tokens for v in args.vocab)

    if args.worker == "accuracy":
        accuracy(grid, args)
        return
    if args.worker:
        worker(args.worker, grid, args)
        return

    # One fresh process per method, so one method's freed heap does not hide the other's peak.
    env = {**os.environ, **BENCH_ENV,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    rows = []
    common = ["--tokens", ",".join(map(str, args.tokens)), "--vocab", ",".join(map(str, args.vocab)),
              "--hidden", str(args.hidden), "--chunk-size", str(args.chunk_size), "--device", args.device,
              "--dtype", args.dtype, "--methods", ",".join(args.methods), "--reps", str(args.reps),
              "--warmup", str(args.warmup)]
    for method in args.methods + (["accuracy"] if args.accuracy else []):
        proc = subprocess.Popen([sys.executable, __file__, "--worker", method, *common],
                                stdout=subprocess.PIPE, text=True, env=env)
        for line in proc.stdout:
            if not line.startswith("{"):
                continue
            print(line, end="", flush=True)
            rows.append(json.loads(line))
        if proc.wait() != 0:
            rows.append(dict(method=method, error=f"worker exited with {proc.returncode}"))
            print(json.dumps(rows[-1]), flush=True)
    print(json.dumps(summarise(rows, args)))
    if args.png:
        plot(rows, args.png)


if __name__ == "__main__":
    main()
