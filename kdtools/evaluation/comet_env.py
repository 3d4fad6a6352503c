"""COMET for the translation suite, run in its own environment as a subprocess.

    python = comet_python()            # None when the environment is missing
    result = score(python, "Unbabel/wmt22-comet-da", src, mt, ref)   # {"system_score": 0-1, ...}

unbabel-comet 2.2.7 pins transformers<5 and numpy<2, which cannot share kdtools's environment.
`make comet-env` builds envs/comet-venv (recipe in envs/comet-requirements.txt, conda:
envs/comet.yaml); KDTOOLS_COMET_PYTHON points at any other python that has it. Without one the
translation suite still reports chrF, and says how to enable COMET (metrics.comet = null).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from kdtools.errors import KdError

SCRIPT = Path(__file__).parent / "comet_score.py"
VENV_PYTHON = Path(__file__).resolve().parents[2] / "envs" / "comet-venv" / "bin" / "python"
HOW_TO_ENABLE = (
    "COMET not computed: no COMET environment; build it with `make comet-env` (envs/comet-venv) "
    "or set KDTOOLS_COMET_PYTHON to a python with unbabel-comet 2.2.7"
)


def comet_python() -> Path | None:
    """KDTOOLS_COMET_PYTHON ('none' turns COMET off), else envs/comet-venv/bin/python, else None."""
    env = os.environ.get("KDTOOLS_COMET_PYTHON")
    if env == "none":
        return None
    if env:
        if not Path(env).is_file():
            raise KdError(f"KDTOOLS_COMET_PYTHON={env} does not exist: fix it or unset it to use envs/comet-venv")
        return Path(env)
    return VENV_PYTHON if VENV_PYTHON.is_file() else None


def score(python: Path, model: str, src: list[str], mt: list[str], ref: list[str],
          batch_size: int = 16, gpus: int | None = None) -> dict:
    """COMET scores of the translations, computed by `python` running comet_score.py."""
    with tempfile.TemporaryDirectory(prefix="kdtools-comet-") as tmp:
        inp, out = Path(tmp) / "rows.jsonl", Path(tmp) / "scores.json"
        inp.write_text("".join(json.dumps({"src": s, "mt": m, "ref": r}, ensure_ascii=False) + "\n"
                               for s, m, r in zip(src, mt, ref, strict=True)))
        # -I: isolated, so neither kdtools's folder nor PYTHONPATH leaks into COMET's environment
        cmd = [str(python), "-I", str(SCRIPT), "--model", model, "--input", str(inp), "--output", str(out),
               "--batch-size", str(batch_size)]
        if gpus is not None:
            cmd += ["--gpus", str(gpus)]
        proc = subprocess.run(cmd, stdout=sys.stderr, stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0 or not out.is_file():
            tail = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
            raise KdError(f"COMET scoring failed ({python} {SCRIPT.name}): {tail}")
        return json.loads(out.read_text())
