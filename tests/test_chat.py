"""Chat formatting: Tulu 3's template, assistant-only masks, the locally trained tokenizer."""

from __future__ import annotations

import pytest

from kdtools.chat import assistant_mask, chat_template, prepare_tokenizer
from kdtools.errors import KdError
from kdtools.toy.tokenizer import train_tokenizer
from tests.conftest import tulu_rows

CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Reverse: a, b, c"},
    {"role": "assistant", "content": "c, b, a"},
    {"role": "user", "content": "Sort: b, a"},
    {"role": "assistant", "content": "a, b"},
]


@pytest.fixture(scope="module")
def tokenizer():
    texts = [m["content"] for r in tulu_rows(200) for m in r["messages"]]
    texts += [m["content"] for m in CONVERSATION]
    return train_tokenizer(texts, vocab_size=320)


def test_tulu_format(tokenizer):
    text = tokenizer.apply_chat_template(CONVERSATION, tokenize=False)
    assert text == ("<|system|>\nBe brief.\n<|user|>\nReverse: a, b, c\n<|assistant|>\nc, b, a"
                    "<|endoftext|>\n<|user|>\nSort: b, a\n<|assistant|>\na, b<|endoftext|>")
    prompt = tokenizer.apply_chat_template(CONVERSATION[:2], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|user|>\nReverse: a, b, c\n<|assistant|>\n")


def test_assistant_mask_covers_replies_and_their_eos(tokenizer):
    ids, mask = assistant_mask(tokenizer, CONVERSATION)
    trained = [i for i, m in zip(ids, mask, strict=True) if m]
    assert tokenizer.decode(trained) == "c, b, a<|endoftext|>a, b<|endoftext|>"
    assert trained.count(tokenizer.eos_token_id) == 2
    assert mask[0] == 0 and sum(mask) == len(trained)


def test_round_trip_any_text(tokenizer, tmp_path):
    text = "Zorvia's capital — Plenk! 42 + 17 = 59 ünïcødé ✓"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text
    tokenizer.save_pretrained(tmp_path)
    from transformers import AutoTokenizer

    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again(text, add_special_tokens=False)["input_ids"] == ids
    assert again.apply_chat_template(CONVERSATION, tokenize=False) == \
        tokenizer.apply_chat_template(CONVERSATION, tokenize=False)
    assert len(tokenizer.convert_ids_to_tokens(
        tokenizer("<|user|>", add_special_tokens=False)["input_ids"])) == 1  # role markers are single tokens


def test_prepare_tokenizer_gives_base_models_a_template_and_pad(tokenizer):
    tokenizer.chat_template = None
    tokenizer.pad_token = None
    prepare_tokenizer(tokenizer, None)
    assert "generation" in tokenizer.chat_template
    assert tokenizer.pad_token == tokenizer.eos_token


def test_unknown_template():
    with pytest.raises(KdError, match="chat template 'chatml' not found"):
        chat_template("chatml")
