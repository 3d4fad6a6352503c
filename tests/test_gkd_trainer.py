"""kdtools.gkd_trainer's pieces, on a CPU with tiny models: the inverse-CDF sampler draws from
softmax(scores / T) exactly (TRL's top_k=0, top_p=1 sampling), on-policy samples depend on the
global batch only (not on the rank count, the cache kind or a resume), the loss is chosen by the
documented rule, and liger's glue accepts the dtypes bf16 training produces."""

from __future__ import annotations

import sys
import types

import pytest
import torch

from kdtools.gkd_trainer import (GRAD_TOLERANCE, InverseCdfSampler, KdGKDTrainer, chunk_tokens, cuda_loss_impl,
                                 liger_available, liger_jsd_loss)
from kdtools.losses import fused_generalized_jsd_loss
from kdtools.onpolicy import OnPolicySampler, global_index, micro_batch_seed


def test_inverse_cdf_sampler_draws_from_the_softmax():
    torch.manual_seed(0)
    scores = torch.tensor([[0.0, 1.0, 2.0, -1.0, -30.0], [3.0, 0.0, 0.0, 0.0, 0.0]])
    n = 20000
    picks = torch.stack([InverseCdfSampler(temperature=0.7)(None, scores).argmax(-1) for _ in range(n)])
    for row in range(2):
        freq = torch.bincount(picks[:, row], minlength=5).double() / n
        expected = torch.softmax(scores[row].double() / 0.7, -1)
        torch.testing.assert_close(freq, expected, atol=0.012, rtol=0)  # ~4 sigma at n=20000
    assert not (picks[:, 0] == 4).any()  # a token of probability ~1e-19 is never drawn


def test_sampler_output_makes_greedy_pick_the_sample():
    torch.manual_seed(1)
    out = InverseCdfSampler()(None, torch.randn(3, 32000))
    assert torch.isfinite(out).sum(-1).tolist() == [1, 1, 1]


def test_sampler_with_a_generator_is_deterministic_and_leaves_the_global_rng_alone():
    scores = torch.randn(64, 500, generator=torch.Generator().manual_seed(2))
    state = torch.get_rng_state()
    draw = [InverseCdfSampler(1.0, torch.Generator().manual_seed(7))(None, scores).argmax(-1) for _ in range(2)]
    assert torch.equal(draw[0], draw[1])
    assert torch.equal(torch.get_rng_state(), state)
    other = InverseCdfSampler(1.0, torch.Generator().manual_seed(8))(None, scores).argmax(-1)
    assert not torch.equal(other, draw[0])


def test_gpu_paths_are_off_on_cpu_and_the_loss_chunk_is_flat_in_the_vocabulary():
    if not torch.cuda.is_available():
        assert not liger_available()
    assert chunk_tokens(32000, "cpu") * 32000 <= 1 << 24 and chunk_tokens(256000, "cpu") * 256000 <= 1 << 24


# --- which loss runs on a GPU -------------------------------------------------------------------

def test_the_cuda_loss_is_the_fastest_accurate_one_measured_on_that_gpu():
    measured = {"h200": {"liger": (103.0, 7e-3), "fused": (110.0, 1e-2)},
                "a100": {"liger": (90.0, 3e-2), "fused": (120.0, 9e-3)},   # liger fast but inaccurate
                "l40": {"liger": (150.0, 5e-3), "fused": (120.0, 8e-3)}}   # kdtools faster
    assert cuda_loss_impl("NVIDIA H200", True, measured) == "liger"
    assert cuda_loss_impl("NVIDIA H200", False, measured) == "fused"       # liger not installed
    assert cuda_loss_impl("NVIDIA A100-SXM4-80GB", True, measured) == "fused"
    assert cuda_loss_impl("NVIDIA L40S", True, measured) == "fused"
    assert cuda_loss_impl("NVIDIA H100 80GB HBM3", True, measured) == "fused"  # never measured
    assert GRAD_TOLERANCE == 1e-2
    assert cuda_loss_impl("NVIDIA H200", True) == "liger"                  # the shipped table


