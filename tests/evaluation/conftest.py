"""Fixtures for the eval tests: COMET's own environment and a tiny COMET checkpoint."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).parent


def _has_comet(python: Path) -> bool:
    return python.is_file() and subprocess.run([str(python), "-I", "-c", "import comet"],
                                               capture_output=True).returncode == 0


@pytest.fixture(scope="session")
def comet_python() -> Path:
    """KDTOOLS_COMET_PYTHON, or envs/comet-venv (created once with `make comet-env`, ~90 s of
    PyPI downloads); skipped when it cannot be built (no PyPI)."""
    env = os.environ.get("KDTOOLS_COMET_PYTHON")
    if env and env != "none":
        return Path(env)
    python = REPO / "envs" / "comet-venv" / "bin" / "python"
    if not _has_comet(python):
        proc = subprocess.run(["make", "comet-env"], cwd=REPO, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0 or not _has_comet(python):
            pytest.skip(f"COMET environment could not be built: {proc.stderr.strip()[-300:]}")
    return python


@pytest.fixture(scope="session")
def tiny_comet(comet_python, tmp_path_factory) -> Path:
    """The .ckpt of a tiny COMET RegressionMetric built offline (make_tiny_comet.py)."""
    out = tmp_path_factory.mktemp("tiny-comet")
    subprocess.run([str(comet_python), "-I", str(HERE / "make_tiny_comet.py"), str(out)], check=True,
                   capture_output=True)
    return out / "checkpoints" / "model.ckpt"
