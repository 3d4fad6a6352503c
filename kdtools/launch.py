"""The launch command of a training verb inside a Slurm allocation: one function builds it.

    python -m kdtools.launch --nodes 4 --gpus-per-node 8 -- --world paper sft --model 70b --data 40k

One GPU: plain `kdtools ...`. Several GPUs or nodes: `srun` starts one task per node, each runs
`accelerate launch` with the packaged DeepSpeed ZeRO-3 config, all ranks meeting at the first
node of the allocation. The effective batch stays the world's (accumulation shrinks with GPUs).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

ZERO3 = Path(__file__).parent / "accelerate" / "zero3.yaml"
PORT = 29500


def launch_command(argv: list[str], nodes: int = 1, gpus_per_node: int = 1,
                   config: Path = ZERO3, port: int = PORT) -> str:
    """A shell command line running `kdtools <argv>` on nodes x gpus_per_node GPUs."""
    if nodes < 1 or gpus_per_node < 0:
        raise ValueError(f"nodes must be >= 1 and gpus_per_node >= 0, got {nodes}, {gpus_per_node}")
    if nodes * max(gpus_per_node, 1) == 1:
        return shlex.join(["kdtools", *argv])
    accelerate = " ".join([
        "accelerate launch",
        f"--config_file {shlex.quote(str(config))}",
        f"--num_machines {nodes}",
        f"--num_processes {nodes * gpus_per_node}",
        '--machine_rank "$SLURM_NODEID"',
        '--main_process_ip "$MASTER_ADDR"',
        f"--main_process_port {port}",
        "-m kdtools.cli",
        shlex.join(argv),
    ])
    # Every node's task resolves the same first host of the allocation as the rendezvous point.
    script = 'MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1); ' + accelerate
    return shlex.join(["srun", f"--nodes={nodes}", "--ntasks-per-node=1", "--kill-on-bad-exit=1",
                       "bash", "-c", script])


def main() -> None:  # pragma: no cover - thin argv wrapper
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument("--gpus-per-node", type=int, default=1)
    parser.add_argument("argv", nargs=argparse.REMAINDER, help="-- then the kdtools arguments")
    args = parser.parse_args()
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    print(launch_command(argv, args.nodes, args.gpus_per_node))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
