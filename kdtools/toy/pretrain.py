"""Pretraining the toy base models, and instruction-tuning 70b into 70b-it.

A plain PyTorch loop (AdamW, linear warmup then cosine decay) over batches drawn from a seeded
generator: pretraining samples windows of a packed token stream; instruction tuning samples
chat-formatted conversations and trains on the assistant tokens only. Deliberately not TRL:
this builds the world's *base* models, before any stage of the study runs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from rich.console import Console

console = Console(stderr=True, soft_wrap=True)


def llama_config(tokenizer, hidden: int, layers: int, ffn: int, max_positions: int):
    """A small Llama: head size 16, tied embeddings (most parameters go to the blocks)."""
    from transformers import LlamaConfig

    heads = max(1, hidden // 16)
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=ffn,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )


def pack_stream(tokenizer, texts: list[str]):
    """All documents as one 1-D token tensor, each followed by end-of-text."""
    import torch

    ids: list[int] = []
    for enc in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        ids.extend(enc)
        ids.append(tokenizer.eos_token_id)
    return torch.tensor(ids, dtype=torch.long)


def window_batches(stream, seq_len: int, batch_size: int, seed: int) -> Callable:
    """-> next_batch(): random windows of the packed stream, loss on every token."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    high = len(stream) - seq_len - 1

    def next_batch():
        starts = torch.randint(0, high, (batch_size,), generator=gen)
        x = torch.stack([stream[s : s + seq_len] for s in starts.tolist()])
        return {"input_ids": x, "labels": x.clone()}

    return next_batch


def conversation_batches(tokenizer, conversations: list[list[dict]], max_len: int,
                         batch_size: int, seed: int) -> Callable:
    """-> next_batch(): padded chat-formatted conversations, loss on assistant tokens only."""
    import torch

    from kdtools.chat import assistant_mask

    encoded = [assistant_mask(tokenizer, msgs, max_len) for msgs in conversations]
    gen = torch.Generator().manual_seed(seed)

    def next_batch():
        picks = torch.randint(0, len(encoded), (batch_size,), generator=gen).tolist()
        width = max(len(encoded[i][0]) for i in picks)
        ids = torch.full((batch_size, width), tokenizer.pad_token_id)
        labels = torch.full((batch_size, width), -100)
        attention = torch.zeros((batch_size, width), dtype=torch.long)
        for row, i in enumerate(picks):
            tokens, mask = encoded[i]
            n = len(tokens)
            ids[row, :n] = torch.tensor(tokens)
            attention[row, :n] = 1
            labels[row, :n] = torch.where(torch.tensor(mask) == 1, torch.tensor(tokens), -100)
        return {"input_ids": ids, "labels": labels, "attention_mask": attention}

    return next_batch


def corpus_loss(model, stream, seq_len: int, windows: int = 64, seed: int = 12345) -> float:
    """Mean next-token loss on a fixed sample of corpus windows: how much of the world's text
    (its facts, lexicon, skills) a base model has absorbed. Lower = knows more."""
    import torch

    batch = window_batches(stream, seq_len, windows, seed)()
    with torch.no_grad():
        return round(model(**batch).loss.item(), 4)


def train_steps(model, next_batch: Callable, steps: int, lr: float, warmup: int, label: str) -> list[float]:
    """Run `steps` AdamW steps; return the loss of every step."""
    import torch

    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.01)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    model.train()
    losses = []
    started = time.time()
    for step in range(steps):
        loss = model(**next_batch()).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if (step + 1) % max(1, steps // 5) == 0 or step + 1 == steps:
            recent = losses[-max(1, steps // 10):]
            console.print(
                f"  {label}: step {step + 1}/{steps} loss {sum(recent) / len(recent):.3f} "
                f"({time.time() - started:.0f}s)"
            )
    model.eval()
    return losses
