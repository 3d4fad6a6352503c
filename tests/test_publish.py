"""`kdtools publish` up to the Hub's API. The Hub cannot be reached from here, so the test starts
a local HTTP server that answers the four endpoints an upload uses (create the repository,
validate the card's metadata, ask how to upload each file, commit) and records every request; HF_ENDPOINT points the real
huggingface_hub client at it, so everything on our side of the wire runs for real: the card is
refreshed, the repository created with the right visibility and token, and the folder committed.
The server answers "regular" for every file (contents go inline in the commit), so no LFS/Xet
storage is involved; what a real Hub does with a commit is not tested."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from typer.testing import CliRunner

from kdtools.cli import app
from tests.conftest import kdtools, one_line_error
from tests.test_receipts import run_json

TOKEN = "hf_testTokenThatIsNotReal0123456789"


class FakeHub(BaseHTTPRequestHandler):
    seen: list = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.seen.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        base = f"http://127.0.0.1:{self.server.server_address[1]}"
        if self.path == "/api/repos/create":
            payload = json.loads(body)
            reply = {"url": f"{base}/{payload['organization']}/{payload['name']}"}
        elif self.path == "/api/validate-yaml":       # the Hub checks a README.md's metadata first
            reply = {"errors": [], "warnings": []}
        elif "/preupload/" in self.path:
            reply = {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                               for f in json.loads(body)["files"]]}
        elif "/commit/" in self.path:
            repo = self.path.split("/api/models/")[1].split("/commit/")[0]
            reply = {"commitUrl": f"{base}/{repo}/commit/0123abcd", "commitOid": "0123abcd", "pullRequestUrl": None}
        else:
            self.send_response(404)
            self.end_headers()
            return
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def hub():
    FakeHub.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", FakeHub.seen
    server.shutdown()


def model_folder(results):
    world_dir = results / "smoke"
    run = run_json(world_dir, "1b", "gkd", "general", "10k", 7200.0, init="sft", teacher="70b")
    folder = world_dir / "models" / "1b" / "gkd" / "general" / "10k"
    (folder / "config.json").write_text('{"model_type": "llama"}')
    (folder / "model.safetensors").write_bytes(bytes(range(256)) * 8)
    (folder / ".partial-debris").write_text("not for the hub")
    return folder, run


def test_publish_uploads_the_folder_with_its_card(hub, tmp_path):
    endpoint, seen = hub
    folder, run = model_folder(tmp_path / "results")
    env = {"HF_ENDPOINT": endpoint, "HF_TOKEN": TOKEN, "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_TELEMETRY": "1",
           "HF_HUB_DISABLE_PROGRESS_BARS": "1", "WANDB_MODE": "disabled"}
    proc = kdtools("publish", str(folder), "--repo", "my-org/toy-gkd", "--private", results=tmp_path / "results",
                   env=env)
    assert "published" in proc.stderr and TOKEN not in proc.stdout + proc.stderr
    create = next(r for r in seen if r["path"] == "/api/repos/create")
    assert json.loads(create["body"]) | {"type": None} == {"name": "toy-gkd", "organization": "my-org",
                                                          "visibility": "private", "type": None}
    assert all(r["auth"] == f"Bearer {TOKEN}" for r in seen)
    commit = next(r for r in seen if r["path"] == "/api/models/my-org/toy-gkd/commit/main")
    lines = [json.loads(x) for x in commit["body"].splitlines()]
    files = {x["value"]["path"]: base64.b64decode(x["value"]["content"]) for x in lines if x["key"] == "file"}
    assert set(files) == {"README.md", "run.json", "config.json", "model.safetensors"}   # no hidden files
    assert files["model.safetensors"] == (folder / "model.safetensors").read_bytes()
    card = files["README.md"].decode()
    validated = next(r for r in seen if r["path"] == "/api/validate-yaml")
    assert json.loads(validated["body"])["content"] == card
    assert card == (folder / "README.md").read_text()          # the card was refreshed, then uploaded
    for needle in ("# 1b · gkd · general · 10k", "| base model | `", "/smoke/world/base/1b` |",
                   "| teacher | 70b (`/teacher/70b`) |", "/data/general/10k.jsonl", "lmbda 0.5, beta 0.5",
                   f"`{run['config_hash']}`", "2 GPU-hours"):
        assert needle in card, needle
    assert "base_model:" not in card          # a local folder is no hub id: not in the metadata
    assert TOKEN not in card


def test_paper_world_card_names_hub_ids_in_its_metadata(tmp_path):
    from huggingface_hub import ModelCard

    from kdtools import modelcard
    from kdtools.world import load_world

    run = run_json(tmp_path / "paper", "1b", "gkd", "general", "40k", 3600.0, init="sft", teacher="70b")
    card = ModelCard(modelcard.card_text(load_world("paper", tmp_path), run, "40k", [], []))
    assert card.data.base_model == "meta-llama/Llama-3.2-1B"
    assert card.data.datasets == ["allenai/tulu-3-sft-mixture"]
    assert "1 GPU-hours" in card.text and "Not evaluated yet" in card.text


@pytest.mark.parametrize("case", ["no token", "no run.json", "bad repo", "offline"])
def test_publish_refuses_with_one_line(case, tmp_path, monkeypatch):
    folder, _ = model_folder(tmp_path / "results")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    repo = "org/name"
    if case == "no token":
        monkeypatch.delenv("HF_TOKEN")
    elif case == "no run.json":
        (folder / "run.json").unlink()
    elif case == "bad repo":
        repo = "not a repo"
    else:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = CliRunner().invoke(app, ["--world", "smoke", "publish", str(folder), "--repo", repo])
    needle = {"no token": "HF_TOKEN is not set", "no run.json": "has no run.json", "bad repo": "ORG/NAME",
              "offline": "HF_HUB_OFFLINE is set"}[case]
    one_line_error(result, needle)
    assert not (folder / "README.md").exists()          # refused before anything, the card included
