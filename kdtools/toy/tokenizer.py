"""The toy world's tokenizer: byte-level BPE trained locally with `tokenizers`, wrapped as a
transformers fast tokenizer with Tulu 3's chat template (the same template the paper world uses).

Role markers and end-of-text are single special tokens, so a tiny model spends no capacity on
spelling them, and byte-level BPE means any text, even unseen characters, round-trips.
"""

from __future__ import annotations

from collections.abc import Iterable

from kdtools.chat import chat_template

EOS = "<|endoftext|>"
PAD = "<|pad|>"
ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>"]


def train_tokenizer(texts: Iterable[str], vocab_size: int):
    """Train a byte-level BPE on `texts`; return a PreTrainedTokenizerFast ready for chat."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS, PAD, *ROLE_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token=EOS,
        pad_token=PAD,
        extra_special_tokens=ROLE_TOKENS,
        model_input_names=["input_ids", "attention_mask"],
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = chat_template("tulu")
    return tokenizer
