"""The launch command of a kdtools verb inside a Slurm allocation: one function builds it.

    python -m kdtools.launch --nodes 4 --tasks-per-node 8 --gpus -- --world paper sft --model 70b --data 40k
    python -m kdtools.launch --exec --tasks-per-node 8 --gpus -- gkd --student 1b --data 10k   # run it

One rank: plain `kdtools ...` (snakemake-executor-plugin-slurm runs it in a job step of its own).
Several ranks: `python -m kdtools.launch --exec ...`, which prints and becomes, inside a Slurm job,
ONE `srun` step with a task per rank (nodes x tasks per node), each task a kdtools
process whose RANK, LOCAL_RANK and WORLD_SIZE are Slurm's task ids. The ranks meet at the step's
first node on a port derived from the job id, so two jobs sharing a node never collide. The rule
declares the `mpi` resource, so the plugin runs this line as the job's own command (no srun
around it: an srun inside the plugin's srun step waits for CPUs the outer step holds).

No launcher stands between Slurm and the trainer: the SIGTERM Slurm sends before the time limit
(profiles/slurm, --signal=TERM@600) reaches every rank, and each writes its part of the checkpoint
(a torchrun or accelerate agent would forward it and kill its ranks 30 s later, mid-save).
With GPUs the ranks train under DeepSpeed ZeRO-3 with the packaged config (KDTOOLS_DEEPSPEED,
read by kdtools.trainargs): parameters, gradients and optimizer states are sharded across every
GPU, and GKD's teacher too. By hand, `accelerate launch --config_file kdtools/accelerate/zero3.yaml`
does the same on one node. Outside Slurm (profiles/local on one GPU machine) the ranks start
with `torchrun --standalone` instead.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

ZERO3 = Path(__file__).parent / "accelerate" / "zero3.yaml"          # accelerate launch, by hand
ZERO3_JSON = Path(__file__).parent / "accelerate" / "zero3.json"     # the workflow's ranks (TrainingArguments)
PORT_BASE, PORT_SPAN = 20000, 10000   # rendezvous port = base + job id mod span: below Linux's ephemeral range

# Each task turns Slurm's ids into the variables torch.distributed reads, then becomes kdtools
# (exec: the trainer is the task's process, so Slurm's signals reach it).
RANK_ENV = ('export MASTER_ADDR=$(scontrol show hostnames "$SLURM_STEP_NODELIST" | head -n 1) '
            f'MASTER_PORT=$(({PORT_BASE} + SLURM_JOB_ID % {PORT_SPAN})) '
            'RANK=$SLURM_PROCID LOCAL_RANK=$SLURM_LOCALID WORLD_SIZE=$SLURM_NTASKS '
            'LOCAL_WORLD_SIZE=$SLURM_NTASKS_PER_NODE')


def launch_command(argv: list[str], nodes: int = 1, tasks_per_node: int = 1, cpus_per_task: int | None = None,
                   gpus: bool = False) -> str:
    """The command a rule runs for `kdtools <argv>` on nodes x tasks_per_node ranks (one per GPU
    when `gpus`, else CPU ranks over gloo): plain kdtools for one rank; for several, this module
    with --exec, which picks the line where the job runs (`rank_command`) and becomes it."""
    if nodes < 1 or tasks_per_node < 1:
        raise ValueError(f"nodes and tasks_per_node must be >= 1, got {nodes}, {tasks_per_node}")
    if nodes * tasks_per_node == 1:
        return shlex.join(["kdtools", *argv])
    opts = [f"--nodes={nodes}", f"--tasks-per-node={tasks_per_node}"]
    opts += [f"--cpus-per-task={cpus_per_task}"] * bool(cpus_per_task) + ["--gpus"] * gpus
    return shlex.join(["python", "-m", "kdtools.launch", "--exec", *opts, "--", *argv])


def rank_command(argv: list[str], nodes: int, tasks_per_node: int, cpus_per_task: int | None = None,
                 gpus: bool = False, slurm: bool = True) -> str:
    """The line that starts the ranks: inside a Slurm job, one srun step of nodes x tasks_per_node
    tasks; elsewhere (one machine, profiles/local), torchrun on this node."""
    if nodes < 1 or tasks_per_node < 1:
        raise ValueError(f"nodes and tasks_per_node must be >= 1, got {nodes}, {tasks_per_node}")
    kdtools = shlex.join(["kdtools", *argv])
    deepspeed = f"KDTOOLS_DEEPSPEED={shlex.quote(str(ZERO3_JSON))}" if gpus else ""
    if not slurm:
        if nodes > 1:
            raise ValueError(f"{nodes} nodes need Slurm (run the workflow with profiles/slurm or inside salloc)")
        torchrun = shlex.join(["torchrun", "--standalone", f"--nproc_per_node={tasks_per_node}", "-m",
                               "kdtools.cli", *argv])
        return f"{deepspeed} {torchrun}".strip()
    env = f"{RANK_ENV} {deepspeed}".rstrip()
    srun = ["srun", f"--nodes={nodes}", f"--ntasks-per-node={tasks_per_node}", "--kill-on-bad-exit=1",
            "--mem=0"]  # the step gets the job's memory on each node (the plugin strips SLURM_MEM_*)
    if cpus_per_task:
        srun.append(f"--cpus-per-task={cpus_per_task}")
    return shlex.join([*srun, "bash", "-c", f"{env}; exec {kdtools}"])


def from_resources(argv: list[str], resources) -> str:
    """The launch line for a Snakemake job's resources (as submitted, --set-resources included):
    `tasks_per_node` ranks on each of `nodes`, GPUs when `gres` asks for them. Several ranks need
    the `mpi` resource too, which tells the plugin to run the line as the job's own step."""
    get = resources.get
    nodes, tasks = int(get("nodes", 1) or 1), int(get("tasks_per_node", 1) or 1)
    if nodes * tasks > 1 and get("mpi", None) is None:
        raise ValueError(f"{nodes} node(s) x {tasks} tasks need the resource mpi='srun' too (the plugin would "
                         "otherwise start this srun inside its own): --set-resources RULE:mpi=srun")
    return launch_command(argv, nodes, tasks, get("cpus_per_task", None), "gpu" in str(get("gres", "")))


def main() -> None:  # pragma: no cover - thin argv wrapper
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument("--tasks-per-node", type=int, default=1, help="ranks per node (one per GPU)")
    parser.add_argument("--cpus-per-task", type=int, default=None)
    parser.add_argument("--gpus", action="store_true", help="the ranks train on GPUs (DeepSpeed ZeRO-3)")
    parser.add_argument("--exec", action="store_true", help="print the line, then become it (srun inside "
                        "a Slurm job, torchrun elsewhere); without it, print the Slurm line")
    parser.add_argument("argv", nargs=argparse.REMAINDER, help="-- then the kdtools arguments")
    args = parser.parse_args()
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    try:
        line = rank_command(argv, args.nodes, args.tasks_per_node, args.cpus_per_task, args.gpus,
                            slurm="SLURM_JOB_ID" in os.environ or not args.exec)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(line, file=sys.stderr if args.exec else sys.stdout, flush=True)
    if args.exec:
        os.execvp("bash", ["bash", "-c", f"exec {line}"])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
