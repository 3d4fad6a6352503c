"""kdtools.gkd_trainer's pieces that need no training run: the inverse-CDF sampler draws from
softmax(scores / T) exactly (TRL's top_k=0, top_p=1 sampling), and the GPU paths stay off on CPU."""

from __future__ import annotations

import torch

from kdtools.gkd_trainer import InverseCdfSampler, chunk_tokens, liger_available


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


def test_gpu_paths_are_off_on_cpu_and_the_loss_chunk_is_flat_in_the_vocabulary():
    if not torch.cuda.is_available():
        assert not liger_available()
    assert chunk_tokens(32000) * 32000 <= 1 << 24 and chunk_tokens(256000) * 256000 <= 1 << 24
