"""The generation engine: deterministic for a seed, resumable shard by shard, KV-cached."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from kdtools.errors import KdError
from kdtools.generate import Sampling, generate

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def teacher_and_prompts(smoke_results):
    model = str(smoke_results / "smoke" / "world" / "base" / "70b-it")
    rows = [json.loads(line) for line in
            (smoke_results / "smoke" / "data" / "tulu" / "10k.jsonl").read_text().splitlines()]
    prompts = [r["messages"][:1] if r["messages"][0]["role"] == "user" else r["messages"][:2] for r in rows][:24]
    return model, prompts


SAMPLING = Sampling(temperature=1.0, max_new_tokens=8, samples=2, batch_size=4, shard_size=5)


def test_deterministic_and_complete(teacher_and_prompts, tmp_path):
    model, prompts = teacher_and_prompts
    a = generate(model, prompts, tmp_path / "a", SAMPLING, seed=3, chat_template="tulu")
    b = generate(model, prompts, tmp_path / "b", SAMPLING, seed=3, chat_template="tulu")
    assert a == b
    assert [(r["index"], r["sample"]) for r in a] == [(i, k) for i in range(24) for k in range(2)]
    assert all(r["tokens"] <= 8 for r in a)
    c = generate(model, prompts, tmp_path / "c", SAMPLING, seed=4, chat_template="tulu")
    assert [r["completion"] for r in c] != [r["completion"] for r in a]


def test_greedy_engine_equals_one_prompt_at_a_time_generate(teacher_and_prompts, tmp_path):
    """The engine's own decode loop (length-sorted batches, left padding, finished rows leaving
    the batch) gives exactly what transformers' generate gives for each prompt alone."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kdtools.chat import prepare_tokenizer

    model_dir, prompts = teacher_and_prompts
    greedy = Sampling(temperature=0, max_new_tokens=12, batch_size=8, shard_size=24)
    rows = generate(model_dir, prompts, tmp_path / "g", greedy, seed=0, chat_template="tulu")
    tok = prepare_tokenizer(AutoTokenizer.from_pretrained(model_dir), "tulu")
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    for row, prompt in zip(rows, prompts, strict=True):
        enc = tok(tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True),
                  return_tensors="pt", add_special_tokens=False)
        ids = model.generate(**enc, do_sample=False, max_new_tokens=12, pad_token_id=tok.pad_token_id,
                             eos_token_id=tok.eos_token_id)[0, enc["input_ids"].shape[1]:].tolist()
        stop = tok.eos_token_id in ids
        ids = ids[:ids.index(tok.eos_token_id)] if stop else ids
        assert row["completion"] == tok.decode(ids, skip_special_tokens=True)
        assert row["finish_reason"] == ("stop" if stop else "length") and row["tokens"] == len(ids)


def test_top_p_keeps_the_nucleus_only():
    import torch

    from kdtools.generate import sample_next

    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]).repeat(2000, 1))
    drawn = sample_next(logits, Sampling(temperature=1.0, top_p=0.7), torch.Generator().manual_seed(0))
    assert set(drawn.tolist()) == {0, 1}                       # 0.5 + 0.3 covers 0.7
    share = (drawn == 0).float().mean().item()
    assert abs(share - 0.5 / 0.8) < 0.05                       # renormalised within the nucleus
    assert sample_next(logits[:1], Sampling(temperature=0), None).item() == 0


def test_sampling_draws_as_torch_multinomial_on_the_logits_device():
    """The engine samples on the logits' device with torch.multinomial's own algorithm, written
    out (no host sync): on a CPU the same tokens as torch.multinomial for the same generator."""
    import torch

    from kdtools.generate import sample_next

    logits = torch.randn(16, 3000, generator=torch.Generator().manual_seed(1)) * 3
    for sampling in (Sampling(temperature=1.0), Sampling(temperature=0.6, top_p=0.8)):
        g_old, g_new = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
        for _ in range(20):
            probs = torch.softmax(logits / sampling.temperature, -1)
            if sampling.top_p < 1:
                sorted_probs, index = probs.sort(dim=-1, descending=True)
                sorted_probs = sorted_probs.masked_fill(sorted_probs.cumsum(-1) - sorted_probs >= sampling.top_p, 0)
                probs = torch.zeros_like(probs).scatter(-1, index, sorted_probs)
            old = torch.multinomial(probs, 1, generator=g_old).squeeze(1)
            assert torch.equal(sample_next(logits, sampling, g_new), old)


def test_sampled_tokens_follow_the_softmax_and_a_seed_repeats_them():
    import torch

    from kdtools.generate import sample_next

    probs = torch.tensor([0.5, 0.25, 0.15, 0.07, 0.03])
    n = 40000
    logits = torch.log(probs).repeat(n, 1)
    drawn = sample_next(logits, Sampling(temperature=1.0), torch.Generator().manual_seed(0))
    freq = torch.bincount(drawn, minlength=5).double() / n
    # a fixed seed (deterministic), and 5 binomial sigmas (<= 0.0125) of room
    assert ((freq - probs.double()).abs() <= 5 * (probs * (1 - probs) / n).sqrt()).all(), freq
    again = sample_next(logits, Sampling(temperature=1.0), torch.Generator().manual_seed(0))
    assert torch.equal(drawn, again)
    # temperature 0.5 squares the probabilities (renormalised)
    hot = sample_next(logits, Sampling(temperature=0.5), torch.Generator().manual_seed(1))
    sharp = probs**2 / (probs**2).sum()
    freq = torch.bincount(hot, minlength=5).double() / n
    assert ((freq - sharp.double()).abs() <= 5 * (sharp * (1 - sharp) / n).sqrt() + 1e-4).all(), freq


