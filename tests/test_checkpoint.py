"""Preemption and crash safety, for real on the smoke world: a training stopped by SIGUSR1 or
SIGTERM checkpoints and exits 75, and the rerun ends bit-for-bit where an uninterrupted run ends;
kill -9 at several moments never leaves a manifest; NaN stops with the last good checkpoint
kept; a corrupt checkpoint, a second job on the same output and a full disk are one line each;
planted secrets appear nowhere."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, copy_smoke_world, kdtools

pytestmark = pytest.mark.slow
STEPS = "8"


@pytest.fixture(scope="module")
def ckpt(smoke_results, tmp_path_factory):
    """A results root with the smoke world, a world file that logs every step and checkpoints
    every 2, and the SFTs a GKD run needs (student and same-data teacher on 40k)."""
    results = copy_smoke_world(smoke_results, tmp_path_factory.mktemp("ckpt") / "results")
    text = (REPO / "workflow" / "config" / "smoke.yaml").read_text()
    world = results.parent / "smoke-ckpt.yaml"
    world.write_text(text.replace("logging_steps: 2", "logging_steps: 1\n  save_steps: 2"))
    for model in ("1b", "70b"):
        kdtools("sft", "--model", model, "--data", "40k", "--max-steps", "2", results=results)
    return {"results": results, "world": str(world)}


def argv(ckpt, verb: str, out: Path, *extra: str) -> list[str]:
    model = ["--student", "1b"] if verb == "gkd" else ["--model", "1b"]
    return [sys.executable, "-m", "kdtools.cli", "--world", ckpt["world"], "--results", str(ckpt["results"]),
            verb, *model, "--data", "40k", "--max-steps", STEPS, "--out", str(out), *extra]


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, **kwargs)


def interrupt(cmd: list[str], when, sig: int, tmp: Path | None = None) -> subprocess.CompletedProcess:
    """Start `cmd`, send `sig` as soon as the path `when` exists (or `when(stderr so far)` is
    true), wait; the test fails if the command finished first."""
    log = (tmp or Path(cmd[cmd.index("--out") + 1]).parent) / f".stderr-{time.monotonic_ns()}"
    with open(log, "w") as sink:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=sink, text=True, cwd=REPO)
        ready = when.exists if isinstance(when, Path) else lambda: when(log.read_text())
        while proc.poll() is None and not ready():
            time.sleep(0.01)
        assert proc.poll() is None, f"finished before {when} happened:\n{log.read_text()[-2000:]}"
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, log.read_text())


def partial(out: Path) -> Path:
    return out.parent / f".{out.name}.partial"


def new_checkpoint(out: Path, at_least: int = 1):
    """-> a condition for `interrupt`: a checkpoint folder of step >= at_least has appeared that
    was not there before (complete or still being written; the newest replaces older ones)."""
    trainer = partial(out) / "trainer"
    before = {p.name for p in trainer.glob("checkpoint-*")}

    def appeared(stderr: str) -> bool:
        return any(p.name not in before and int(p.name.rsplit("-", 1)[1]) >= at_least
                   for p in trainer.glob("checkpoint-*"))

    return appeared


def error_lines(proc) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("error:")]


def weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def assert_same_run(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 1e-6
    ma, mb = (json.loads((f / "run.json").read_text())["metrics"] for f in (a, b))
    assert len(ma["loss_curve"]) == int(STEPS)
    assert ma["loss_curve"] == mb["loss_curve"]          # every step's loss, resumed or not
    assert ma["tokens_seen"] == mb["tokens_seen"]


@pytest.fixture(scope="module")
def sft_reference(ckpt):
    out = ckpt["results"].parent / "sft-reference"
    proc = run(argv(ckpt, "sft", out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_sft_survives_kills_and_a_signal_and_ends_as_an_uninterrupted_run(ckpt, sft_reference, tmp_path):
    out = tmp_path / "interrupted"
    trainer = partial(out) / "trainer"
    # kill -9 while the model loads and while a checkpoint is being written: no manifest, ever
    for moment in (partial(out), new_checkpoint(out)):
        killed = interrupt(argv(ckpt, "sft", out), moment, signal.SIGKILL)
        assert killed.returncode == -signal.SIGKILL
        assert not out.exists() and not (partial(out) / "run.json").exists()
    # Slurm's warning before the time limit: a checkpoint at the end of the step, exit 75
    stopped = interrupt(argv(ckpt, "sft", out), new_checkpoint(out, at_least=4), signal.SIGUSR1)
    assert stopped.returncode == 75, stopped.stderr[-3000:]
    assert "stopped by SIGUSR1" in stopped.stderr and "rerun the same command" in stopped.stderr
    assert not out.exists()                                    # nothing looks finished
    saved = sorted(p.name for p in trainer.glob("checkpoint-*"))
    assert len(saved) == 1 and saved[0] != f"checkpoint-{STEPS}"   # only the newest is kept
    resumed = run(argv(ckpt, "sft", out))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from {trainer / saved[0]}" in resumed.stderr
    assert not partial(out).exists()
    assert_same_run(sft_reference, out)


def test_gkd_stopped_by_sigterm_resumes_with_the_same_on_policy_draws(ckpt, tmp_path):
    reference, out = tmp_path / "reference", tmp_path / "interrupted"
    assert run(argv(ckpt, "gkd", reference)).returncode == 0
    stopped = interrupt(argv(ckpt, "gkd", out), new_checkpoint(out), signal.SIGTERM)
    assert stopped.returncode == 75 and "stopped by SIGTERM" in stopped.stderr, stopped.stderr[-3000:]
    resumed = run(argv(ckpt, "gkd", out))
    assert resumed.returncode == 0 and "resuming from" in resumed.stderr, resumed.stderr[-3000:]
    assert_same_run(reference, out)
    ma, mb = (json.loads((f / "run.json").read_text())["metrics"] for f in (reference, out))
    assert ma["onpolicy_steps"] == mb["onpolicy_steps"] and 0 < ma["onpolicy_steps"] < int(STEPS)
    # the cost counts the stopped invocation too (kept in the staging folder until the resume)
    ca, cb = (json.loads((f / "run.json").read_text())["cost"] for f in (reference, out))
    assert ca["earlier_s"] == 0 and cb["earlier_s"] > 0
    assert cb["device_seconds"] == pytest.approx(cb["wall_s"] * cb["devices_per_node"] + cb["earlier_s"], abs=0.01)


def test_kill_9_during_eval_leaves_no_result(ckpt, sft_reference, tmp_path):
    out = tmp_path / "arc.json"
    cmd = [sys.executable, "-m", "kdtools.cli", "--world", "smoke", "--results", str(ckpt["results"]), "eval",
           "--model", str(sft_reference), "--suite", "arc", "--limit", "2", "--out", str(out)]
    started = []

    def midway(stderr: str) -> bool:  # 2 s after the eval began: loading or generating
        if "suite arc" in stderr and not started:
            started.append(time.time())
        return bool(started) and time.time() > started[0] + 2

    killed = interrupt(cmd, midway, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    assert not out.exists()
    done = run(cmd)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "accuracy" in json.loads(out.read_text())["metrics"]


def test_non_finite_loss_stops_with_the_last_good_checkpoint_kept(ckpt, tmp_path):
    out = tmp_path / "diverged"
    proc = run(argv(ckpt, "sft", out, "--lr", "1e30"))          # Adam at this rate overflows fp32
    assert proc.returncode == 2, proc.stderr[-3000:]
    (line,) = error_lines(proc)
    assert "non-finite" in line and "last good checkpoint" in line and "lower --lr" in line
    kept = list((partial(out) / "trainer").glob("checkpoint-*"))
    assert len(kept) == 1 and str(kept[0]) in line
    import torch

    assert all(torch.isfinite(t).all() for t in weights(kept[0]).values())
    assert not out.exists()


def test_a_corrupt_checkpoint_is_one_line(ckpt, tmp_path):
    out = tmp_path / "corrupt"
    assert interrupt(argv(ckpt, "sft", out), new_checkpoint(out),
                     signal.SIGUSR1).returncode == 75
    (saved,) = (partial(out) / "trainer").glob("checkpoint-*")
    blob = saved / "model.safetensors"
    blob.write_bytes(blob.read_bytes()[:1000])                 # cut short, e.g. by a full disk
    proc = run(argv(ckpt, "sft", out))
    assert proc.returncode == 2
    (line,) = error_lines(proc)
    assert f"checkpoint {saved} cannot be loaded" in line and "delete it" in line


def test_a_second_job_on_the_same_output_fails_clearly_and_the_first_finishes(ckpt, sft_reference, tmp_path):
    out = tmp_path / "contended"
    first = subprocess.Popen(argv(ckpt, "sft", out), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, cwd=REPO)
    while first.poll() is None and not (partial(out) / "trainer").exists():
        time.sleep(0.01)
    second = run(argv(ckpt, "sft", out))
    assert second.returncode == 2
    (line,) = error_lines(second)
    assert f"{out} is being written by kdtools pid {first.pid}" in line and "wait for that job" in line
    assert first.wait(timeout=300) == 0
    assert_same_run(sft_reference, out)


def test_a_full_disk_during_the_save_is_one_line_and_nothing_finished_is_touched(ckpt, sft_reference, tmp_path):
    before = (sft_reference / "run.json").read_text()

    def small_disk():  # writes past 60 kB fail with EFBIG, as they would with ENOSPC
        resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))

    cmd = [sys.executable, "-m", "kdtools.cli", "--world", "smoke", "--results", str(ckpt["results"]),
           "sft", "--model", "1b", "--data", "10k", "--max-steps", "2", "--out", str(sft_reference), "--force"]
    proc = run(cmd, preexec_fn=small_disk)
    assert proc.returncode == 2, proc.stderr[-3000:]
    (line,) = error_lines(proc)
    assert "the disk filled while writing under" in line and "free space there and rerun" in line
    assert (sft_reference / "run.json").read_text() == before      # the finished run is intact
    weights(sft_reference)


def test_planted_secrets_are_written_nowhere(ckpt, tmp_path):
    secrets = {"WANDB_API_KEY": "wandb-fake-key-0123456789abcdef0123456789abcdef",
               "HF_TOKEN": "hf_fakeTokenPlantedByTheTest0123456789"}
    results = copy_smoke_world(ckpt["results"], tmp_path / "results")
    env = {**os.environ, **secrets, "WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path / "wandb")}
    logs = []
    proc = kdtools("sft", "--model", "1b", "--data", "10k", "--max-steps", "2", results=results, env=env)
    logs += [proc.stdout, proc.stderr]
    written = [p for p in [*results.rglob("*"), *(tmp_path / "wandb").rglob("*")] if p.is_file()]
    assert any(p.name == "run.json" for p in written) and any(".wandb" in p.name for p in written)
    for value in secrets.values():
        assert not any(value in text for text in logs)
        assert not [p for p in written if value.encode() in p.read_bytes()]


def _rank(rank: int, port: int, seen) -> None:
    import types

    import torch.distributed as dist

    from kdtools.checkpoint import Guard

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    guard = Guard()
    if rank == 0:
        guard.signal = "SIGTERM"          # only rank 0's node got the signal
    guard.agree(types.SimpleNamespace(device="cpu"))
    seen[rank] = guard.signal
    dist.destroy_process_group()


def test_ranks_agree_to_stop_when_any_one_is_signalled():
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    seen = mp.Manager().dict()
    mp.spawn(_rank, args=(port, seen), nprocs=2, join=True)
    assert seen[0] == "SIGTERM" and seen[1] and "another rank" in seen[1]
