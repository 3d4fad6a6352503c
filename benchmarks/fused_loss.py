"""Time and peak memory of the GKD loss: TRL's on full logits vs kdtools' fused chunked loss.

    .venv/bin/python benchmarks/fused_loss.py [--tokens 256,1024] [--vocab 32000,128256] \
        [--hidden 256] [--chunk-size 128|auto] [--png out.png]

The README's sweep (issue 7: tokens 512..8192, vocabulary 32k..256k, the trainer's chunk rule):
    .venv/bin/python benchmarks/fused_loss.py --tokens 512,2048,8192 --vocab 32000,128256,256000 \
        --hidden 128 --chunk-size auto --png docs/perf-fused-loss.png

For each (tokens, vocab) it times forward + backward of
  (a) "trl":   logits = h @ W.T for student and teacher (as a trainer's lm_head would), then
               `trl.experimental.gkd.GKDTrainer.generalized_jsd_loss`;
  (b) "fused": `kdtools.losses.fused_generalized_jsd_loss` on the hidden states and weights,
and prints one JSON object per line, then a JSON summary. Every token is a label (no -100), so
both process the same tokens. Inputs are float32 on CPU; beta = 0.5.

Peak memory is the growth of the resident set over the inputs: each method runs in its own
subprocess with glibc's mmap threshold lowered (freed tensors go back to the OS), and the kernel's
high-water mark (VmHWM) is reset before each measurement; where /proc does not allow that, a
psutil thread samples the RSS every millisecond instead. A run of the TRL path that would not fit
in the available memory is skipped (reported with "skipped").

Not a test: run it by hand. The default sweep takes about 2 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from peakmem import BENCH_ENV, measure  # noqa: E402

TRL_BYTES_PER_LOGIT = 16 * 4  # measured: the TRL path holds ~15 float32 (N, V) tensors at its peak


def _inputs(tokens, vocab, hidden, seed=0):
    import torch

    g = torch.Generator().manual_seed(seed)
    s_hidden = torch.randn(1, tokens, hidden, generator=g).requires_grad_()
    s_weight = (torch.randn(vocab, hidden, generator=g) / hidden**0.5).requires_grad_()
    t_hidden = torch.randn(1, tokens, hidden, generator=g)
    t_weight = torch.randn(vocab, hidden, generator=g) / hidden**0.5
    labels = torch.randint(0, vocab, (1, tokens), generator=g)
    return s_hidden, s_weight, t_hidden, t_weight, labels


def _step(method, s_hidden, s_weight, t_hidden, t_weight, labels, beta, chunk_size):
    """One forward + backward; returns the loss value."""
    import torch

    if method == "trl":
        from trl.experimental.gkd import GKDTrainer

        student_logits = s_hidden @ s_weight.T
        with torch.no_grad():
            teacher_logits = t_hidden @ t_weight.T
        loss = GKDTrainer.generalized_jsd_loss(student_logits, teacher_logits, labels, beta=beta)
    else:
        from kdtools.losses import fused_generalized_jsd_loss

        loss = fused_generalized_jsd_loss(s_hidden, s_weight, t_hidden, t_weight, labels,
                                          beta=beta, chunk_size=chunk_size)
    loss.backward()
    return float(loss.detach())


def worker(method, grid, hidden, beta, chunk_size):
    """Measure one method over the grid, in this process; print one JSON line per point."""
    import psutil

    if method == "trl":
        from trl.experimental.gkd import GKDTrainer  # noqa: F401  (import outside the timing)
    from kdtools.gkd_trainer import chunk_tokens

    _step(method, *_inputs(16, grid[0][1], hidden), beta, 16)  # warm up thread pools
    for tokens, vocab in grid:
        chunk = chunk_tokens(vocab) if chunk_size == "auto" else int(chunk_size)
        row = dict(tokens=tokens, vocab=vocab, hidden=hidden, method=method,
                   **({"chunk_size": chunk} if method == "fused" else {}))
        need = tokens * vocab * TRL_BYTES_PER_LOGIT
        if method == "trl" and need > 0.8 * psutil.virtual_memory().available:
            print(json.dumps({**row, "skipped": f"needs ~{need / 2**30:.1f} GiB"}), flush=True)
            continue
        inputs = _inputs(tokens, vocab, hidden)
        seconds, peak_mb, loss = measure(_step, method, *inputs, beta, chunk)
        print(json.dumps({**row, "seconds": round(seconds, 3), "peak_mb": round(peak_mb, 1),
                          "loss": loss}), flush=True)
        del inputs


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
    return dict(summary=points, hidden=args.hidden, chunk_size=args.chunk_size, beta=args.beta,
                dtype="float32", device="cpu", cpu_threads=os.cpu_count())


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
    ax_m.set(xlabel="vocabulary", ylabel="peak RSS growth (MB)", title="memory", yscale="log")
    ax_t.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _ints(text):
    return [int(x) for x in text.split(",") if x]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=_ints, default=[256, 1024], help="comma-separated N = B*T")
    parser.add_argument("--vocab", type=_ints, default=[32000, 128256], help="comma-separated V")
    parser.add_argument("--hidden", type=int, default=256, help="hidden size of both models")
    # Smaller than the default token counts, so that the sweep exercises the chunking.
    parser.add_argument("--chunk-size", default="128",
                        help="tokens per chunk (fused), or 'auto': the trainer's rule, 2**24 / vocab")
    parser.add_argument("--beta", type=float, default=0.5, help="generalized JSD beta")
    parser.add_argument("--png", type=Path, default=None, help="also plot time and memory vs vocab")
    parser.add_argument("--worker", choices=["trl", "fused"], default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    grid = sorted((t, v) for t in args.tokens for v in args.vocab)

    if args.worker:
        worker(args.worker, grid, args.hidden, args.beta, args.chunk_size)
        return

    # One fresh process per method, so one method's freed heap does not hide the other's peak.
    env = {**os.environ, **BENCH_ENV,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    rows = []
    for method in ("fused", "trl"):
        cmd = [sys.executable, __file__, "--worker", method, "--tokens", ",".join(map(str, args.tokens)),
               "--vocab", ",".join(map(str, args.vocab)), "--hidden", str(args.hidden),
               "--chunk-size", str(args.chunk_size), "--beta", str(args.beta)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
        for line in proc.stdout:
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
