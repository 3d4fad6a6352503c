"""`kdtools toy`: build the embedded toy world, deterministic from the world's seed.

    kdtools --world toy toy          # ~5 minutes on two CPU cores, then cached
    kdtools --world smoke toy        # the tiny CI world, well under a minute

Steps: generate the content (instructions, the 70b-it pool, benchmarks, domain tasks, the
pretraining corpus) -> train the tokenizer -> pretrain 1b < 3b < 8b < 70b on the corpus ->
instruction-tune 70b on the held-out pool into 70b-it. Everything is built in a hidden
`.world.partial` folder and renamed into place after `run.json` is written; a world whose
config hash matches is not rebuilt.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from kdtools import manifest
from kdtools.errors import KdError
from kdtools.world import World

console = Console(stderr=True, soft_wrap=True)
BUILDER_VERSION = 1  # bump when the builder's output changes for the same config
BASE_ALIASES = ("1b", "3b", "8b", "70b")


@dataclass(frozen=True)
class ToyJob:
    world: World
    out: Path              # <results>/<world>/world
    spec: dict             # the world's `toy` section
    force: bool = False

    def config(self) -> dict:
        return {"world": self.world.name, "seed": self.world.seed, "toy": self.spec,
                "builder": BUILDER_VERSION}


def make_job(world: World, force: bool = False) -> ToyJob:
    if not world.toy:
        raise KdError(
            f"world '{world.name}' has no `toy` section, so there is nothing to build: "
            "use --world toy (or smoke); the paper world uses hub models"
        )
    from kdtools.toy.content import ContentSpec

    known = set(ContentSpec.__dataclass_fields__) - {"seed"}
    unknown = sorted(set(world.toy["content"]) - known)
    if unknown:
        raise KdError(
            f"{world.file}: unknown key '{unknown[0]}' at toy.content: check the spelling "
            f"(allowed here: {', '.join(sorted(known))})"
        )
    ContentSpec(seed=world.seed, **world.toy["content"])  # its own range checks, before any work
    return ToyJob(world=world, out=world.built_dir, spec=world.toy, force=force)


def write_jsonl(path: Path, rows: list[dict]) -> None:
    manifest.atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def write_content(content, out: Path) -> dict:
    """Write every generated dataset as JSONL; return {relative path: rows}."""
    files = {"data/instructions.jsonl": content.instructions,
             "data/it_instructions.jsonl": content.it_instructions}
    for name, splits in content.benchmarks.items():
        for split, rows in splits.items():
            files[f"benchmarks/{name}/{split}.jsonl"] = rows
    for name, splits in content.tasks.items():
        for split, rows in splits.items():
            files[f"tasks/{name}/{split}.jsonl"] = rows
    for rel, rows in files.items():
        write_jsonl(out / rel, rows)
    write_jsonl(out / "corpus" / "pretrain.jsonl", [{"text": t} for t in content.pretrain_texts])
    return {rel: len(rows) for rel, rows in files.items()}


def run(job: ToyJob) -> dict:
    if done := manifest.reusable(job.out, job.config(), job.force):
        console.print(f"[green]up to date:[/] toy world at {job.out}")
        return done
    started = time.time()
    import torch
    from transformers import LlamaForCausalLM

    from kdtools.toy import pretrain
    from kdtools.toy.content import ContentSpec, build_content
    from kdtools.toy.tokenizer import train_tokenizer

    spec, seed = job.spec, job.world.seed
    partial = job.out.parent / ".world.partial"
    if partial.exists():
        shutil.rmtree(partial)
    console.print(f"[bold]toy[/] building world '{job.world.name}' (seed {seed}) -> {job.out}")

    content = build_content(ContentSpec(seed=seed, **spec["content"]))
    counts = write_content(content, partial)
    console.print(f"  content: {len(content.instructions)} instructions, "
                  f"{len(content.pretrain_texts)} pretraining documents")

    corpus = content.pretrain_texts + [m["content"] for row in content.instructions for m in row["messages"]]
    tokenizer = train_tokenizer(corpus, spec["tokenizer"]["vocab_size"])
    tokenizer.save_pretrained(str(partial / "tokenizer"))
    stream = pretrain.pack_stream(tokenizer, content.pretrain_texts)
    console.print(f"  tokenizer: {len(tokenizer)} tokens; corpus {len(stream):,} tokens")

    p = spec["pretrain"]
    models, facts = {}, {}
    for i, alias in enumerate(BASE_ALIASES):
        shape = spec["models"][alias]
        torch.manual_seed(seed + i)
        config = pretrain.llama_config(tokenizer, shape["hidden"], shape["layers"], shape["ffn"],
                                       max_positions=max(512, job.world.train.max_length))
        model = LlamaForCausalLM(config)
        batches = pretrain.window_batches(stream, p["seq_len"], p["batch_size"], seed + 100 + i)
        losses = pretrain.train_steps(model, batches, shape["steps"], p["learning_rate"],
                                      p["warmup_steps"], f"pretrain {alias}")
        models[alias] = model
        facts[alias] = {"params": sum(t.numel() for t in model.parameters()),
                        "pretrain_loss_last": round(sum(losses[-10:]) / len(losses[-10:]), 4),
                        "corpus_loss": pretrain.corpus_loss(model, stream, p["seq_len"]), **shape}

    it = spec["instruct"]
    teacher = models["70b"]
    it_model = LlamaForCausalLM(teacher.config)
    it_model.load_state_dict(teacher.state_dict())
    batches = pretrain.conversation_batches(
        tokenizer, [row["messages"] for row in content.it_instructions],
        job.world.train.max_length, it["batch_size"], seed + 200)
    losses = pretrain.train_steps(it_model, batches, it["steps"], it["learning_rate"],
                                  max(1, it["steps"] // 20), "instruct 70b -> 70b-it")
    models["70b-it"] = it_model
    facts["70b-it"] = {**facts["70b"], "instruct_steps": it["steps"],
                       "instruct_loss_last": round(sum(losses[-10:]) / len(losses[-10:]), 4)}

    for alias, model in models.items():
        model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.save_pretrained(str(partial / "base" / alias))
        tokenizer.save_pretrained(str(partial / "base" / alias))

    payload = manifest.write_manifest(partial, "toy", job.config(), started, files=counts,
                                      models=facts, vocab_size=len(tokenizer))
    if job.out.exists():
        shutil.rmtree(job.out)
    partial.rename(job.out)
    console.print(f"[green]done[/] in {payload['wall_time_s']:.0f}s -> {job.out}")
    return payload
