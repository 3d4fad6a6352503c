"""Tokens per second of kdtools' generation engine against a per-example `model.generate` loop.

    .venv/bin/python benchmarks/generation.py --model results/toy/models/70b/sft/general/10k \
        [--prompts 64] [--max-new-tokens 64] [--batch-size 32] [--temperature 0.6] [--world toy]

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
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="model folder (e.g. the toy teacher's SFT)")
    parser.add_argument("--world", default="toy")
    parser.add_argument("--results", default=None)
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--temperature", type=float, default=0.6)
    args = parser.parse_args()

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
