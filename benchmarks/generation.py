"""Tokens per second of kdtools' generation engine against `model.generate`.

    .venv/bin/python benchmarks/generation.py --model results/toy/models/70b/sft/general/10k \
        [--prompts 64] [--max-new-tokens 64] [--batch-size 32] [--temperature 0.6] [--world toy]
    python benchmarks/generation.py --shape 1b --device cuda [--prompts 64] [--max-new-tokens 128] \
        [--batch-size 64]                       # what `make bench-gpu` runs (no files, no network)

With --shape (1b: Llama-3.2-1B's shape, vocabulary 128256; small: 4 layers 256 wide, vocabulary
32000; tiny: 2 layers 64 wide, vocabulary 1000), a random-init model with an untied head whose EOS row is zero (so every row
runs max_new_tokens: equal work on both sides) and a word-level tokenizer covering the whole
vocabulary is saved to a temporary folder; the engine's HF backend (`HFBackend.complete`, bf16 on
CUDA) and plain `model.generate` on the same model and the same batch (left padded) each run
once untimed, then --reps timed runs (CUDA events), greedy and at temperature 1 (top_k 0, top_p
1). Greedy outputs are compared token for token. vLLM is not involved (the HF backend is what
runs where vLLM is absent). One JSON line per (mode, method), then a summary.

Without --shape:

Same model, same prompts (the first --prompts user turns of the world's general data, through
the world's chat template), same sampling, one run each:
  (a) "loop":   for each prompt, tokenizer -> `model.generate(**enc, use_cache=True)`, the way a
                script without an engine does it;
  (b) "engine": `kdtools.generate.generate` (left-padded batches, KV cache, shards written to a
                temporary folder; vLLM instead of HF when it is installed with a GPU).
Both times include loading the model. Generated tokens are counted up to EOS (the engine's
`tokens` field; the loop's own count), so a batch that pads finished rows is not flattered.
Prints one JSON object per method and a summary with the speed-up (issue target: >= 5x).

Not a test: run it by hand after `kdtools --world toy toy` and an SFT of the teacher.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from peakmem import Clock, sync  # noqa: E402

SHAPES = {  # hidden, layers, heads, kv heads, ffn, vocabulary
    "1b": (2048, 16, 32, 8, 8192, 128256),
    "small": (256, 4, 8, 4, 1024, 32000),   # a CPU-sized model over a real vocabulary
    "tiny": (64, 2, 4, 2, 128, 1000),
}


def prompts_from_world(world_name: str, results: str | None, n: int) -> tuple[list[list[dict]], str | None]:
    from kdtools.data import read_jsonl, subset_path
    from kdtools.world import load_world

    world = load_world(world_name, results)
    rows = read_jsonl(subset_path(world, "full"))
    prompts = [[m for m in r["messages"] if m["role"] != "assistant"][:2] for r in rows[:n]]
    return prompts, world.chat_template


def run_loop(model_dir: str, prompts, chat_template, args) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kdtools.chat import prepare_tokenizer

    started = time.perf_counter()
    tok = prepare_tokenizer(AutoTokenizer.from_pretrained(model_dir), chat_template)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    torch.manual_seed(0)
    tokens = 0
    for p in prompts:
        text = tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
        enc = tok(text, return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            ids = model.generate(**enc, do_sample=True, temperature=args.temperature, top_p=1.0, top_k=0,
                                 max_new_tokens=args.max_new_tokens, use_cache=True,
                                 pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        seq = ids[0, enc["input_ids"].shape[1]:].tolist()
        tokens += seq.index(tok.eos_token_id) if tok.eos_token_id in seq else len(seq)
    seconds = time.perf_counter() - started
    return {"method": "loop", "seconds": round(seconds, 2), "tokens": tokens, "tokens_per_s": round(tokens / seconds, 1)}


def run_engine(model_dir: str, prompts, chat_template, args) -> dict:
    from kdtools.generate import Sampling, _vllm_available, generate

    sampling = Sampling(temperature=args.temperature, top_p=1.0, max_new_tokens=args.max_new_tokens,
                        samples=1, batch_size=args.batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        rows = generate(model_dir, prompts, Path(tmp) / "gen", sampling, seed=0, chat_template=chat_template,
                        label="benchmark")
        seconds = time.perf_counter() - started
    tokens = sum(r["tokens"] for r in rows)
    return {"method": "engine", "backend": "vllm" if _vllm_available() else "hf", "batch_size": args.batch_size,
            "seconds": round(seconds, 2), "tokens": tokens, "tokens_per_s": round(tokens / seconds, 1)}


def wordlevel_tokenizer(vocab: int):
    """A tokenizer whose ids cover the whole vocabulary ('w123' <-> 123), the toy world's special
    tokens first and the Tulu chat template: every sampled id decodes to its own word."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from kdtools.chat import chat_template
    from kdtools.toy.tokenizer import EOS, PAD, ROLE_TOKENS

    specials = [EOS, PAD, "<unk>", *ROLE_TOKENS]
    words = {t: i for i, t in enumerate(specials)}
    words.update({f"w{i}": i for i in range(len(specials), vocab)})
    core = Tokenizer(models.WordLevel(words, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, eos_token=EOS, pad_token=PAD, unk_token="<unk>",
                                  extra_special_tokens=ROLE_TOKENS, model_input_names=["input_ids", "attention_mask"],
                                  clean_up_tokenization_spaces=False)
    tok.chat_template = chat_template("tulu")
    return tok


def random_model(shape: str, folder: Path, device: str):
    """Save a random-init Llama of `shape` (untied head, EOS row zero) and its tokenizer to folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    hidden, layers, heads, kv, ffn, vocab = SHAPES[shape]
    tok = wordlevel_tokenizer(vocab)
    config = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=ffn, num_hidden_layers=layers,
                         num_attention_heads=heads, num_key_value_heads=kv, max_position_embeddings=2048,
                         tie_word_embeddings=False, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                         bos_token_id=None)
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config)
        with torch.no_grad():
            model.lm_head.weight[tok.eos_token_id].zero_()  # logit 0 < the max of V random logits: no early EOS
    model.generation_config.eos_token_id, model.generation_config.pad_token_id = tok.eos_token_id, tok.pad_token_id
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return vocab


def compare_on_shape(args) -> None:
    """The engine vs model.generate on one random model, greedy and sampled (see the docstring)."""
    import random

    import torch

    from kdtools.generate import HFBackend, Sampling

    with tempfile.TemporaryDirectory() as tmp:
        vocab = random_model(args.shape, Path(tmp), args.device)
        backend = HFBackend(tmp, None)
    backend.model.generation_config.eos_token_id = backend.tokenizer.eos_token_id
    device = str(backend.model.device)
    rng = random.Random(0)
    prompts = [[{"role": "user", "content": " ".join(f"w{rng.randrange(10, vocab)}"
                                                     for _ in range(rng.randint(16, args.prompt_words)))}]
               for _ in range(args.prompts)]
    tok, model = backend.tokenizer, backend.model
    texts = [tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    lengths = [len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]]
    order = sorted(range(len(texts)), key=lambda i: (lengths[i], i))     # the engine's batches

    def plain(temperature):
        out = [None] * len(texts)
        for start in range(0, len(order), args.batch_size):
            idx = order[start:start + args.batch_size]
            enc = tok([texts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            sampled = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0} if temperature \
                else {"do_sample": False, "temperature": None, "top_k": None, "top_p": None}
            with torch.no_grad():
                ids = model.generate(**enc, **sampled, max_new_tokens=args.max_new_tokens, use_cache=True,
                                     pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
            for i, row in zip(idx, ids[:, enc["input_ids"].shape[1]:].tolist(), strict=True):
                n = row.index(tok.eos_token_id) if tok.eos_token_id in row else len(row)
                out[i] = (tok.decode(row[:n], skip_special_tokens=True), n)
        return out

    summary = {"summary": True, "shape": args.shape, "device": device, "dtype": str(model.dtype),
               "prompts": len(prompts), "batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens}
    for temperature in (0.0, 1.0):
        sampling = Sampling(temperature=temperature, top_p=1.0, max_new_tokens=args.max_new_tokens,
                            batch_size=args.batch_size)
        runs = {"engine": lambda s=sampling: backend.complete(prompts, s, seed=0),
                "generate": lambda t=temperature: plain(t)}
        results, rates = {}, {}
        for method, fn in runs.items():
            results[method] = fn()                       # warm-up at the timed shapes
            seconds = []
            for _ in range(args.reps):
                clock = Clock(device)
                clock.mark()
                results[method] = fn()
                clock.mark()
                seconds.append(clock.intervals()[0])
            tokens = sum(r[0]["tokens"] for r in results[method]) if method == "engine" \
                else sum(n for _, n in results[method])
            rates[method] = tokens / min(seconds)
            print(json.dumps({"method": method, "temperature": temperature, "tokens": tokens,
                              "seconds": [round(x, 3) for x in seconds], "tokens_per_s": round(rates[method], 1)}),
                  flush=True)
        mode = "greedy" if temperature == 0 else "t1"
        summary[f"{mode}_engine_tokens_per_s"] = round(rates["engine"], 1)
        summary[f"{mode}_generate_tokens_per_s"] = round(rates["generate"], 1)
        summary[f"{mode}_engine_vs_generate"] = round(rates["engine"] / rates["generate"], 2)
        if temperature == 0:
            summary["greedy_identical"] = sum(e[0]["text"] == g[0] for e, g in
                                              zip(results["engine"], results["generate"], strict=True))
    sync(device)
    print(json.dumps(summary), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model folder (e.g. the toy teacher's SFT); or use --shape")
    parser.add_argument("--shape", choices=sorted(SHAPES), help="a random-init model of this shape instead")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (--shape)")
    parser.add_argument("--reps", type=int, default=2, help="timed runs per method (--shape)")
    parser.add_argument("--prompt-words", type=int, default=256, help="longest prompt in words (--shape)")
    parser.add_argument("--world", default="toy")
    parser.add_argument("--results", default=None)
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--temperature", type=float, default=0.6)
    args = parser.parse_args()
    if bool(args.model) == bool(args.shape):
        parser.error("give --model or --shape")
    if args.shape:
        if args.device == "cpu":
            os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the engine puts itself on a GPU when it sees one
        compare_on_shape(args)
        return

    import torch

    torch.set_num_threads(torch.get_num_threads())
    prompts, chat_template = prompts_from_world(args.world, args.results, args.prompts)
    loop = run_loop(args.model, prompts, chat_template, args)
    print(json.dumps(loop), flush=True)
    engine = run_engine(args.model, prompts, chat_template, args)
    print(json.dumps(engine), flush=True)
    print(json.dumps({"summary": True, "prompts": len(prompts), "max_new_tokens": args.max_new_tokens,
                      "speedup_tokens_per_s": round(engine["tokens_per_s"] / loop["tokens_per_s"], 2),
                      "device": "cuda" if torch.cuda.is_available() else "cpu",
                      "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
