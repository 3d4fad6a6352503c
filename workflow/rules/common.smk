# Shared by every rule file: the world, the results root and THE grid (one function).
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir)))  # the kdtools package beside this Snakefile

from kdtools import paths
from kdtools.errors import KdError
from kdtools.world import load_world

try:
    WORLD = load_world(config["world"], config["results"])
except KdError as exc:
    raise WorkflowError(f"world config: {exc}")

RESULTS = str(WORLD.results)
W = WORLD.name
KD = f"kdtools --world {config['world']} --results {RESULTS}"
STUDENTS = ["1b", "3b", "8b"]
TEACHER = "70b"

# Resources per model alias on 8xH100 nodes (the Slurm profile maps them to sbatch flags).
# mem_mb is host memory; runtime is minutes. The plan issue replaces these with estimates.
TRAIN_RESOURCES = {
    "1b": dict(gpu=1, nodes=1, cpus_per_task=8, mem_mb=64_000, runtime=12 * 60),
    "3b": dict(gpu=2, nodes=1, cpus_per_task=16, mem_mb=128_000, runtime=24 * 60),
    "8b": dict(gpu=8, nodes=1, cpus_per_task=64, mem_mb=480_000, runtime=24 * 60),
    "70b": dict(gpu=8, nodes=4, cpus_per_task=64, mem_mb=960_000, runtime=48 * 60),
    "70b-it": dict(gpu=8, nodes=4, cpus_per_task=64, mem_mb=960_000, runtime=48 * 60),
}


# Toy worlds train on the CPU of whatever runs them.
TOY_RESOURCES = dict(gpu=0, nodes=1, cpus_per_task=2, mem_mb=4000, runtime=60)


def train_resource(key):
    if WORLD.toy:
        return TOY_RESOURCES[key]
    return lambda wildcards: TRAIN_RESOURCES.get(wildcards.model, TRAIN_RESOURCES["8b"])[key]


def world_manifest():
    """The toy world's manifest, for worlds built locally; nothing for the paper world."""
    return [str(WORLD.built_dir / paths.MANIFEST)] if WORLD.toy else []


def data_manifest(dataset=None):
    return str(paths.data_dir(WORLD.results, W, dataset or WORLD.data.name) / paths.MANIFEST)


def sft_manifest(model, size, task="general"):
    return str(paths.model_dir(WORLD.results, W, model, "sft", task, size) / paths.MANIFEST)


def demo_targets():
    """THE grid, expanded in one place: every student and the teacher, SFT on each size.
    The paper world uses all its sizes; toy worlds a demo ladder that runs on a CPU."""
    sizes = list(WORLD.data.sizes) if W == "paper" else [s for s in ("10k", "40k") if s in WORLD.data.sizes]
    return [sft_manifest(m, s) for m in STUDENTS + [TEACHER] for s in sizes]
