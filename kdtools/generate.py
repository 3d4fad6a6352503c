"""One generation engine for every stage that samples from a model (seqkd now; synth and
annotate build on it): batched, KV-cached, sharded, resumable and deterministic.

    rows = generate(model_dir, prompts, out_dir, Sampling(temperature=0.6, samples=5), seed=0)

Prompts are conversations (`messages` without the answer). They are cut into shards of
`shard_size` prompts; each shard is generated with its own seed (seed, shard index) and written
atomically as `shards/shard-NNNNN.jsonl`, so a killed run resumes at the first missing shard and
the result is identical to an uninterrupted run: no row lost, none duplicated. With vLLM
installed and a CUDA device, vLLM generates; otherwise transformers' `generate` with left
padding and the KV cache on.
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from kdtools import manifest
from kdtools.errors import KdError
from kdtools.progress import Lines

console = Console(stderr=True, soft_wrap=True)
SYNC_EVERY = 8                     # GPU decode steps between looks at which rows finished (HFBackend)


@dataclass(frozen=True)
class Sampling:
    temperature: float = 1.0       # 0 = greedy
    top_p: float = 1.0
    max_new_tokens: int = 1024
    samples: int = 1               # completions per prompt
    batch_size: int = 16           # prompts per forward pass (HF backend)
    shard_size: int = 256          # prompts per resumable shard

    def __post_init__(self):
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise KdError(f"sampling needs temperature >= 0 and 0 < top_p <= 1, got {self.temperature}, {self.top_p}")
        if min(self.max_new_tokens, self.samples, self.batch_size, self.shard_size) < 1:
            raise KdError("max_new_tokens, samples, batch_size and shard_size must be at least 1")


def shard_seed(seed: int, shard: int) -> int:
    return (seed * 1_000_003 + shard) % (2**31 - 1)


def _shards(n: int, size: int) -> Iterator[tuple[int, int, int]]:
    for index, start in enumerate(range(0, n, size)):
        yield index, start, min(n, start + size)


def _vllm_available() -> bool:
    try:
        import torch
        import vllm  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


class HFBackend:
    """transformers' generate: left padding, KV cache, one batch of prompts at a time."""

    name = "hf"
    sync_every: int | None = None  # decode steps between drops of finished rows; None: by device

    def __init__(self, model_dir: str, chat_template: str | None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from kdtools.chat import prepare_tokenizer

        self.tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(model_dir), chat_template)
        self.tokenizer.padding_side = "left"
        dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).eval()
        if torch.cuda.is_available():
            self.model.to("cuda")
        # transformers 5.24 renamed forward's past_key_values to cache (the old name goes in 5.40)
        params = inspect.signature(self.model.forward).parameters
        self.cache_kw = "cache" if "cache" in params else "past_key_values"

    def complete(self, prompts: list[list[dict]], sampling: Sampling, seed: int) -> list[list[dict]]:
        """Batches of prompts sorted by length (less padding); each prompt's samples decoded
        together; rows that reach EOS leave the batch, so no step is spent on finished rows."""
        import torch

        generator = torch.Generator(device=self.model.device).manual_seed(seed)
        tok = self.tokenizer
        texts = [tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
        lengths = [len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]]
        order = sorted(range(len(texts)), key=lambda i: (lengths[i], i))
        out: list[list[dict] | None] = [None] * len(texts)
        for start in range(0, len(order), sampling.batch_size):
            batch = order[start:start + sampling.batch_size]
            enc = tok([texts[i] for i in batch], return_tensors="pt", padding=True, add_special_tokens=False)
            done = self._decode(enc["input_ids"], enc["attention_mask"], sampling, generator)
            for j, i in enumerate(batch):
                out[i] = done[j * sampling.samples:(j + 1) * sampling.samples]
        return out

    def _decode(self, input_ids, attention_mask, sampling: Sampling, generator) -> list[dict]:
        """Sample up to max_new_tokens for each (prompt, sample) row with one KV cache.

        The loop never waits for the device between steps except to drop finished rows: tokens
        go into a (rows, max_new_tokens) tensor on the device (-1 after a row's EOS) and reach
        the host once at the end; the attention mask is allocated once and sliced. On a CPU
        finished rows leave the batch after every step (compute is what costs there); on a GPU
        every SYNC_EVERY steps (each look at which rows finished is a host sync, while a row
        more in a memory-bound decode step costs almost nothing), and rows that finished in
        between keep decoding into -1s.
        """
        import torch
        from transformers import DynamicCache

        device = self.model.device
        eos = self.tokenizer.eos_token_id
        new = sampling.max_new_tokens
        input_ids = input_ids.repeat_interleave(sampling.samples, 0).to(device)
        prompt_mask = attention_mask.repeat_interleave(sampling.samples, 0).to(device)
        rows, width = input_ids.shape
        mask = torch.cat([prompt_mask, prompt_mask.new_ones(rows, new)], dim=1)
        out = torch.full((rows, new), -1, dtype=torch.long, device=device)
        alive = torch.arange(rows, device=device)           # each batch row's row in `out`
        done = torch.zeros(rows, dtype=torch.bool, device=device)
        every = self.sync_every or (1 if device.type == "cpu" else SYNC_EVERY)
        positions = (prompt_mask.long().cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache(config=self.model.config)
        with torch.no_grad():
            logits = self.model(input_ids=input_ids, attention_mask=prompt_mask, position_ids=positions,
                                use_cache=True, logits_to_keep=1, **{self.cache_kw: cache}).logits[:, -1]
            next_position = positions[:, -1:] + 1
            for step in range(new):
                chosen = sample_next(logits.float(), sampling, generator)
                done = done | (chosen == eos)
                out[alive, step] = chosen.masked_fill(done, -1)
                if step == new - 1:
                    break
                if (step + 1) % every == 0 and bool(done.any()):
                    keep = (~done).nonzero().squeeze(1)
                    if keep.numel() == 0:
                        break
                    cache.batch_select_indices(keep)
                    alive, chosen, mask, next_position, done = (
                        alive[keep], chosen[keep], mask[keep], next_position[keep], done[keep])
                logits = self.model(input_ids=chosen[:, None], attention_mask=mask[:, :width + step + 1],
                                    position_ids=next_position, use_cache=True,
                                    **{self.cache_kw: cache}).logits[:, -1]
                next_position = next_position + 1
        results = []
        for row in out.tolist():
            n = row.index(-1) if -1 in row else new
            results.append({"text": self.tokenizer.decode(row[:n], skip_special_tokens=True),
                            "finish_reason": "stop" if -1 in row else "length", "tokens": n})
        return results


def sample_next(logits, sampling: Sampling, generator):
    """One token per row: greedy at temperature 0, else nucleus sampling (top_p) at temperature.

    Draws on `generator`, which lives on the logits' device: nothing of size (rows x V) goes to
    the host, and a seed gives the same tokens on a given device. The draw is torch.multinomial's
    own for one sample (an exponential race: argmax of p / q, q ~ Exp(1)), written out because
    multinomial reads a validity check back to the host on every call; on a CPU it is bit for bit
    `torch.multinomial(probs, 1, generator=generator)` (tested), the engine's draw before.
    """
    import torch

    if sampling.temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits / sampling.temperature, dim=-1)
    if sampling.top_p < 1.0:
        sorted_probs, index = probs.sort(dim=-1, descending=True)
        outside = sorted_probs.cumsum(-1) - sorted_probs >= sampling.top_p   # keep the first token always
        sorted_probs = sorted_probs.masked_fill(outside, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, index, sorted_probs)
    race = torch.empty_like(probs).exponential_(1, generator=generator)
    return probs.div_(race).argmax(-1)


