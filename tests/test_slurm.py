"""The workflow through a REAL Slurm cluster: slurmctld + slurmd (slurm-wlm from Debian) on
127.0.0.1, started here by tests/slurm/setup-slurm.sh and stopped by PID afterwards. The smoke
world's chain toy -> data -> SFT goes through sbatch with snakemake-executor-plugin-slurm; then
a running training is signalled as before its time limit (the retry resumes it), cancelled
(Snakemake reports it; the rerun completes), and its node crashes midway (Slurm requeues the
job, which resumes from its checkpoint)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "tests" / "slurm"
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A one-node cluster for this module; the daemons it started are stopped by PID."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("starting slurmctld/slurmd needs root on a Debian-like machine (CI runs as root)")
    base = tmp_path_factory.mktemp("slurm-ci")
    env = {**os.environ, "SLURM_CI_BASE": str(base)}
    setup = subprocess.run(["bash", str(SCRIPTS / "setup-slurm.sh")], env=env, capture_output=True,
                           text=True, timeout=900)
    try:
        assert setup.returncode == 0, setup.stderr[-4000:]
        yield {"SLURM_CONF": str(base / "etc" / "slurm.conf")}
    finally:
        down = subprocess.run(["bash", str(SCRIPTS / "teardown-slurm.sh")], env=env, capture_output=True,
                              text=True, timeout=300)
        for name in ("slurmctld", "slurmd"):
            pid_file = base / "run" / f"{name}.pid"
            if pid_file.is_file():
                pid = pid_file.read_text().strip()
                assert not Path(f"/proc/{pid}").exists(), f"{name} (pid {pid}) still running:\n{down.stderr}"


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """One results root for the module: the chain test builds the world and data once."""
    return tmp_path_factory.mktemp("slurm-results") / "results"


def test_smoke_chain_runs_through_sbatch(slurm, results):
    target = results / "smoke" / "models" / "1b" / "sft" / "general" / "10k" / "run.json"
    env = {**os.environ, **slurm, "WANDB_MODE": "disabled",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    cmd = [SNAKEMAKE, str(target), "--profile", "tests/slurm/profile", "--config", "world=smoke",
           f"results={results}"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=1200)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-5000:]
    assert target.is_file()
    ids = re.findall(r"has been submitted with SLURM jobid (\d+)", log)
    assert len(set(ids)) == 3, log[-3000:]                   # toy_world, data, sft: one sbatch each
    jobs = subprocess.run(["squeue", "--states=all", "-h", "-o", "%i %T %j"], env=env, capture_output=True,
                          text=True, check=True).stdout.split("\n")
    states = {line.split()[0]: line.split()[1] for line in jobs if line.strip()}
    assert all(states.get(i) == "COMPLETED" for i in ids), (ids, states)
    again = subprocess.run(cmd + ["-n"], cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    assert "Nothing to be done" in again.stdout + again.stderr


@pytest.fixture(autouse=True)
def no_snakemake_left(request):
    """A failed test must not leave its background Snakemake submitting jobs."""
    started: list[subprocess.Popen] = []
    request.node.background = started
    yield
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# Epochs per size: ~75 optimizer steps each, time enough to interrupt a training on any machine.
EPOCHS = {"20k": 6, "40k": 3, "full": 1}


def checkpointing_world(results: Path, size: str) -> Path:
    """The smoke world, checkpointing every 2 steps, with EPOCHS[size] epochs (same name, so the
    same world and data)."""
    world = results.parent / f"smoke-ckpt-{size}.yaml"
    text = (REPO / "workflow" / "config" / "smoke.yaml").read_text()
    text = text.replace("logging_steps: 2", "logging_steps: 2\n  save_steps: 2")
    world.write_text(text.replace("  epochs: 2\n", f"  epochs: {EPOCHS[size]}\n", 1))
    return world


def start_training(request, slurm, results, size: str, *extra: str):
    """Snakemake on the sft of `size` through Slurm, in the background, once the world and data
    exist (the chain test made them); -> (process, env, the job's Slurm id, its staging folder)."""
    env = {**os.environ, **slurm, "WANDB_MODE": "disabled",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    target = results / "smoke" / "models" / "1b" / "sft" / "general" / size / "run.json"
    cmd = [SNAKEMAKE, str(target), "--profile", "tests/slurm/profile", "--rerun-triggers", "mtime",
           "--config", f"world={checkpointing_world(results, size)}", f"results={results}", *extra]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    request.node.background.append(proc)
    trainer = target.parent.parent / f".{size}.partial" / "trainer"
    deadline = time.time() + 600
    while not any(trainer.glob("checkpoint-*")):
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read()[-4000:]
        time.sleep(0.2)
    running = subprocess.run(["squeue", "-h", "-t", "RUNNING", "-o", "%i %k"], env=env, capture_output=True,
                             text=True, check=True).stdout.split("\n")
    (job,) = [line.split()[0] for line in running if "rule_sft" in line]
    return proc, env, cmd, job, target


def all_steps(manifest: Path) -> bool:
    """The run trained every step of its epochs (smoke: micro-batches of 4, 2 per step)."""
    run = json.loads(manifest.read_text())
    m, epochs = run["metrics"], run["config"]["train"]["epochs"]
    batches = -(-(m["rows"] - m["rows_dropped_too_long"]) // 4)
    return m["steps"] == epochs * -(-batches // 2)


def failed_then_rerun(proc, env, cmd, target) -> None:
    """Snakemake reports the lost job and stops with nothing finished; a rerun completes it."""
    log = proc.communicate(timeout=900)[0] if isinstance(proc, subprocess.Popen) else proc.stdout
    assert proc.returncode != 0 and "Error in rule sft" in log, log[-5000:]
    assert not target.exists()
    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=900)
    assert again.returncode == 0, (again.stdout + again.stderr)[-5000:]
    assert all_steps(target)


def test_the_time_limit_signal_checkpoints_and_the_retry_resumes(request, slurm, results):
    proc, env, cmd, job, target = start_training(request, slurm, results, "20k", "--retries", "1")
    # what --signal=TERM@600 does ten minutes before the limit: TERM to the job's steps
    subprocess.run(["scancel", "--signal=TERM", job], env=env, check=True)
    log = proc.communicate(timeout=900)[0]
    assert proc.returncode == 0, log[-5000:]
    ids = re.findall(r"has been submitted with SLURM jobid (\d+)", log)
    assert len(ids) == 2 and ids[0] == job, log[-3000:]        # the signalled job, then its retry
    assert all_steps(target)
    rule_log = (results / "smoke" / "logs").rglob("*20k*.log")
    assert any("resuming from" in p.read_text() for p in rule_log)


def test_a_cancelled_job_is_reported_and_the_rerun_completes(request, slurm, results):
    proc, env, cmd, job, target = start_training(request, slurm, results, "40k")
    subprocess.run(["scancel", job], env=env, check=True)
    failed_then_rerun(proc, env, cmd, target)


def test_a_node_crash_midway_requeues_the_job_and_it_resumes(request, slurm, results):
    proc, env, cmd, job, target = start_training(request, slurm, results, "full")
    base = Path(slurm["SLURM_CONF"]).parents[1]
    node = subprocess.run(["sinfo", "-h", "-N", "-o", "%N"], env=env, capture_output=True, text=True,
                          check=True).stdout.split()[0]
    # The node dies: its slurmd, the job's slurmstepd and every process of the job, at once.
    in_job = [int(p.parent.name) for p in Path("/proc").glob("[0-9]*/environ")
              if f"SLURM_JOB_ID={job}\0".encode() in _read(p)]
    slurmd = int((base / "run" / "slurmd.pid").read_text())
    stepds = subprocess.run(["pgrep", "-x", "slurmstepd"], capture_output=True, text=True).stdout.split()
    for pid in [slurmd, *map(int, stepds), *in_job]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
    # slurmctld declares the node DOWN (here at once, not after SlurmdTimeout) and requeues its
    # batch job; the node reboots and returns to service; the requeue's hold-off is skipped.
    scontrol = ["scontrol", "update", f"NodeName={node}"]
    subprocess.run([*scontrol, "State=DOWN", "Reason=crash-test"], env=env, check=True)
    deadline = time.time() + 120
    while "PENDING" not in _state(env, job):
        assert time.time() < deadline, _state(env, job)
        time.sleep(0.5)
    subprocess.run(["slurmd", "-f", slurm["SLURM_CONF"]], env=env, check=True)
    # While the node is still DOWN, the restarted slurmd receives the controller's kill of the lost
    # run; resumed at once, that kill lands on the requeued run instead (seen in CI: SIGTERM 1 s in).
    time.sleep(8)
    subprocess.run([*scontrol, "State=RESUME"], env=env)  # unless ReturnToService already did
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], env=env, check=True)
    log = proc.communicate(timeout=900)[0]
    assert proc.returncode == 0, log[-5000:]                  # nothing lost: Snakemake completes
    assert len(set(re.findall(r"has been submitted with SLURM jobid (\d+)", log))) == 1   # requeued, same id
    assert all_steps(target)
    assert "resuming from" in (results / "smoke" / "logs" / "sft" / "1b" / "general" / "full.log").read_text()


def _state(env, job: str) -> str:
    return subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], env=env, capture_output=True, text=True).stdout


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""
