"""COMET through its own environment, with a tiny checkpoint built offline."""

import pytest

from kdtools.errors import KdError
from kdtools.evaluation import comet_env


def test_comet_scores_in_its_own_environment(comet_python, tiny_comet):
    out = comet_env.score(comet_python, str(tiny_comet), ["a b", "c"], ["the cat sat", "dog"],
                          ["the cat sat on the mat", "a dog runs"], batch_size=2)
    assert out["n"] == 2 and len(out["scores"]) == 2
    assert out["system_score"] == pytest.approx(sum(out["scores"]) / 2, abs=1e-6)
    assert out["comet_version"] == "2.2.7"


def test_comet_failure_is_one_clear_line(comet_python, tmp_path):
    with pytest.raises(KdError, match="COMET scoring failed"):
        comet_env.score(comet_python, str(tmp_path / "missing.ckpt"), ["a"], ["b"], ["c"])


def test_comet_python_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("KDTOOLS_COMET_PYTHON", "none")
    assert comet_env.comet_python() is None
    monkeypatch.setenv("KDTOOLS_COMET_PYTHON", "/nonexistent/python")
    with pytest.raises(KdError, match="KDTOOLS_COMET_PYTHON"):
        comet_env.comet_python()
