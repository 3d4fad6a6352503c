"""`kdtools publish`: upload a trained model folder, its model card included, to the Hugging Face Hub.

    HF_TOKEN=hf_... kdtools publish results/paper/models/3b/gkd/general/40k --repo my-org/llama-3b-gkd-40k
    kdtools publish results/toy/models/1b/gkd/general/10k --repo me/toy-gkd --private --world toy

Checked first, each refused with one line and exit 2 before anything is uploaded: the folder is a
finished kdtools run (it has run.json), HF_TOKEN is set, --repo is ORG/NAME, the hub is not
switched off (HF_HUB_OFFLINE=1). Then the model card is remade from the current files
(kdtools.modelcard: scores with intervals, receipts), the repository is created when missing
(private with --private; an existing one keeps its visibility) and the folder goes up in one
commit through huggingface_hub's HfApi (HF_ENDPOINT points it at another hub). Uploaded: weights,
tokenizer, config, run.json, receipts.json and README.md; hidden files (locks, staging) are not.
The token goes to huggingface_hub only; it is never printed or written (a card or manifest that
contained it would be scrubbed anyway: kdtools.manifest).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from kdtools import manifest, modelcard
from kdtools.errors import KdError
from kdtools.world import World

console = Console(stderr=True, soft_wrap=True)
REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
IGNORE = [".*", "**/.*", "*.lock", "trainer/**"]


@dataclass(frozen=True)
class PublishJob:
    world: World
    folder: Path
    repo: str
    private: bool


def make_job(world: World, model: Path, repo: str, private: bool = False) -> PublishJob:
    folder = Path(model)
    if not folder.is_dir():
        raise KdError(f"{folder} is not a folder: pass a trained model folder (results/<world>/models/...)")
    if manifest.read_manifest(folder) is None:
        raise KdError(f"{folder} has no run.json: not a finished kdtools run; train it to completion (or pass "
                      "the model's own folder) before publishing")
    if not REPO.match(repo) or "--" in repo or ".." in repo or repo.endswith(".git"):
        raise KdError(f"--repo {repo!r} is not a hub repository id: write ORG/NAME (letters, digits, '-', '_', '.')")
    if not os.environ.get("HF_TOKEN"):
        raise KdError("HF_TOKEN is not set: export HF_TOKEN=<a write token from https://huggingface.co/settings/"
                      "tokens> and rerun")
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise KdError("HF_HUB_OFFLINE is set, so huggingface_hub will not upload: unset it to publish")
    return PublishJob(world, folder, repo, private)


def run(job: PublishJob) -> dict:
    """Refresh the card, create the repository if needed, upload the folder; -> what was done."""
    import httpx2  # huggingface_hub 2.x's HTTP client (pinned in pyproject.toml)
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    modelcard.update(job.folder, job.world)
    run_ = manifest.read_manifest(job.folder) or {}
    api = HfApi(token=os.environ["HF_TOKEN"])
    message = f"kdtools publish: {(run_.get('dims') or {}).get('method')} run {run_.get('config_hash')}"
    try:
        url = api.create_repo(job.repo, private=True if job.private else None, exist_ok=True, repo_type="model")
        info = api.upload_folder(repo_id=job.repo, folder_path=str(job.folder), repo_type="model",
                                 commit_message=message, ignore_patterns=IGNORE)
    except HfHubHTTPError as exc:
        status = getattr(exc.response, "status_code", "?")
        raise KdError(f"the hub refused publishing to {job.repo} (HTTP {status}): check that HF_TOKEN may write "
                      f"to {job.repo.split('/')[0]}") from None
    except ValueError as exc:   # e.g. the hub's check of the card's metadata ("Invalid metadata in README.md")
        lines = [x.strip("- ") for x in str(exc).splitlines() if x.strip()]
        raise KdError(f"publishing to {job.repo} failed: {'; '.join(lines)} (the card: "
                      f"{job.folder / modelcard.CARD})") from None
    except httpx2.HTTPError as exc:
        raise KdError(f"cannot reach the hub at {api.endpoint} ({type(exc).__name__}): check the network or "
                      "HF_ENDPOINT") from None
    console.print(f"[green]published[/] {job.folder} -> {url} (commit {info.oid})")
    return {"repo": job.repo, "url": str(url), "commit": info.oid, "private": job.private}