# --- liger's glue with bf16 training's dtypes ----------------------------------------------------

class _LigerOnCpu(torch.nn.Module):
    """Stands in for `liger_kernel.transformers.LigerFusedLinearJSD` on a CPU. liger's kernel is
    Triton and runs only on a GPU, so substituting its entry point is the only way to drive
    kdtools' glue (the call site, the casts, the rescaling) here. It does what liger's forward
    does first, `input @ weight.t()` for each side with no autocast (torch refuses mismatched
    dtypes there, as it did on the H200: "expected mat1 and mat2 to have the same dtype"), then
    computes liger's value (sum / this call's unmasked tokens) with kdtools' fused loss."""

    seen: list = []

    def __init__(self, jsd_beta=0.5, ignore_index=-100, temperature=1.0):
        super().__init__()
        self.beta, self.temperature = jsd_beta, temperature

    def forward(self, student_input, student_weight, teacher_input, teacher_weight, shift_labels=None):
        type(self).seen.append((student_input.dtype, student_weight.dtype, teacher_input.dtype, teacher_weight.dtype))
        student_input[:1] @ student_weight.t()
        teacher_input[:1] @ teacher_weight.t()
        return fused_generalized_jsd_loss(student_input[None], student_weight, teacher_input[None], teacher_weight,
                                          None if shift_labels is None else shift_labels[None], beta=self.beta,
                                          temperature=self.temperature)


@pytest.fixture
def liger_on_cpu(monkeypatch):
    package = types.ModuleType("liger_kernel")
    transformers = types.ModuleType("liger_kernel.transformers")
    transformers.LigerFusedLinearJSD = _LigerOnCpu
    package.transformers = transformers
    monkeypatch.setitem(sys.modules, "liger_kernel", package)
    monkeypatch.setitem(sys.modules, "liger_kernel.transformers", transformers)
    _LigerOnCpu.seen = []
    return _LigerOnCpu


def test_liger_glue_takes_float32_hidden_states_with_bf16_weights(liger_on_cpu):
    g = torch.Generator().manual_seed(0)
    B, T, H, HT, V = 2, 9, 16, 24, 300
    labels = torch.randint(0, V, (B, T), generator=g)
    labels[0, :3] = -100
    student_hidden = torch.randn(B, T, H, generator=g, requires_grad=True)              # float32
    student_weight = (torch.randn(V, H, generator=g) / 4).bfloat16().requires_grad_()
    teacher_hidden, teacher_weight = torch.randn(B, T, HT, generator=g).bfloat16(), torch.randn(V, HT, generator=g).bfloat16()
    loss = liger_jsd_loss(student_hidden, student_weight, teacher_hidden, teacher_weight, labels, 0.5,
                          num_items_in_batch=20)
    loss.backward()
    assert liger_on_cpu.seen == [(torch.bfloat16,) * 4]
    assert student_hidden.grad.dtype == torch.float32 and student_weight.grad.dtype == torch.bfloat16
    reference = fused_generalized_jsd_loss(student_hidden.detach().bfloat16(), student_weight.detach(), teacher_hidden,
                                           teacher_weight, labels, beta=0.5, num_items_in_batch=20)
    torch.testing.assert_close(loss.detach(), reference, rtol=1e-6, atol=0)


# --- a tiny trainer -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_world(tmp_path_factory.mktemp("tiny"))


