"""The launch command of several ranks: what it builds, and that its pieces are real."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

import pytest
import yaml

from kdtools.launch import ZERO3, ZERO3_JSON, from_resources, launch_command, rank_command

ARGV = ["--world", "paper", "sft", "--model", "70b", "--data", "40k"]


def test_one_rank_is_plain_kdtools():
    assert launch_command(ARGV) == "kdtools --world paper sft --model 70b --data 40k"
    assert launch_command(ARGV, 1, 1, 8, gpus=True).startswith("kdtools ")


def test_several_ranks_go_through_the_launcher_which_picks_the_line_where_it_runs():
    cmd = shlex.split(launch_command(ARGV, nodes=4, tasks_per_node=8, cpus_per_task=8, gpus=True))
    assert cmd[:4] == ["python", "-m", "kdtools.launch", "--exec"]
    assert cmd[4:9] == ["--nodes=4", "--tasks-per-node=8", "--cpus-per-task=8", "--gpus", "--"]
    assert cmd[9:] == ARGV


def test_inside_slurm_one_srun_step_has_a_task_per_rank():
    outer = shlex.split(rank_command(ARGV, 4, 8, 8, gpus=True))
    assert outer[:6] == ["srun", "--nodes=4", "--ntasks-per-node=8", "--kill-on-bad-exit=1", "--mem=0",
                         "--cpus-per-task=8"]
    assert outer[6:8] == ["bash", "-c"]
    env, run = outer[8].split("; exec ")
    assert shlex.split(run) == ["kdtools", *ARGV]
    assert f"KDTOOLS_DEEPSPEED={ZERO3_JSON}" in env
    assert "KDTOOLS_DEEPSPEED" not in rank_command(ARGV, 1, 2, gpus=False)      # CPU ranks: gloo, no DeepSpeed


def test_each_task_gets_its_rank_from_slurm_and_a_port_of_its_job():
    """The variables expand inside each task (here: bash with a task's Slurm variables)."""
    script = shlex.split(rank_command(ARGV, 2, 8))[-1].replace("exec kdtools", "echo kdtools")
    script = script.replace('$(scontrol show hostnames "$SLURM_STEP_NODELIST" | head -n 1)', "node-a")
    script += '; echo "$MASTER_ADDR $MASTER_PORT $RANK $LOCAL_RANK $WORLD_SIZE $LOCAL_WORLD_SIZE"'
    task = {"SLURM_PROCID": "9", "SLURM_LOCALID": "1", "SLURM_NTASKS": "16", "SLURM_NTASKS_PER_NODE": "8",
            "SLURM_JOB_ID": "123456", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True, env=task).stdout
    assert out.splitlines()[-1] == "node-a 23456 9 1 16 8"        # port 20000 + job id mod 10000
    other = {**task, "SLURM_JOB_ID": "123457"}
    out2 = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True, env=other).stdout
    assert out2.split()[-5] == "23457"                              # the next job on the node: its own port


def test_outside_slurm_torchrun_on_this_machine():
    line = rank_command(ARGV, 1, 8, gpus=True, slurm=False)
    assert line.startswith(f"KDTOOLS_DEEPSPEED={ZERO3_JSON} torchrun --standalone --nproc_per_node=8 -m kdtools.cli")
    with pytest.raises(ValueError, match="need Slurm"):
        rank_command(ARGV, 2, 8, slurm=False)


def test_the_launcher_prints_the_slurm_line_and_refuses_what_cannot_run():
    env = {**os.environ, "SLURM_JOB_ID": "5"}
    env.pop("SLURM_STEP_ID", None)
    shown = subprocess.run([sys.executable, "-m", "kdtools.launch", "--nodes=2", "--tasks-per-node=4", "--",
                            "sft"], capture_output=True, text=True, check=True).stdout
    assert shown.startswith("srun --nodes=2 --ntasks-per-node=4 ")
    bad = subprocess.run([sys.executable, "-m", "kdtools.launch", "--exec", "--nodes=2", "--", "sft"],
                         capture_output=True, text=True, env={k: v for k, v in env.items() if k != "SLURM_JOB_ID"})
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error: 2 nodes need Slurm")
    zero = subprocess.run([sys.executable, "-m", "kdtools.launch", "--tasks-per-node=0", "--", "sft"],
                          capture_output=True, text=True)
    assert zero.returncode == 2 and zero.stderr.count("\n") == 1 and "must be >= 1" in zero.stderr


def test_the_launch_follows_the_submitted_resources():
    Res = dict
    res = Res(nodes=1, tasks_per_node=2, mpi="srun", cpus_per_task=1, gres=None)
    assert "--tasks-per-node=2" in from_resources(["sft"], res)
    assert "--gpus" in from_resources(["sft"], Res(res, gres="gpu:2"))
    assert from_resources(["sft"], Res(nodes=1, cpus_per_task=4)) == "kdtools sft"
    with pytest.raises(ValueError, match="mpi='srun'"):
        from_resources(["sft"], Res(nodes=1, tasks_per_node=2))   # an srun inside the plugin's srun


def test_packaged_deepspeed_configs():
    config = yaml.safe_load(ZERO3.read_text())
    assert config["distributed_type"] == "DEEPSPEED"
    assert config["deepspeed_config"]["zero_stage"] == 3
    assert config["deepspeed_config"]["zero3_init_flag"] is True
    ds = json.loads(ZERO3_JSON.read_text())
    assert ds["zero_optimization"]["stage"] == 3
    assert ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig

    assert HfTrainerDeepSpeedConfig(str(ZERO3_JSON)).is_zero3()


def test_bad_sizes():
    with pytest.raises(ValueError):
        launch_command(ARGV, nodes=0, tasks_per_node=8)
