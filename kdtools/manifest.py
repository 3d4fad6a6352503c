"""Atomic writes and the provenance manifest (`run.json`) every verb writes last.

A reader may only trust an output folder whose run.json exists: it is written after everything
else, through a temp file and a rename, so a crash at any moment leaves either no manifest or a
complete one. Secrets (W&B key, HF token) are scrubbed from anything that goes through here.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
import subprocess
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from kdtools.paths import MANIFEST

SECRET_ENV_VARS = ("WANDB_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "OPENAI_API_KEY")
VERSIONED_PACKAGES = (
    "kdtools", "torch", "transformers", "trl", "datasets", "accelerate", "tokenizers",
    "deepspeed", "lm_eval", "wandb", "snakemake",
)


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` so that readers see the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(scrub_secrets(text))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are shared on clusters
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_json(path: Path, payload: Any) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def scrub_secrets(text: str) -> str:
    """Replace the value of any secret environment variable found in `text` with '***'."""
    for var in SECRET_ENV_VARS:
        value = os.environ.get(var, "")
        if len(value) >= 6:
            text = text.replace(value, "***")
    return text


def config_hash(config: dict) -> str:
    """Stable hash of a resolved config: same config, same hash, across processes and machines."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def git_commit() -> str | None:
    """The commit of the kdtools checkout in use, with '-dirty' when it has local changes."""
    repo = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (commit + ("-dirty" if dirty else "")) or None


def read_manifest(folder: Path) -> dict | None:
    """The manifest of a finished output folder, or None if the work did not complete."""
    return read_json(Path(folder) / MANIFEST)


def read_json(path: Path) -> dict | None:
    """A JSON file's content, or None when it is missing or unreadable (e.g. cut short)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def reusable(folder: Path, config: dict, force: bool = False) -> dict | None:
    """The manifest of a finished run of exactly this config (unless forced), else None: what
    lets a rerun skip work that is already done."""
    done = read_manifest(folder)
    if done and not force and done.get("config_hash") == config_hash(config):
        return done
    return None


def write_manifest(folder: Path, verb: str, config: dict, started: float, **fields: Any) -> dict:
    """Write `folder/run.json` (resolved config, hash, versions, commit, wall time, extras) last."""
    payload = run_payload(verb, config, started, **fields)
    atomic_write_json(Path(folder) / MANIFEST, payload)
    return payload


def run_payload(verb: str, config: dict, started: float, **fields: Any) -> dict:
    """What run.json holds: resolved config, hash, versions, commit, wall time, extras."""
    return {
        "verb": verb,
        "config": config,
        "config_hash": config_hash(config),
        "versions": versions(),
        "git_commit": git_commit(),
        "host": socket.gethostname(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "wall_time_s": round(time.time() - started, 3),
        **fields,
    }
