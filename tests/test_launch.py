"""The multi-GPU launch command: what it builds, and that its pieces are real."""

from __future__ import annotations

import shlex
import subprocess

import pytest
import yaml

from kdtools.launch import ZERO3, launch_command

ARGV = ["--world", "paper", "sft", "--model", "70b", "--data", "40k"]


def test_single_gpu_is_plain_kdtools():
    assert launch_command(ARGV, 1, 1) == "kdtools --world paper sft --model 70b --data 40k"
    assert launch_command(ARGV, 1, 0).startswith("kdtools ")  # CPU


def test_multi_node_srun_accelerate_zero3():
    cmd = launch_command(ARGV, nodes=4, gpus_per_node=8)
    outer = shlex.split(cmd)
    assert outer[:5] == ["srun", "--nodes=4", "--ntasks-per-node=1", "--kill-on-bad-exit=1", "bash"]
    script = outer[-1]
    assert script.startswith('MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1); ')
    inner = shlex.split(script.split("; ", 1)[1])
    assert inner[:2] == ["accelerate", "launch"]
    opts = dict(zip(inner[2:16:2], inner[3:16:2], strict=True))
    assert opts == {"--config_file": str(ZERO3), "--num_machines": "4", "--num_processes": "32",
                    "--machine_rank": "$SLURM_NODEID", "--main_process_ip": "$MASTER_ADDR",
                    "--main_process_port": "29500", "-m": "kdtools.cli"}
    assert inner[16:] == ARGV


def test_script_expands_in_bash_per_node():
    """The node-specific variables expand inside each srun task, not when the line is built."""
    cmd = launch_command(ARGV, nodes=2, gpus_per_node=8)
    script = shlex.split(cmd)[-1].replace("accelerate launch", "echo accelerate launch")
    script = script.replace("$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | head -n 1)", "node-a")
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True,
                         env={"SLURM_NODEID": "1", "PATH": "/usr/bin:/bin"}).stdout
    assert "--machine_rank 1" in out and "--main_process_ip node-a" in out


def test_packaged_zero3_config():
    config = yaml.safe_load(ZERO3.read_text())
    assert config["distributed_type"] == "DEEPSPEED"
    assert config["deepspeed_config"]["zero_stage"] == 3
    assert config["deepspeed_config"]["zero3_init_flag"] is True


def test_bad_sizes():
    with pytest.raises(ValueError):
        launch_command(ARGV, nodes=0, gpus_per_node=8)
