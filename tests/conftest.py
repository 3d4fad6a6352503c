"""Shared fixtures: offline environment, the smoke world built once per session, a Tulu-schema
dataset written locally. Everything here is CPU-only and needs no network."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OFFLINE_ENV = {
    "WANDB_MODE": "offline",
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRL_EXPERIMENTAL_SILENCE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
os.environ.update(OFFLINE_ENV)


def kdtools(*args: str, results: Path, world: str = "smoke", check: bool = True,
            env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real `kdtools` CLI in a subprocess, as a user would."""
    cmd = [sys.executable, "-m", "kdtools.cli", "--world", world, "--results", str(results), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=results.parent,
                          env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture(scope="session")
def smoke_results(tmp_path_factory) -> Path:
    """A results root with the smoke world built and its data subsets written."""
    results = tmp_path_factory.mktemp("smoke") / "results"
    results.mkdir()
    kdtools("toy", results=results)
    kdtools("data", results=results)
    return results


def copy_smoke_world(smoke_results: Path, results: Path) -> Path:
    """A new results root holding the smoke world and its general data subsets, nothing else."""
    import shutil

    from kdtools.world import load_world

    for part in ("world", f"data/{load_world('smoke').data.name}"):
        shutil.copytree(smoke_results / "smoke" / part, results / "smoke" / part)
    return results


@pytest.fixture
def fresh_smoke(smoke_results, tmp_path) -> Path:
    """A results root of the test's own: nothing that other tests wrote since (domain data,
    models, evals)."""
    return copy_smoke_world(smoke_results, tmp_path / "results")


def tulu_rows(n: int, seed: int = 0) -> list[dict]:
    """Rows in allenai/tulu-3-sft-mixture's schema (id, messages, source)."""
    rows = []
    for i in range(n):
        a, b = (i * 7 + seed) % 50, (i * 13 + seed) % 50
        messages = [{"role": "user", "content": f"What is {a} plus {b}?"},
                    {"role": "assistant", "content": f"{a} plus {b} is {a + b}."}]
        if i % 5 == 0:
            messages.insert(0, {"role": "system", "content": "You are a helpful assistant."})
        rows.append({"id": f"fixture_{i}", "messages": messages, "source": "fixture/arith"})
    return rows


def other_tokenizer_model(folder: Path) -> Path:
    """A tiny Llama whose tokenizer is not the smoke world's (a teacher of another family)."""
    from transformers import LlamaForCausalLM

    from kdtools.toy.pretrain import llama_config
    from kdtools.toy.tokenizer import train_tokenizer

    tokenizer = train_tokenizer(["a completely different corpus of text"] * 50, vocab_size=300)
    LlamaForCausalLM(llama_config(tokenizer, 32, 1, 64, 128)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def write_jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def one_line_error(result, *needles: str) -> None:
    """A CLI result (typer's CliRunner) that failed the kdtools way: exit 2, one stderr line
    starting 'error:' and naming every needle."""
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:")
    for needle in needles:
        assert needle in lines[0], lines[0]


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` need CUDA: skipped (and reported as skipped) on CPU machines."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