@pytest.fixture(scope="module")
def random_model(tmp_path_factory):
    return random_llama(tmp_path_factory.mktemp("random-llama"))


def random_llama(folder):
    """A random tiny Llama saved to `folder` (untied head, EOS logit raised) whose greedy rows end
    at mixed steps, and 40 prompts of 2-12 words. Also used by tests/test_gpu.py."""
    import random

    import torch
    from transformers import LlamaForCausalLM

    from kdtools.toy.pretrain import llama_config
    from kdtools.toy.tokenizer import train_tokenizer

    rng = random.Random(0)
    words = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "pe", "zu"]
    texts = [" ".join(rng.choices(words, k=rng.randint(2, 12))) for _ in range(200)]
    tok = train_tokenizer(texts, vocab_size=300)
    torch.manual_seed(0)
    config = llama_config(tok, 32, 2, 64, 256)
    config.tie_word_embeddings = False
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        model.lm_head.weight[tok.eos_token_id] += 0.03
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder), [[{"role": "user", "content": t}] for t in texts[:40]]


def test_rows_dropped_every_few_steps_give_the_same_greedy_outputs(random_model):
    """The GPU schedule (finished rows leave the batch every SYNC_EVERY steps, decoding into -1s
    meanwhile) gives what the CPU schedule (every step) gives."""
    from kdtools.generate import SYNC_EVERY, HFBackend

    model, prompts = random_model
    backend = HFBackend(model, "tulu")
    greedy = Sampling(temperature=0, max_new_tokens=10, batch_size=8)
    every_step = backend.complete(prompts, greedy, seed=0)
    backend.sync_every = SYNC_EVERY
    assert backend.complete(prompts, greedy, seed=0) == every_step
    ends = [(s["finish_reason"], s["tokens"]) for r in every_step for s in r]
    assert {r for r, _ in ends} == {"stop", "length"}, ends
    assert len({n for r, n in ends if r == "stop"}) > 1, ends     # rows stop at several steps


def test_resume_after_losing_shards_equals_uninterrupted(teacher_and_prompts, tmp_path):
    model, prompts = teacher_and_prompts
    full = generate(model, prompts, tmp_path / "run", SAMPLING, seed=3, chat_template="tulu")
    shards = sorted((tmp_path / "run" / "shards").glob("shard-*.jsonl"))
    assert len(shards) == 5  # 24 prompts in shards of 5
    for shard in shards[2:]:
        shard.unlink()
    assert generate(model, prompts, tmp_path / "run", SAMPLING, seed=3, chat_template="tulu") == full


def test_killed_midway_then_rerun_equals_uninterrupted(teacher_and_prompts, tmp_path):
    """A real SIGKILL in the middle of generation: the rerun completes with no row lost or
    duplicated, identical to an uninterrupted run."""
    model, prompts = teacher_and_prompts
    prompts = prompts * 4  # 96 prompts, 20 shards: long enough to be killed midway
    slow = Sampling(temperature=1.0, max_new_tokens=16, samples=1, batch_size=2, shard_size=5)
    reference = generate(model, prompts, tmp_path / "ref", slow, seed=5, chat_template="tulu")
    script = (
        "import json, sys\nfrom kdtools.generate import Sampling, generate\n"
        f"s = Sampling(**{json.dumps(slow.__dict__)})\n"
        f"generate({model!r}, json.load(open(sys.argv[1])), sys.argv[2], s, seed=5, chat_template='tulu')\n"
    )
    (tmp_path / "prompts.json").write_text(json.dumps(prompts))
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "prompts.json"), str(out)])
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / "shards").glob("shard-*.jsonl"))) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = len(list((out / "shards").glob("shard-*.jsonl")))
    assert 3 <= written < 20, written
    # a kill mid-write may leave a temp file, never a half shard under a shard's name
    for shard in (out / "shards").glob("shard-*.jsonl"):
        assert all(json.loads(line) for line in shard.read_text().splitlines())
    assert generate(model, prompts, out, slow, seed=5, chat_template="tulu") == reference
    assert not list((out / "shards").glob("*.tmp"))  # the rerun removed any


def test_other_settings_in_the_same_folder_are_refused(teacher_and_prompts, tmp_path):
    model, prompts = teacher_and_prompts
    generate(model, prompts[:3], tmp_path / "x", SAMPLING, seed=3, chat_template="tulu")
    with pytest.raises(KdError, match="another model/sampling/prompt set"):
        generate(model, prompts[:3], tmp_path / "x", Sampling(samples=1, max_new_tokens=4), seed=3)


@pytest.mark.parametrize("kwargs", [{"temperature": -1}, {"top_p": 0}, {"samples": 0}])
def test_bad_sampling(kwargs):
    with pytest.raises(KdError):
        Sampling(**kwargs)
