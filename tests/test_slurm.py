"""The workflow through a REAL Slurm cluster: slurmctld + slurmd (slurm-wlm from Debian) on
127.0.0.1, started here by tests/slurm/setup-slurm.sh and stopped by PID afterwards. The smoke
world's chain toy -> data -> SFT goes through sbatch with snakemake-executor-plugin-slurm."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
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


def test_smoke_chain_runs_through_sbatch(slurm, tmp_path):
    results = tmp_path / "results"
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
