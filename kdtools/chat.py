"""Conversations in Tulu 3's `messages` schema: validation, the chat template, tokenizer set-up.

The Llama base models have no chat template; every world uses Tulu 3's format
(`<bos><|user|>\\n...\\n<|assistant|>\\n...<eos>`) with `{% generation %}` marks, so TRL can build the
assistant-only loss mask and teacher and student always see the same token layout. The template
starts with the tokenizer's BOS, as open-instruct's `--add_bos` does for Tulu 3 (none when the
tokenizer has no BOS); a rendered chat is always encoded without adding special tokens again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kdtools.errors import KdError

ROLES = ("system", "user", "assistant")
TEMPLATES = Path(__file__).parent / "templates"


def chat_template(name: str) -> str:
    """'tulu' -> the packaged template; a path to a .jinja file -> its text."""
    path = TEMPLATES / f"{name}.jinja" if "/" not in name and not name.endswith(".jinja") else Path(name)
    if not path.is_file():
        raise KdError(f"chat template '{name}' not found: use 'tulu' or the path of a .jinja file")
    return path.read_text()


def validate_messages(row: Any, where: str) -> list[dict]:
    """Check one dataset row; return its messages or raise KdError naming the row and the fix."""
    if not isinstance(row, dict) or "messages" not in row:
        keys = ", ".join(row) if isinstance(row, dict) else type(row).__name__
        raise KdError(
            f"{where}: no 'messages' field (found: {keys}); rows must follow Tulu 3's schema "
            '{"messages": [{"role": "user", "content": ...}, {"role": "assistant", ...}]}'
        )
    messages = row["messages"]
    if not isinstance(messages, list) or not messages:
        raise KdError(f"{where}: 'messages' must be a non-empty list of {{role, content}} turns")
    for i, turn in enumerate(messages):
        if not isinstance(turn, dict) or not isinstance(turn.get("content"), str):
            raise KdError(f"{where}: turn {i} must be an object with a string 'content'")
        if turn.get("role") not in ROLES:
            raise KdError(
                f"{where}: turn {i} has role {turn.get('role')!r}; roles must be one of {', '.join(ROLES)}"
            )
    if not any(t["role"] == "assistant" for t in messages):
        raise KdError(f"{where}: no assistant turn, so there is nothing to train on; drop the row")
    return messages


def prepare_tokenizer(tokenizer, template: str | None):
    """Give the tokenizer a chat template (when the world names one, or it has none) and a pad
    token distinct from the text (Llama 3's reserved pad id where it exists, else EOS)."""
    if template or not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = chat_template(template or "tulu")
    if tokenizer.pad_token is None:
        reserved = "<|finetune_right_pad_id|>"
        if reserved in tokenizer.get_vocab():
            tokenizer.pad_token = reserved
        else:
            tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def assistant_mask(tokenizer, messages: list[dict], max_length: int | None = None) -> tuple[list[int], list[int]]:
    """Token ids of a conversation and a 0/1 mask marking the tokens the loss is computed on
    (assistant replies and their end-of-turn token)."""
    out = tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True,
        truncation=max_length is not None, max_length=max_length,
    )
    return list(out["input_ids"]), list(out["assistant_masks"])
