"""The workflow through a REAL Slurm cluster with accounting, as clusters have it: slurmctld,
slurmd, slurmdbd and MariaDB (Debian's packages) on 127.0.0.1, started here by
tests/slurm/setup-slurm.sh and stopped by PID afterwards, driven through the SHIPPED profile
(profiles/slurm). Only what a one-node CPU cluster cannot honour, or what would make the suite
slow, is overridden on the command line: the ranks per node and their CPUs (the node has 2 CPUs
and no GPU) and the first status poll after 2 s instead of 60.

- the smoke chain toy -> data -> SFT goes through sbatch, partition and account from the
  environment (SLURM_PARTITION, SLURM_ACCOUNT), and sacct records them;
- the sbatch lines of paper-world GPU jobs, captured by a recording sbatch;
- a training of 2 ranks (2 tasks of one srun step, the workflow's own launch line), with neither
  variable set (the cluster's defaults), signalled as before its time limit: both ranks save a
  checkpoint, the retry resumes them in the same W&B run, and the loss curve is one process's;
- a cancelled job is reported, and the rerun completes; a node crash requeues the job;
- a W&B sweep agent's time-limit signal reaches both ranks of its run, which resumes."""

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

from tests.conftest import kdtools

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "tests" / "slurm"
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
BIN = str(Path(sys.executable).parent)
QUICK = ["--slurm-init-seconds-before-status-checks", "2"]          # the profile says 60
TWO_RANKS = ["--set-resources", "sft:tasks_per_node=2", "sft:mpi=srun", "sft:cpus_per_task=1"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A one-node cluster with accounting for this module; the daemons it started are stopped
    by PID."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("starting slurmctld/slurmd needs root on a Debian-like machine (CI runs as root)")
    base = tmp_path_factory.mktemp("slurm-ci")
    # not this process's wandb-core (WANDB_SERVICE): the daemons would hand it to every job (user_env)
    env = {**{k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"},
           "SLURM_CI_BASE": str(base), "WITH_ACCOUNTING": "1"}
    setup = subprocess.run(["bash", str(SCRIPTS / "setup-slurm.sh")], env=env, capture_output=True,
                           text=True, timeout=900)
    try:
        assert setup.returncode == 0, setup.stderr[-4000:]
        yield {"SLURM_CONF": str(base / "etc" / "slurm.conf")}
    finally:
        down = subprocess.run(["bash", str(SCRIPTS / "teardown-slurm.sh")], env=env, capture_output=True,
                              text=True, timeout=300)
        for name in ("slurmctld", "slurmd", "slurmdbd"):
            pid_file = base / "run" / f"{name}.pid"
            if pid_file.is_file():
                pid = pid_file.read_text().strip()
                assert not Path(f"/proc/{pid}").exists(), f"{name} (pid {pid}) still running:\n{down.stderr}"


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """One results root for the module: the chain test builds the world and data once."""
    return tmp_path_factory.mktemp("slurm-results") / "results"


def user_env(slurm, **extra) -> dict:
    """A user's shell: the venv's kdtools on PATH, W&B off, no partition/account unless given, and
    not this pytest process's wandb-core (WANDB_SERVICE, set once a test here ran wandb in-process):
    a job that inherits it attaches to that service, which may still hold the run a TERM'd attempt
    left, so the retry's resume failed with "run ID ... is in use" (CI, 2026-12-01)."""
    env = {k: v for k, v in os.environ.items() if k not in ("SLURM_PARTITION", "SLURM_ACCOUNT", "WANDB_SERVICE")}
    return {**env, **slurm, "WANDB_MODE": "disabled", "PATH": f"{BIN}:{os.environ['PATH']}", **extra}


def shipped(target, results, world="smoke", *extra) -> list[str]:
    return [SNAKEMAKE, str(target), "--profile", "profiles/slurm", "--config", f"world={world}",
            f"results={results}", *QUICK, *extra]


def sacct(env, job: str, fields: str) -> list[list[str]]:
    out = subprocess.run(["sacct", "-n", "-P", "-j", job, f"--format={fields}"], env=env, capture_output=True,
                         text=True, check=True).stdout
    return [line.split("|") for line in out.splitlines() if line]


def submitted(log: str) -> list[str]:
    return re.findall(r"has been submitted with SLURM jobid (\d+)", log)


def test_the_shipped_profile_reads_partition_and_account_from_the_environment(tmp_path):
    """Snakemake evaluates the profile's expressions (no cluster needed for a dry run)."""
    target = tmp_path / "smoke" / "world" / "run.json"

    def resources(**env):
        proc = subprocess.run(shipped(target, tmp_path, "smoke", "-n"), cwd=REPO, capture_output=True, text=True,
                              env=user_env({}, **env), timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return re.search(r"resources: (.*)", proc.stdout)[1]

    assert "slurm_partition=gpuq, slurm_account=proj-7" in resources(SLURM_PARTITION="gpuq", SLURM_ACCOUNT="proj-7")
    assert "slurm_partition=, slurm_account=," in resources()        # unset: the cluster's defaults


def test_smoke_chain_runs_through_the_shipped_profile(slurm, results):
    target = results / "smoke" / "models" / "1b" / "sft" / "general" / "10k" / "run.json"
    env = user_env(slurm, SLURM_PARTITION="debug", SLURM_ACCOUNT="root")
    cmd = shipped(target, results)
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=1200)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-5000:]
    assert target.is_file()
    ids = submitted(log)
    assert len(set(ids)) == 3, log[-3000:]                   # toy_world, data, sft: one sbatch each
    for job in ids:                                          # what accounting recorded
        assert sacct(env, job, "State,Partition,Account")[0] == ["COMPLETED", "debug", "root"]
    again = subprocess.run(cmd + ["-n"], cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    assert "Nothing to be done" in again.stdout + again.stderr


RECORDING_SBATCH = f"""#!{sys.executable}
# A recording sbatch: appends its arguments (JSON, one call a line), submits nothing.
import json, os, sys
with open(os.environ["SBATCH_RECORD"], "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
sys.exit("recorded, not submitted")
"""


def test_paper_gpu_jobs_sbatch_lines(slurm, tmp_path):
    """What the plugin asks sbatch for the 70b SFT (4 nodes) and the 3b GKD (1 node),
    captured by a recording sbatch first on PATH; every number from kdtools.estimate."""
    from kdtools.estimate import plan_settings, slurm_resources
    from kdtools.world import load_world

    results = tmp_path / "results"
    shim = tmp_path / "bin" / "sbatch"
    shim.parent.mkdir()
    shim.write_text(RECORDING_SBATCH)
    shim.chmod(0o755)
    record = tmp_path / "sbatch.txt"
    env = user_env(slurm, SLURM_PARTITION="debug", SLURM_ACCOUNT="root", SBATCH_RECORD=str(record))
    env["PATH"] = f"{shim.parent}:{env['PATH']}"
    paper = results / "paper"
    made = [paper / "data" / "tulu" / "run.json", paper / "models" / "3b" / "sft" / "general" / "40k" / "run.json",
            paper / "models" / "70b" / "sft" / "general" / "40k" / "run.json"]
    for path in made[:2]:           # the inputs exist: only the target job is submitted
        path.parent.mkdir(parents=True)
        path.write_text("{}")
    jobs = {("sft", "70b"): made[2], ("gkd", "3b"): paper / "models" / "3b" / "gkd" / "general" / "40k" / "run.json"}
    for target in jobs.values():
        if target == jobs[("gkd", "3b")]:
            made[2].parent.mkdir(parents=True)
            made[2].write_text("{}")
        # --retries 0: the recording sbatch refuses every job, and the profile would resubmit it
        proc = subprocess.run(shipped(target, results, "paper", "--retries", "0"), cwd=REPO, capture_output=True,
                              text=True, env=env, timeout=300)
        assert proc.returncode != 0 and "recorded, not submitted" in proc.stdout + proc.stderr
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    assert len(lines) == 2
    world, settings = load_world("paper", results), plan_settings()
    for line, (rule, model) in zip(lines, jobs, strict=True):
        wc = {"model": model} if rule == "sft" else {"student": model}
        res = slurm_resources(world, rule, {**wc, "task": "general", "size": "40k"}, settings)
        args = line
        opts = {a.split("=")[0]: a.split("=", 1)[1] for a in args if a.startswith("--") and "=" in a}
        pairs = dict(zip(args, args[1:], strict=False))
        assert opts["--nodes"] == str(res["nodes"]) and opts["--gres"] == res["gres"]          # GPUs per node
        assert opts["--ntasks-per-node"] == str(res["tasks_per_node"])                         # a task per GPU
        assert opts["--cpus-per-task"] == str(res["cpus_per_task"])
        assert pairs["--mem"] == str(res["mem_mb"]) and pairs["-t"] == str(res["runtime"])
        assert "--signal=TERM@600" in args and pairs["-p"] == "debug" and pairs["-A"] == "root"
        assert "--gpus" not in " ".join(args)                                                 # never per job
    first = lines[0]
    assert "--nodes=4" in first and "--gres=gpu:8" in first and "--ntasks-per-node=8" in first   # 70b: 32 GPUs


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
EPOCHS = {"10k": 11, "20k": 6, "40k": 3, "full": 1}


def checkpointing_world(results: Path, size: str) -> Path:
    """The smoke world, checkpointing every 2 steps, with EPOCHS[size] epochs (same name, so the
    same world and data)."""
    world = results.parent / f"smoke-ckpt-{size}.yaml"
    text = (REPO / "workflow" / "config" / "smoke.yaml").read_text()
    text = text.replace("logging_steps: 2", "logging_steps: 2\n  save_steps: 2")
    world.write_text(text.replace("  epochs: 2\n", f"  epochs: {EPOCHS[size]}\n", 1))
    return world


def wait_for_checkpoint(proc, trainer: Path, deadline_s: float = 600) -> None:
    deadline = time.time() + deadline_s
    while not any(trainer.glob("checkpoint-*")):
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read()[-4000:]
        time.sleep(0.2)


def start_training(request, slurm, results, size: str, *extra: str, env=None):
    """Snakemake on the sft of `size` through Slurm, in the background, once the world and data
    exist (the chain test made them); -> (process, env, command, the job's Slurm id, target)."""
    env = env or user_env(slurm)
    target = results / "smoke" / "models" / "1b" / "sft" / "general" / size / "run.json"
    cmd = shipped(target, results, checkpointing_world(results, size), "--rerun-triggers", "mtime", *extra)
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    request.node.background.append(proc)
    wait_for_checkpoint(proc, target.parent.parent / f".{size}.partial" / "trainer")
    running = subprocess.run(["squeue", "-h", "-t", "RUNNING", "-o", "%i %k"], env=env, capture_output=True,
                             text=True, check=True).stdout.split("\n")
    (job,) = [line.split()[0] for line in running if "rule_sft" in line]
    return proc, env, cmd, job, target


def all_steps(manifest: Path) -> bool:
    """The run trained every step of its epochs (smoke: micro-batches of 4, 8 rows a step)."""
    run = json.loads(manifest.read_text())
    m, epochs = run["metrics"], run["config"]["train"]["epochs"]
    batches = -(-(m["rows"] - m.get("rows_dropped_too_long", 0)) // 4)   # (GKD drops none)
    return m["steps"] == epochs * -(-batches // 2)


def failed_then_rerun(proc, env, cmd, target) -> None:
    """Snakemake reports the lost job and stops with nothing finished; a rerun completes it."""
    log = proc.communicate(timeout=900)[0] if isinstance(proc, subprocess.Popen) else proc.stdout
    assert proc.returncode != 0 and "Error in rule sft" in log, log[-5000:]
    assert not target.exists()
    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=900)
    assert again.returncode == 0, (again.stdout + again.stderr)[-5000:]
    assert all_steps(target)


def test_two_ranks_signalled_before_the_limit_resume_in_the_same_wandb_run(request, slurm, results, tmp_path):
    """The workflow's own launch line with 2 tasks on the node (partition and account unset);
    Slurm's time-limit signal (TERM to the job's steps): both ranks save, exit 75, the retry
    resumes both; one W&B run; the curve of one uninterrupted process at the same global batch."""
    env = user_env(slurm, WANDB_MODE="offline", WANDB_DIR=str(tmp_path))
    proc, env, cmd, job, target = start_training(request, slurm, results, "20k", *TWO_RANKS, env=env)
    subprocess.run(["scancel", "--signal=TERM", job], env=env, check=True)
    log = proc.communicate(timeout=900)[0]
    assert proc.returncode == 0, log[-5000:]
    ids = submitted(log)
    assert len(ids) == 2 and ids[0] == job, log[-3000:]        # the signalled job, then its retry
    for each in ids:
        tasks = {row[0]: row[1] for row in sacct(env, each, "JobID,NTasks")}
        assert tasks[f"{each}.0"] == "2", tasks                 # one srun step of 2 tasks: the ranks
    assert all_steps(target)
    rule_log = (results / "smoke" / "logs" / "sft" / "1b" / "general" / "20k.log").read_text()
    assert rule_log.count("resuming from") == 2 and rule_log.count("done in") == 1
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and len({r.name.rsplit("-", 2)[-2:][0] for r in runs}) == 1    # one run, resumed
    reference = tmp_path / "one"
    kdtools("sft", "--model", "1b", "--data", "20k", "--out", str(reference), results=results,
            world=str(checkpointing_world(results, "20k")))
    one = json.loads((reference / "run.json").read_text())["metrics"]["loss_curve"]
    two = json.loads(target.read_text())["metrics"]["loss_curve"]
    # Steps of the same global batch: the first epoch's full batches of 8 (at an epoch's end, two
    # ranks pad the last global batch with the epoch's first rows: accelerate's even_batches). A
    # logged loss averages the steps since the last log (2 here); the one whose window holds the
    # resume point averages only the resumed part (transformers restarts the sum): leave it out.
    m = json.loads(target.read_text())["metrics"]
    full = (m["rows"] - m["rows_dropped_too_long"]) // 8
    resumed = int(re.search(r"resuming from \S*checkpoint-(\d+)", rule_log)[1])
    first_epoch = [(a, b) for a, b in zip(one, two, strict=True) if a[0] <= full and not a[0] - 2 < resumed < a[0]]
    assert len(first_epoch) >= 4 and max(abs(a[1] - b[1]) for a, b in first_epoch) <= 1e-4, (one[:7], two[:7])


def test_a_cancelled_job_is_reported_and_the_rerun_completes(request, slurm, results):
    # --retries 0: the profile would resubmit it; here the failure report itself is tested
    proc, env, cmd, job, target = start_training(request, slurm, results, "40k", "--retries", "0")
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
    assert len(set(submitted(log))) == 1                      # requeued, same id
    assert all_steps(target)
    assert "resuming from" in (results / "smoke" / "logs" / "sft" / "1b" / "general" / "full.log").read_text()


def test_a_sweep_agents_time_limit_signal_reaches_every_rank_and_the_run_resumes(slurm, results, tmp_path):
    """sweeps/agent.sbatch as shipped (its resources overridden on sbatch's command line for
    this node), its agent replaced by tests/slurm/sweep_agent.py (wandb's AgentProcess with
    forward_signals, no W&B server needed). USR1 to the batch shell, as --signal=B:USR1@600
    sends it: the agent forwards it to srun, srun to both ranks; both save and exit 75. The
    requeued run resumes from the checkpoint and finishes its grid point."""
    world = checkpointing_world(results, "10k")
    env = user_env(slurm, KDTOOLS_SWEEP_AGENT=f"{sys.executable} tests/slurm/sweep_agent.py",
                   SWEEP_TASKS_PER_NODE="2", KDTOOLS_WORLD=str(world), KDTOOLS_RESULTS=str(results),
                   OMP_NUM_THREADS="1")
    kdtools("sft", "--model", "70b", "--data", "10k", results=results)        # the sweep's teacher T_s
    point = results / "smoke" / "models" / "1b" / "gkd" / "general" / "10k+lmbda-0.0+beta-0.9+temperature-0.7"
    sbatch = ["sbatch", "--parsable", "--gres=none", "--ntasks-per-node=2", "--cpus-per-task=1", "--mem=3000",
              "--time=20", f"--output={tmp_path}/sweep-%j.out", "sweeps/agent.sbatch", "smoke/kdtools/sweep"]
    first = subprocess.run(sbatch, cwd=REPO, env=env, capture_output=True, text=True, check=True).stdout.strip()
    deadline = time.time() + 600
    while not any((point.parent / f".{point.name}.partial" / "trainer").glob("checkpoint-*")):
        assert time.time() < deadline and _state(env, first) in ("PENDING\n", "RUNNING\n"), _state(env, first)
        time.sleep(0.5)
    subprocess.run(["scancel", "--batch", "--signal=USR1", first], env=env, check=True)
    _wait_done(env, first)
    out = (tmp_path / f"sweep-{first}.out").read_text()
    assert out.count("SIGUSR1: saving a checkpoint") == 2, out[-4000:]        # both ranks got it
    assert out.count("preempted:") == 1 and not (point / "run.json").exists()       # said once, by rank 0
    assert sacct(env, first, "ExitCode")[0][0] == "75:0"
    second = subprocess.run(sbatch, cwd=REPO, env=env, capture_output=True, text=True, check=True).stdout.strip()
    _wait_done(env, second)
    out = (tmp_path / f"sweep-{second}.out").read_text()
    assert "resuming from" in out and (point / "run.json").is_file(), out[-4000:]
    assert all_steps(point / "run.json")


def _wait_done(env, job: str, timeout_s: float = 600) -> None:
    deadline = time.time() + timeout_s
    while (sacct(env, job, "State") or [["PENDING"]])[0][0] in ("PENDING", "RUNNING", "REQUEUED"):
        assert time.time() < deadline                        # (a job is in sacct a moment after sbatch)
        time.sleep(1)


def _state(env, job: str) -> str:
    return subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], env=env, capture_output=True, text=True).stdout


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""