def tiny_world(folder):
    """A toy tokenizer, chat rows, and tiny Llama student and teacher (untied heads, vocab ~200);
    the trainer's output goes under `folder`. Also used by tests/test_gpu.py."""
    import random

    import datasets
    from transformers import LlamaForCausalLM

    from kdtools.toy.pretrain import llama_config
    from kdtools.toy.tokenizer import train_tokenizer

    rng = random.Random(0)
    words = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo"]
    rows = [{"messages": [{"role": "user", "content": " ".join(rng.choices(words, k=rng.randint(3, 9)))},
                          {"role": "assistant", "content": " ".join(rng.choices(words, k=rng.randint(2, 6)))}]}
            for _ in range(32)]
    tok = train_tokenizer([m["content"] for r in rows for m in r["messages"]], vocab_size=200)

    def model(hidden, seed):
        torch.manual_seed(seed)
        config = llama_config(tok, hidden, 1, 2 * hidden, 128)
        config.tie_word_embeddings = False
        m = LlamaForCausalLM(config)
        m.generation_config.eos_token_id, m.generation_config.pad_token_id = tok.eos_token_id, tok.pad_token_id
        return m

    return {"tok": tok, "rows": rows, "data": datasets.Dataset.from_list(rows), "model": model, "tmp": folder}


def make_trainer(tiny, lmbda=1.0, accumulation=1, bf16=False, max_steps=2, device="cpu", **kw):
    from trl.experimental.gkd import GKDConfig

    dtype = torch.bfloat16 if bf16 else torch.float32
    args = GKDConfig(output_dir=str(tiny["tmp"] / "out"), per_device_train_batch_size=2,
                     gradient_accumulation_steps=accumulation, max_steps=max_steps, learning_rate=1e-3,
                     lr_scheduler_type="constant", save_strategy="no", report_to="none", seed=0,
                     use_cpu=device == "cpu",
                     bf16=bf16, dataloader_num_workers=0, max_length=64, lmbda=lmbda, beta=0.5, temperature=1.0,
                     max_new_tokens=6, disable_dropout=True, disable_tqdm=True, logging_steps=1)
    return KdGKDTrainer(model=tiny["model"](32, 1).to(dtype), teacher_model=tiny["model"](48, 2).to(dtype),
                        args=args, train_dataset=tiny["data"], processing_class=tiny["tok"], policy_seed=0, **kw)


def test_a_bf16_training_step_goes_through_liger_glue_with_matching_dtypes(tiny, liger_on_cpu):
    """bf16 weights and bf16=True, as kdtools.gkd loads and trains them: accelerate's autocast
    wrapper returns the student's hidden states in float32 while lm_head is bf16 (the H200
    crash). Fails without the glue's casts."""
    trainer = make_trainer(tiny, lmbda=0.0, bf16=True)
    trainer.liger = True                           # what liger_available() and the table say on an H200
    trainer.train()
    assert liger_on_cpu.seen and all(d == (torch.bfloat16,) * 4 for d in liger_on_cpu.seen)
    assert all(e["loss"] > 0 for e in trainer.state.log_history if "loss" in e)


# --- on-policy samples: seeds, ranks, cache kinds -----------------------------------------------

def test_micro_batch_seeds_follow_the_global_batch():
    # 2 ranks x 3 micro-batches cover global micro-batches 0..5 once; rank r holds r, r+2, r+4
    assert [global_index(i, 2, 1) for i in range(3)] == [1, 3, 5]
    assert sorted(global_index(i, 2, r) for i in range(3) for r in range(2)) == list(range(6))
    assert global_index(1, 1, 0) == 1 and global_index(0, 2, 1) == 1    # same global micro-batch
    seeds = {micro_batch_seed(s, step, i) for s in (0, 1) for step in range(50) for i in range(8)}
    assert len(seeds) == 2 * 50 * 8 and all(0 <= x < 2**63 for x in seeds)
    assert micro_batch_seed(0, 3, 1) == micro_batch_seed(0, 3, 1)


def _batches(trainer, n):
    it = iter(trainer.get_train_dataloader())
    return [next(it) for _ in range(n)]


def _sample(trainer, batches, step, world, rank):
    batches = [dict(b) for b in batches]
    trainer.sample_on_policy(batches, step, world, rank)
    return [b["input_ids"] for b in batches]


