"""One BOS at the start of every sequence, as Tulu 3's recipe trains (open-instruct `--add_bos`).

open-instruct's `get_tokenizer_tulu_v2_2` prepends `{{ bos_token }}` to the Tulu chat template
when `--add_bos` is set, and tokenizes the rendered chat with `apply_chat_template` (no special
tokens added on top). Llama 3's tokenizer also adds `<|begin_of_text|>` whenever a text is encoded
with `add_special_tokens=True`. So the template carries the BOS, and every path that encodes a
rendered chat must not add another: TRL's SFT rows, GKD's collator (rows and on-policy prompts),
kdtools' generation engine, and lm-eval (generation and log-likelihood requests).

The tokenizer here is built locally (the hub is unreachable) with Llama 3's behaviour: a BOS
special token that a TemplateProcessing post-processor adds to every encoded text.
"""

from __future__ import annotations

import pytest

from kdtools.chat import assistant_mask, chat_template

BOS, EOS, PAD = "<|begin_of_text|>", "<|end_of_text|>", "<|pad|>"
ROWS = [
    [{"role": "user", "content": "Reverse: a, b, c"}, {"role": "assistant", "content": "c, b, a"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Sort: b, a"},
     {"role": "assistant", "content": "a, b"}, {"role": "user", "content": "Again: d, c"},
     {"role": "assistant", "content": "c, d"}],
]


@pytest.fixture(scope="module")
def bos_model(tmp_path_factory):
    """A tiny Llama and a byte-level BPE tokenizer that, like Llama 3's, adds BOS on encode."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

    from kdtools.toy.pretrain import llama_config

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    roles = ["<|system|>", "<|user|>", "<|assistant|>"]
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=[BOS, EOS, PAD, *roles],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    core.train_from_iterator([m["content"] for row in ROWS for m in row] * 20, trainer)
    core.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, core.token_to_id(BOS))])
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                  extra_special_tokens=roles, model_input_names=["input_ids", "attention_mask"])
    tok.chat_template = chat_template("tulu")
    assert tok("x")["input_ids"][0] == tok.bos_token_id  # Llama 3's behaviour: encode adds BOS
    folder = tmp_path_factory.mktemp("bos-model")
    config = llama_config(tok, 32, 1, 64, 128)
    config.bos_token_id = tok.bos_token_id
    LlamaForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def one_bos_first(ids, bos_id: int, pad_id: int | None = None) -> None:
    ids = [int(i) for i in ids]
    if pad_id is not None:  # left padding comes before the sequence
        ids = ids[next(k for k, i in enumerate(ids) if i != pad_id):]
    assert ids[0] == bos_id and ids.count(bos_id) == 1, ids


@pytest.fixture(scope="module")
def tok(bos_model):
    from transformers import AutoTokenizer

    from kdtools.chat import prepare_tokenizer

    return prepare_tokenizer(AutoTokenizer.from_pretrained(bos_model), "tulu")


def test_the_template_renders_one_bos_and_the_mask_skips_it(tok):
    for row in ROWS:
        assert tok.apply_chat_template(row, tokenize=False).startswith(BOS + "<|")
        ids, mask = assistant_mask(tok, row)
        one_bos_first(ids, tok.bos_token_id)
        assert mask[0] == 0


def test_a_tokenizer_without_bos_renders_none(tmp_path):
    from kdtools.toy.tokenizer import train_tokenizer

    plain = train_tokenizer(["a b c"] * 10, vocab_size=280)
    assert plain.bos_token is None
    assert plain.apply_chat_template(ROWS[0], tokenize=False).startswith("<|user|>\n")


def test_sft_rows_start_with_one_bos(bos_model, tok, tmp_path):
    import datasets
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(output_dir=str(tmp_path), assistant_only_loss=True, packing=False, max_length=128,
                     report_to="none", use_cpu=True)
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(bos_model), args=args,
                         train_dataset=datasets.Dataset.from_list([{"messages": r} for r in ROWS]),
                         processing_class=tok)
    for row in trainer.train_dataset:
        one_bos_first(row["input_ids"], tok.bos_token_id)


def test_gkd_collator_rows_and_prompts_start_with_one_bos(tok):
    from trl.experimental.utils import DataCollatorForChatML

    batch = DataCollatorForChatML(tokenizer=tok, max_length=128)([{"messages": r} for r in ROWS])
    for ids, prompt in zip(batch["input_ids"], batch["prompts"], strict=True):
        one_bos_first(ids, tok.bos_token_id, tok.pad_token_id)
        one_bos_first(prompt, tok.bos_token_id, tok.pad_token_id)


def test_generation_prompts_start_with_one_bos(bos_model):
    from kdtools.generate import HFBackend, Sampling

    backend = HFBackend(str(bos_model), "tulu")
    seen = []
    forward = backend.model.forward

    def record(*args, **kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is not None and ids.shape[1] > 1:  # the prefill, not one decoded token
            seen.extend(ids.tolist())
        return forward(*args, **kwargs)

    backend.model.forward = record
    backend.complete([r[:-1] for r in ROWS], Sampling(temperature=0.0, max_new_tokens=2), seed=0)
    assert len(seen) == len(ROWS)
    for ids in seen:
        one_bos_first(ids, backend.tokenizer.bos_token_id, backend.tokenizer.pad_token_id)


def test_lm_eval_requests_start_with_one_bos(bos_model):
    from kdtools.evaluation.lmeval import build_lm

    lm = build_lm(str(bos_model), "hf", batch_size=2, max_length=128, chat_template="tulu", seed=0)
    contexts = [lm.apply_chat_template(r[:-1], add_generation_prompt=True) for r in ROWS]
    ids, _ = lm.tok_batch_encode(contexts)                      # generate_until
    for row in ids:
        one_bos_first(row, lm.tokenizer.bos_token_id, lm.tokenizer.pad_token_id)
    for context in contexts:                                    # loglikelihood (multiple choice)
        context_ids, continuation_ids = lm._encode_pair(context, "c, b, a")
        one_bos_first(context_ids, lm.tokenizer.bos_token_id)
        assert lm.tokenizer.bos_token_id not in continuation_ids
