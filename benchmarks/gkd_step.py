"""GKD training steps: TRL's GKDTrainer against kdtools' KdGKDTrainer, side by side.

    PYTHONPATH=. .venv/bin/python benchmarks/gkd_step.py [--steps 5] [--repeats 2] \
        [--vocab 32000] [--seq 256] [--batch 4] [--curve-steps 3] [--hidden 128 --layers 2] \
        [--teacher-hidden 256 --teacher-layers 2]

One tiny Llama student and one tiny Llama teacher are built from a LlamaConfig (vocabulary 32000,
seeded, identical for both trainers); a local byte-level BPE tokenizer (a few hundred tokens; the
models' vocabulary is 32000 all the same, so every loss and sample covers 32000 logits) and
generated chat rows whose template fills `--seq` tokens. Both trainers get the same GKDConfig:
lambda 0.5, beta 0.5, temperature 1, gradient checkpointing on (TRL's default for GKDConfig),
per-device batch `--batch`, no accumulation, max_length `--seq`, max_new_tokens = seq - longest
prompt, the same seed.

Throughput (lambda 0.5): each trainer runs `--steps` optimizer steps in its own process
(MALLOC_MMAP_THRESHOLD_ lowered, see peakmem.py), alternating TRL, kdtools, TRL, kdtools, ...
(`--repeats` pairs). A trained token is a non-padding token that goes through the loss's forward
(prompt + response, dataset or sampled). The first step is warm-up and not timed. The on-policy
coin is TRL's `random.random()` per micro-batch vs kdtools' own seeded draw per optimizer step,
so the two may sample on different steps: besides the raw tokens/s, each side's steps are split
into on- and off-policy and the headline is the rate at exactly lambda:
    (lambda tok_on + (1-lambda) tok_off) / (lambda t_on + (1-lambda) t_off)   (means per step).
Peak memory: the RSS growth during `trainer.train()` over the RSS just before it (models,
optimizer creation and data included in neither side's baseline the same way).

Loss curve (lambda 0, no sampling): `--curve-steps` steps of TRL, kdtools with TRL's loss on full
logits ("plain") and kdtools' fused loss, logged every step; max |difference| per pair. All three
divide a step's summed JSD by the same global count of response tokens (transformers'
num_items_in_batch; without accumulation and without sampling that is what TRL divides by too),
so the curves are comparable as they are.

On a GPU (`--device cuda --dtype bfloat16`, what `make bench-gpu` runs through
benchmarks/device_table.py at the issue's shapes: `--student-shape 2048,16,32,8,8192
--teacher-shape 3072,28,24,8,8192 --vocab 128256 --seq 1024 --batch 8 --max-new-tokens 128
--prompt-tokens 896`, i.e. random-init Llama-3.2-1B and 3B shapes), the models are built on the
device in that dtype, steps are timed with CUDA events (on_step_end to on_step_end, sampling
included) and peak memory is torch.cuda.max_memory_allocated (`peak_mb`: growth during train();
`peak_total_mb`: everything, models included).

Prints one JSON line per run, then a JSON summary (last line). Not a test: run it by hand; about
3 minutes on 2 quiet CPU cores (TRL's on-policy steps take most of it, and much longer when the
cores are shared with other work).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from peakmem import BENCH_ENV, Clock, is_cuda, measure  # noqa: E402

SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "pe", "zu", "da", "fi", "go", "hu"]


def words(rng, n):
    return " ".join("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 3))) for _ in range(n))


def _shape(text, hidden, layers):
    """'H,L,heads,kv_heads,ffn' -> tuple; empty: the CPU default (head size 32, ffn 4H)."""
    if text:
        return tuple(int(x) for x in text.split(","))
    return hidden, layers, hidden // 32, hidden // 32, 4 * hidden


def build(args, tmp):
    """-> (tokenizer, student, teacher, dataset, max_new_tokens); deterministic from args.seed."""
    import datasets
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from kdtools.toy.tokenizer import train_tokenizer

    rng = random.Random(args.seed)
    rows = [{"messages": [{"role": "user", "content": "Continue: " + words(rng, args.prompt_words)},
                          {"role": "assistant", "content": words(rng, 4 * args.seq)}]}
            for _ in range(args.rows)]
    tokenizer = train_tokenizer([m["content"] for r in rows for m in r["messages"]], vocab_size=400)
    if args.prompt_tokens:  # prompts of exactly this many tokens (the GPU shapes: 896 of 1024)
        for r in rows:
            user = r["messages"][0]
            user["content"] = tokenizer.decode(tokenizer(user["content"])["input_ids"][:args.prompt_tokens - 6])
    prompt_len = max(len(tokenizer(tokenizer.apply_chat_template(r["messages"][:1], tokenize=False,
                                                                 add_generation_prompt=True),
                                   add_special_tokens=False)["input_ids"]) for r in rows)
    for r in rows:  # cut each response so that the whole conversation just fits in args.seq tokens
        answer = r["messages"][1]
        answer["content"] = tokenizer.decode(tokenizer(answer["content"])["input_ids"][:args.seq - prompt_len - 4])
    dtype = getattr(torch, args.dtype)

    def model(shape, seed):
        hidden, layers, heads, kv_heads, ffn = shape
        torch.manual_seed(seed)
        config = LlamaConfig(vocab_size=args.vocab, hidden_size=hidden, intermediate_size=ffn,
                             num_hidden_layers=layers, num_attention_heads=heads,
                             num_key_value_heads=kv_heads, max_position_embeddings=2 * args.seq,
                             tie_word_embeddings=False, eos_token_id=tokenizer.eos_token_id,
                             pad_token_id=tokenizer.pad_token_id, bos_token_id=None)
        old = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            with torch.device(args.device):  # built where it runs: a 3B model inits in seconds on a GPU
                m = LlamaForCausalLM(config)
        finally:
            torch.set_default_dtype(old)
        m.generation_config.eos_token_id = tokenizer.eos_token_id
        m.generation_config.pad_token_id = tokenizer.pad_token_id
        return m

    student = model(_shape(args.student_shape, args.hidden, args.layers), args.seed)
    teacher = model(_shape(args.teacher_shape, args.teacher_hidden, args.teacher_layers), args.seed + 1)
    max_new = args.max_new_tokens or args.seq - prompt_len
    return tokenizer, student, teacher, datasets.Dataset.from_list(rows), max_new


def trainer_class(impl):
    """The trainer under test, with two counters (no behaviour change): tokens entering the loss
    and on-policy generations, read by a callback that times each optimizer step."""
    from trl.experimental.gkd import GKDTrainer

    from kdtools.gkd_trainer import KdGKDTrainer

    base = GKDTrainer if impl == "trl" else KdGKDTrainer

    class Counted(base):
        tokens = 0
        generations = 0

        def compute_loss(self, model, inputs, *a, **kw):
            Counted.tokens += int(inputs["attention_mask"].sum())
            return super().compute_loss(model, inputs, *a, **kw)

        @staticmethod
        def generate_on_policy_outputs(model, inputs, generation_config):
            Counted.generations += 1
            return base.generate_on_policy_outputs(model, inputs, generation_config)

    return Counted


def worker(args):
    import torch
    from transformers import TrainerCallback
    from trl.experimental.gkd import GKDConfig


    cuda = is_cuda(args.device)
    torch.set_num_threads(args.threads)
    tmp = tempfile.mkdtemp()
    tokenizer, student, teacher, data, max_new = build(args, tmp)
    impl = args.worker
    cls = trainer_class("trl" if impl == "trl" else "kdtools")
    config = GKDConfig(
        output_dir=tmp, per_device_train_batch_size=args.batch, gradient_accumulation_steps=1,
        learning_rate=args.lr, max_steps=args.steps, lr_scheduler_type="constant", warmup_steps=0,
        logging_steps=1, save_strategy="no", report_to="none", seed=args.seed, data_seed=args.seed,
        use_cpu=not cuda, bf16=args.dtype == "bfloat16", dataloader_num_workers=0, gradient_checkpointing=True,
        max_length=args.seq, lmbda=args.lmbda, beta=0.5, temperature=1.0, max_new_tokens=max_new,
        disable_dropout=True, seq_kd=False, disable_tqdm=True,
    )
    kw = {} if impl == "trl" else {"fused_loss": impl != "kdtools-plain", "policy_seed": args.seed,
                                   "static_sampling": {"on": True, "off": False}.get(args.static_sampling)}
    counts = []
    clock = Clock(args.device)

    class Steps(TrainerCallback):
        def on_train_begin(self, *a, **k):
            clock.mark()
            counts.append((0, 0))

        def on_step_end(self, *a, **k):
            clock.mark()
            counts.append((cls.tokens, cls.generations))

    trainer = cls(model=student, teacher_model=teacher, args=config, train_dataset=data,
                  processing_class=tokenizer, callbacks=[Steps()], **kw)
    seconds, peak_mb, _ = measure(trainer.train, device=args.device)
    steps = [{"seconds": s, "tokens": b[0] - a[0], "onpolicy": b[1] > a[1]}
             for s, a, b in zip(clock.intervals(), counts[:-1], counts[1:], strict=True)]
    timed = steps[args.warmup_steps:]  # warm-up: thread pools, optimizer state, compiling the sampler
    on = [s for s in timed if s["onpolicy"]]
    off = [s for s in timed if not s["onpolicy"]]

    def mean(rows, key):
        return statistics.mean(r[key] for r in rows) if rows else None

    row = {"impl": impl, "lmbda": args.lmbda, "steps": len(steps), "train_seconds": round(seconds, 2),
           "peak_mb": round(peak_mb, 1), "onpolicy_steps": sum(s["onpolicy"] for s in steps),
           "tokens_per_s": round(sum(s["tokens"] for s in timed) / sum(s["seconds"] for s in timed), 1),
           "onpolicy_step_s": mean(on, "seconds"), "offpolicy_step_s": mean(off, "seconds"),
           "onpolicy_step_tokens": mean(on, "tokens"), "offpolicy_step_tokens": mean(off, "tokens"),
           "max_new_tokens": max_new, "device": args.device, "dtype": args.dtype,
           "loss_curve": [e["loss"] for e in trainer.state.log_history if "loss" in e]}
    if impl != "trl":
        row.update(loss_impl=("liger" if trainer.liger else "fused") if trainer.fused_loss else "plain",
                   static_sampling=trainer.sampler.static, sampling_fell_back=trainer.sampler.fell_back,
                   onpolicy_sampling_s=round(trainer.onpolicy_seconds, 3))
    if cuda:
        row["peak_total_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    if on and off:
        lam = args.lmbda
        row["tokens_per_s_at_lmbda"] = round(
            (lam * row["onpolicy_step_tokens"] + (1 - lam) * row["offpolicy_step_tokens"])
            / (lam * row["onpolicy_step_s"] + (1 - lam) * row["offpolicy_step_s"]), 1)
    print(json.dumps(row), flush=True)


def spawn(args, impl, lmbda, steps):
    cmd = [sys.executable, __file__, "--worker", impl, "--lmbda", str(lmbda), "--steps", str(steps)]
    for key in ("vocab", "seq", "batch", "hidden", "layers", "teacher_hidden", "teacher_layers",
                "rows", "prompt_words", "seed", "lr", "threads", "device", "dtype", "student_shape",
                "teacher_shape", "max_new_tokens", "prompt_tokens", "warmup_steps", "static_sampling"):
        cmd += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    env = {**os.environ, **BENCH_ENV,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        row = {"impl": impl, "lmbda": lmbda, "error": out.stderr[-2000:]}
    else:
        row = json.loads(out.stdout.strip().splitlines()[-1])
    print(json.dumps(row), flush=True)
    return row


def spread(values):
    return {"min": min(values), "max": max(values), "mean": round(statistics.mean(values), 3)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=5, help="optimizer steps per throughput run (lambda 0.5)")
    p.add_argument("--repeats", type=int, default=2, help="TRL/kdtools pairs, run alternately")
    p.add_argument("--curve-steps", type=int, default=3, help="steps of the lambda-0 loss curves (0: skip)")
    p.add_argument("--lmbda", type=float, default=0.5)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--teacher-hidden", type=int, default=256)
    p.add_argument("--teacher-layers", type=int, default=2)
    p.add_argument("--rows", type=int, default=64)
    p.add_argument("--prompt-words", type=int, default=24)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--threads", type=int, default=2, help="torch threads (2 on this machine)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--student-shape", default="", help="H,layers,heads,kv_heads,ffn (else from --hidden/--layers)")
    p.add_argument("--teacher-shape", default="", help="H,layers,heads,kv_heads,ffn")
    p.add_argument("--max-new-tokens", type=int, default=0, help="0: seq - longest prompt")
    p.add_argument("--prompt-tokens", type=int, default=0, help="cut prompts to this many tokens (0: words)")
    p.add_argument("--warmup-steps", type=int, default=1, help="untimed first steps")
    p.add_argument("--static-sampling", default="auto", choices=["auto", "on", "off"],
                   help="kdtools' static, compiled KV cache for sampling (auto: on CUDA)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return

    runs = [spawn(args, impl, args.lmbda, args.steps)
            for _ in range(args.repeats) for impl in ("trl", "kdtools")]
    curves = {impl: spawn(args, impl, 0.0, args.curve_steps)
              for impl in ("trl", "kdtools-plain", "kdtools") if args.curve_steps}
    ok = [r for r in runs if "error" not in r]
    by = {impl: [r for r in ok if r["impl"] == impl] for impl in ("trl", "kdtools")}
    summary = {"machine": (f"CPU, {os.cpu_count()} cores (shared), torch threads {args.threads}"
                           if args.device == "cpu" else args.device),
               "vocab": args.vocab, "seq": args.seq, "batch": args.batch, "lmbda": args.lmbda,
               "beta": 0.5, "gradient_checkpointing": True, "steps": args.steps,
               "student": f"Llama hidden {args.hidden} x {args.layers} layers",
               "teacher": f"Llama hidden {args.teacher_hidden} x {args.teacher_layers} layers"}
    key = "tokens_per_s_at_lmbda"
    if all(by.values()) and all(key in r for r in ok):
        tps = {impl: [r[key] for r in rows] for impl, rows in by.items()}
        mem = {impl: [r["peak_mb"] for r in rows] for impl, rows in by.items()}
        summary.update({
            "tokens_per_s_at_lmbda": {impl: spread(v) for impl, v in tps.items()},
            "tokens_per_s_raw": {impl: spread([r["tokens_per_s"] for r in rows]) for impl, rows in by.items()},
            "peak_mb": {impl: spread(v) for impl, v in mem.items()},
            "onpolicy_step_s": {impl: spread([round(r["onpolicy_step_s"], 3) for r in rows]) for impl, rows in by.items()},
            "offpolicy_step_s": {impl: spread([round(r["offpolicy_step_s"], 3) for r in rows]) for impl, rows in by.items()},
            "throughput_ratio": round(statistics.mean(tps["kdtools"]) / statistics.mean(tps["trl"]), 2),
            "throughput_ratio_worst_pair": round(min(tps["kdtools"]) / max(tps["trl"]), 2),
            "memory_ratio": round(statistics.mean(mem["kdtools"]) / statistics.mean(mem["trl"]), 3),
        })
    if curves and all("error" not in r for r in curves.values()):
        c = {impl: r["loss_curve"] for impl, r in curves.items()}

        def diff(a, b):
            return max(abs(x - y) for x, y in zip(c[a], c[b], strict=True))

        summary["lambda0_loss_curves"] = c
        summary["lambda0_max_abs_diff"] = {"kdtools_fused_vs_trl": diff("kdtools", "trl"),
                                           "kdtools_plain_vs_trl": diff("kdtools-plain", "trl"),
                                           "kdtools_fused_vs_plain": diff("kdtools", "kdtools-plain")}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