def test_two_ranks_sample_what_one_process_samples_at_the_same_global_batch(tiny):
    """One process with 2 accumulation micro-batches vs ranks 0 and 1 of 2 with one each: global
    micro-batch k is sampled from the same generator, so the samples are identical."""
    trainer = make_trainer(tiny, accumulation=2)
    b0, b1 = _batches(trainer, 2)
    one = _sample(trainer, [b0, b1], step=5, world=1, rank=0)
    rank0 = _sample(trainer, [b0], step=5, world=2, rank=0)
    rank1 = _sample(trainer, [b1], step=5, world=2, rank=1)
    assert torch.equal(one[0], rank0[0]) and torch.equal(one[1], rank1[0])
    again = _sample(trainer, [b0, b1], step=5, world=1, rank=0)
    assert all(torch.equal(a, b) for a, b in zip(one, again, strict=True))      # deterministic
    other = _sample(trainer, [b0, b1], step=6, world=1, rank=0)
    assert not torch.equal(other[0], one[0])                                    # a new step, new samples
    assert trainer.onpolicy_seconds > 0


def test_static_and_dynamic_kv_caches_sample_the_same_tokens(tiny):
    """The CUDA path (static cache; compiled there, eager here) and the CPU path (dynamic cache)
    draw the same samples from the same seed."""
    trainer = make_trainer(tiny)
    batches = _batches(trainer, 2)
    trainer.sampler.static = False
    dynamic = _sample(trainer, batches, 3, 1, 0)
    trainer.sampler.static = True
    static = _sample(trainer, batches, 3, 1, 0)
    assert trainer.sampler.static and trainer.sampler.fell_back is None
    assert all(torch.equal(a, b) for a, b in zip(dynamic, static, strict=True))


def test_a_failing_static_cache_falls_back_to_the_same_samples(tiny, monkeypatch):
    trainer = make_trainer(tiny)
    batches = _batches(trainer, 1)
    trainer.sampler.static = False
    reference = _sample(trainer, batches, 0, 1, 0)
    trainer.sampler.static = True
    original = OnPolicySampler._generate

    def broken(self, model, config, seed, static, **inputs):
        if static:
            raise RuntimeError("inductor could not compile")
        return original(self, model, config, seed, static, **inputs)

    monkeypatch.setattr(OnPolicySampler, "_generate", broken)
    assert torch.equal(_sample(trainer, batches, 0, 1, 0)[0], reference[0])
    assert not trainer.sampler.static and "inductor" in trainer.sampler.fell_back


def test_on_policy_first_tokens_follow_the_students_distribution(tiny):
    """Through the whole path (TRL's generate_on_policy_outputs, the sampler, generate): the
    first sampled token of 6,000 copies of one prompt is distributed as softmax(student logits)."""
    trainer = make_trainer(tiny)
    batch = _batches(trainer, 1)[0]
    n = 6000
    prompt, mask = batch["prompts"][:1].repeat(n, 1), batch["prompt_attention_mask"][:1].repeat(n, 1)
    big = {"prompts": prompt, "prompt_attention_mask": mask, "input_ids": prompt, "attention_mask": mask,
           "labels": prompt.clone()}
    model = trainer.model
    with torch.no_grad():
        probs = torch.softmax(model(input_ids=prompt[:1], attention_mask=mask[:1]).logits[0, -1].double(), -1)
    trainer.sample_on_policy([big], 0, 1, 0)
    first = big["input_ids"][:, prompt.shape[1]]
    freq = torch.bincount(first, minlength=probs.numel()).double() / n
    # 5 sigma of a binomial frequency at n = 6000 (at most 0.032): a fixed seed, so no flakes
    tol = 5 * (probs * (1 - probs) / n).sqrt() + 1e-3
    assert ((freq - probs).abs() <= tol).all(), (freq - probs).abs().max()