class VLLMBackend:
    """vLLM on a CUDA device: continuous batching, n samples per prompt, seeded per shard."""

    name = "vllm"

    def __init__(self, model_dir: str, chat_template: str | None):
        from transformers import AutoTokenizer
        from vllm import LLM

        from kdtools.chat import prepare_tokenizer

        self.tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(model_dir), chat_template)
        import torch

        # one process over every visible GPU: a 70B teacher is sharded by tensor parallelism
        self.llm = LLM(model=model_dir, seed=0, tensor_parallel_size=max(1, torch.cuda.device_count()))

    def complete(self, prompts: list[list[dict]], sampling: Sampling, seed: int) -> list[list[dict]]:
        from vllm import SamplingParams

        params = SamplingParams(n=sampling.samples, temperature=sampling.temperature, top_p=sampling.top_p,
                                max_tokens=sampling.max_new_tokens, seed=seed)
        texts = [self.tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
        # token ids, not text: the chat template already starts with BOS, which vLLM would add again
        ids = [self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        results = self.llm.generate([{"prompt_token_ids": i} for i in ids], params, use_tqdm=False)
        return [[{"text": o.text, "finish_reason": o.finish_reason, "tokens": len(o.token_ids)}
                 for o in r.outputs] for r in results]


def generate(model_dir: str, prompts: list[list[dict]], out_dir: Path, sampling: Sampling, seed: int,
             chat_template: str | None = None, label: str = "generate") -> list[dict]:
    """Sample completions for every prompt into out_dir (resuming), return rows in prompt order:
    {"index", "sample", "messages" (the prompt), "completion", "finish_reason", "tokens"}."""
    out_dir = Path(out_dir)
    shard_dir = out_dir / "shards"
    shard_dir.mkdir(parents=True, exist_ok=True)
    spec = {"model": model_dir, "sampling": asdict(sampling), "seed": seed, "n_prompts": len(prompts),
            "prompts_sha256": manifest.config_hash({"p": prompts})}
    spec_file = out_dir / "generation.json"
    if spec_file.is_file() and json.loads(spec_file.read_text()) != spec:
        raise KdError(f"{out_dir} holds generations of another model/sampling/prompt set: remove it "
                      "or choose another output folder")
    manifest.atomic_write_json(spec_file, spec)
    for debris in shard_dir.glob(".shard-*.tmp"):  # a temp file a kill -9 left mid-write
        debris.unlink(missing_ok=True)

    plan = list(_shards(len(prompts), sampling.shard_size))
    todo = [s for s in plan if not (shard_dir / f"shard-{s[0]:05d}.jsonl").is_file()]
    backend = None
    started = time.time()
    already = len(prompts) - sum(e - s for _, s, e in todo)
    with Progress(TextColumn(f"[bold]{label}[/]"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("prompts"), TimeRemainingColumn(), console=console,
                  disable=not console.is_terminal) as progress, Lines(label, len(prompts), done=already) as lines:
        bar = progress.add_task(label, total=len(prompts), completed=already)
        for index, start, end in todo:
            if backend is None:
                backend = (VLLMBackend if _vllm_available() else HFBackend)(model_dir, chat_template)
            samples = backend.complete(prompts[start:end], sampling, shard_seed(seed, index))
            rows = [{"index": start + i, "sample": k, "messages": prompts[start + i],
                     "completion": s["text"], "finish_reason": s["finish_reason"], "tokens": s["tokens"]}
                    for i, per_prompt in enumerate(samples) for k, s in enumerate(per_prompt)]
            manifest.atomic_write_text(shard_dir / f"shard-{index:05d}.jsonl",
                                       "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
            progress.advance(bar, end - start)
            lines.advance(end - start)
    if todo:
        console.print(f"  {label}: {sum(e - s for _, s, e in todo)} prompts x {sampling.samples} samples "
                      f"in {time.time() - started:.0f}s ({backend.name if backend else '-'})")
    rows = []
    for index, _, _ in plan:
        with open(shard_dir / f"shard-{index:05d}.jsonl", encoding="utf-8") as f:
            rows.extend(json.loads(line) for line in f)
    return rows
