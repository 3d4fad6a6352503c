# Shared by every file of rules: the world, the results root, resources, and THE grid (one function).
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir)))  # the kdtools package beside this Snakefile

from kdtools import paths
from kdtools.errors import KdError
from kdtools.estimate import TERM_BEFORE_LIMIT, TRAIN_RULES, plan_settings, slurm_resources
from kdtools.launch import from_resources, launch_command
from kdtools.world import STUDENTS, load_world

try:
    WORLD = load_world(config["world"], config["results"])
except KdError as exc:
    raise WorkflowError(f"world config: {exc}")

RESULTS = str(WORLD.results)
W = WORLD.name
GLOBAL_ARGS = ["--world", str(config["world"]), "--results", RESULTS]
TEACHER = "70b"
STRONG_TEACHER = "70b-it"

# Slurm resources come from the cost model (kdtools/estimate.py, the same numbers `kdtools plan`
# prints): runtime = the estimated wall time x safety_factor (rounded up to 15 min, at least 30);
# GPUs and nodes = the smallest allocation whose peak memory fits the GPU under ZeRO-3 and whose
# runtime stays under max_runtime_h; mem_mb = host memory for the ranks and one copy of the
# weights. A calibration file (`kdtools plan --calibrate`; config `calibration`) replaces the
# datasheet rates. Config keys: gpu, calibration, safety_factor, max_runtime_h, gpus_per_node.
try:
    PLAN = plan_settings(config.get("gpu", "h100"), config.get("calibration"),
                         safety=config.get("safety_factor", 1.5), max_runtime_h=config.get("max_runtime_h", 48),
                         gpus_per_node=config.get("gpus_per_node", 8))
except KdError as exc:
    raise WorkflowError(f"plan settings: {exc}")
# Toy worlds train on the CPU of whatever runs them, one core per job: their steps are too small
# to use a second thread well, so two jobs side by side finish 1.6x sooner than one after the
# other with two threads each (measured on 2 cores; the weights come out bit-identical).
TOY_RESOURCES = dict(gpus=0, nodes=1, cpus_per_task=1, mem_mb=4000, runtime=60)
# What every GPU rule declares (kdtools/estimate.py slurm_resources says what each means); a None
# value drops the resource, e.g. `mpi` and `tasks_per_node` for a job of one rank.
RESOURCE_KEYS = ("gres", "gpus", "nodes", "tasks_per_node", "mpi", "cpus_per_task", "mem_mb", "runtime",
                 "slurm_extra")
_RESOURCES = {}


def resources_of(rule):
    """-> wildcards -> the rule's resources dict, estimated once per job."""

    def of(wildcards):
        if WORLD.toy:
            extra = {"slurm_extra": TERM_BEFORE_LIMIT} if rule in TRAIN_RULES else {}
            return {**TOY_RESOURCES, **extra}
        key = (rule, tuple(sorted(dict(wildcards.items()).items())))
        if key not in _RESOURCES:
            try:
                _RESOURCES[key] = slurm_resources(WORLD, rule, dict(wildcards.items()), PLAN)
            except KdError as exc:
                raise WorkflowError(f"resources of {rule} {dict(wildcards.items())}: {exc}")
        return _RESOURCES[key]

    return of


def resource(rule, key):
    return lambda wildcards: resources_of(rule)(wildcards).get(key)


def rule_resources(rule):
    """The `resources:` of a GPU rule (`**rule_resources("sft")`), each a function of the job."""
    return {key: resource(rule, key) for key in RESOURCE_KEYS}


def kdtools_cmd(rule, *verb_args, single_process=False):
    """The launch command of a job: plain kdtools for one rank, one srun step of a task per rank
    otherwise (kdtools.launch), from the job's resources as submitted, so --set-resources (nodes,
    tasks_per_node, mpi) reshapes the launch too. Generation (synth, annotate) is one process
    that uses every GPU of its node itself (vLLM tensor parallelism): single_process."""

    def build(wildcards, resources):
        argv = GLOBAL_ARGS + [a.format(**wildcards) for a in verb_args]
        if single_process:
            return launch_command(argv)
        try:
            return from_resources(argv, resources)
        except ValueError as exc:
            raise WorkflowError(f"launch of {rule} jobs: {exc}")

    return build


def world_manifest():
    """The toy world's manifest, for worlds built locally; nothing for the paper world."""
    return [str(WORLD.built_dir / paths.MANIFEST)] if WORLD.toy else []


def data_manifest(dataset=None):
    return str(paths.data_dir(WORLD.results, W, dataset or WORLD.data.name) / paths.MANIFEST)


def model_manifest(model, method, size, task="general", variant=""):
    return str(paths.model_dir(WORLD.results, W, model, method, task, size, variant) / paths.MANIFEST)


# The size that stands for the paper's "full data" (Table 1, Figure 3, the domain students' and
# the synth generator's start): "full" in the paper world, the top of the ladder in toy worlds.
TOP = WORLD.grid.full
TASKS = ["translation", "summarization", "arc"]
SUITE_OF_TASK = {"general": "general", "translation": "translation", "summarization": "summarization",
                 "arc": "arc"}


def eval_of(model, method, size, task="general", variant=""):
    """The eval JSON of one cell: the suite follows the task (general -> the five benchmarks)."""
    return str(paths.eval_file(WORLD.results, W, model, method, task, size, SUITE_OF_TASK[task], variant))


def eval_argv(model, suite):
    """`kdtools eval` of a model folder (or `floor`) on a suite, with the configured judge."""
    argv = ["kdtools", *GLOBAL_ARGS, "eval", "--model", str(model), "--suite", suite]
    if config.get("judge_url"):
        argv += ["--judge-url", config["judge_url"]]
    return shlex.join(argv)


def eval_cmd(wildcards):
    folder = paths.model_dir(WORLD.results, W, wildcards.model, wildcards.method, wildcards.task, wildcards.leaf)
    return eval_argv(folder, wildcards.suite)


def floor_eval(suite):
    """A suite's floor eval (kdtools.evaluation.floor): model and method `floor`, size `none`."""
    return str(paths.eval_file(WORLD.results, W, "floor", "floor", suite, "none", suite))


def floor_cmd(wildcards):
    return eval_argv("floor", wildcards.suite)


def fidelity_cells(tasks):
    """The fidelity table's evals beyond the tables' own: the floor of the general suite and of
    `tasks`, and T_s at the full size on general data (Table 2's row holds the task teachers)."""
    return [floor_eval(s) for s in ("general", *tasks)] + [eval_of(TEACHER, "sft", TOP)]


def sizes():
    """The general ladder of Table 3 / Figures 1-2: the world's grid.sizes (the paper: every size)."""
    return list(WORLD.grid.sizes)


def synthetic_sizes():
    """Figure 5's synthetic set sizes, smallest first (nested subsets of one pool)."""
    return list(WORLD.grid.synthetic)


def table2_cells(tasks, students=STUDENTS):
    """Table 2 / Figure 4 for `tasks`: students from their full-Tulu SFT; the task teacher row;
    Mix and 2-Stage with the largest synthetic set (the paper's 100k). A domain cell's size is its
    task data: always the whole training split, "full"."""
    syn = synthetic_sizes()
    return ([eval_of(s, m, "full", t) for t in tasks for s in students for m in ("sft", "gkd")]
            + [eval_of(TEACHER, "sft", "full", t) for t in tasks]
            + ([eval_of(s, m, "full", t, f"synthetic-{syn[-1]}") for t in tasks for s in students
                for m in ("mix", "two_stage")] if syn else []))


def grid():
    """THE grid of the paper, expanded in one place: target name -> the eval JSONs it needs
    (each pulls its model, and that model's teacher, init, data and synthetic data, through
    the rules)."""
    ladder = sizes()
    syn = synthetic_sizes()
    table3 = [eval_of(s, m, n) for s in STUDENTS for n in ladder for m in ("sft", "gkd")]
    table2 = table2_cells(TASKS)
    return {
        # The compute-matched SFT controls (sft_long) of the receipts, per table (controls())
        "controls": [f for files in controls().values() for f in files],
        # Table 3 / Figure 2: every student, every size, SFT vs GKD from the same-data teacher
        "table3": table3,
        "fig2": table3,
        # Figure 1: the 8b student from its base model (Base-S) next to SFT-S
        "fig1": [eval_of("8b", "gkd", n, variant="init-base") for n in ladder]
        + [eval_of("8b", m, n) for n in ladder for m in ("sft", "gkd")],
        # Table 1: 8b on full data: SFT, GKD, SeqKD
        "table1": [eval_of("8b", m, TOP) for m in ("sft", "gkd", "seqkd")],
        # Figure 3: GKD from the same-data teacher vs the strong instruction-tuned teacher
        "fig3": [eval_of("8b", "gkd", TOP), eval_of("8b", "gkd", TOP, variant="teacher-70b-it")],
        "table2": table2,
        "fig4": table2,
        # Figure 5: two-stage KD with 5k ... 100k synthetic inputs
        "fig5": [eval_of(s, "two_stage", "full", t, f"synthetic-{n}") for t in TASKS for s in STUDENTS for n in syn],
        # the fidelity table: every suite's floor and T_s at full (the report's tables/fidelity.md)
        "fidelity": fidelity_cells(TASKS) + [eval_of(TEACHER, "sft", "full", t) for t in TASKS],
    }


def controls():
    """The compute-matched SFT controls (kdtools sft --match, method sft_long): each KD cell's SFT
    continued on the same data for as many steps as KD adds, per table. Table 2's GKD adds no
    steps over SFT (both start from the general SFT), so it needs none; Figure 3's GKD-IT shares
    Table 1's GKD control. `all_tables` runs the tables named by the world's grid.controls."""
    syn = synthetic_sizes()
    return {
        "table3": [eval_of(s, "sft_long", n, variant="match-gkd") for s in STUDENTS for n in sizes()],
        "table1": [eval_of("8b", "sft_long", TOP, variant=f"match-{m}") for m in ("gkd", "seqkd")],
        "table2": [eval_of(s, "sft_long", "full", t, f"match-{m}-{syn[-1]}") for t in TASKS for s in STUDENTS
                   for m in ("mix", "two_stage")] if syn else [],
    }


def demo_targets():
    """The quick demo (`make demo`, at most 20 min on 2 CPU cores): Table 3's cells (SFT and GKD
    of every student on the world's ladder) and Table 2's cells of the world's grid.demo_tasks
    (the task teacher; SFT, GKD, Mix and 2-Stage of grid.demo_students, hence synth and annotate),
    and the fidelity table's floors and T_s for those suites.
    `make demo-all` is `all_tables`: every table and figure."""
    return (grid()["table3"] + table2_cells(WORLD.grid.demo_tasks, WORLD.grid.demo_students)
            + fidelity_cells(WORLD.grid.demo_tasks))


def all_evals():
    """Every cell of every table and figure, once; the controls of the tables grid.controls names."""
    cells = {f for name, files in grid().items() if name != "controls" for f in files}
    return sorted(cells | {f for t in WORLD.grid.controls for f in controls()[t]})


REPORT = str(WORLD.results / W / "tables" / "report.json")
DEMO_REPORT = str(WORLD.results / W / "demo" / "tables" / "report.json")


def init_sft(wildcards):
    """SFT-S: the student's SFT on the same data (general) or its full-data SFT (domain tasks)."""
    size = wildcards.size if wildcards.task == "general" else TOP
    return model_manifest(wildcards.student, "sft", size)


def task_data(wildcards):
    """The training data a cell reads: the general subsets, or the task's converted split."""
    return data_manifest(None if wildcards.task == "general" else wildcards.task)


def sft_inputs(wildcards):
    """Domain-task SFT starts from the model's full-data general SFT (the paper's students)."""
    needs = [task_data(wildcards)]
    if wildcards.task != "general":
        needs.append(model_manifest(wildcards.model, "sft", TOP))
    return needs


def variant_inputs(wildcards):
    """Inputs of a GKD cell with a variant ('init-base', 'teacher-70b-it', or both joined by +)."""
    parts = wildcards.variant.split("+")
    needs = [task_data(wildcards)]
    if "init-base" not in parts:
        needs.append(init_sft(wildcards))
    if any(p.startswith("teacher-") for p in parts):
        needs += world_manifest()  # an '-it' teacher is used as is: a base model
    else:
        needs.append(model_manifest(TEACHER, "sft", wildcards.size, wildcards.task))
    return needs


def synth_top():
    return synthetic_sizes()[-1]


def annotated_manifest(task):
    """The task teacher's answers to the whole synthetic pool (its largest size label)."""
    return str(paths.data_dir(WORLD.results, W, "annotated") / task / paths.model_name(TEACHER) / synth_top()
               / paths.MANIFEST)


def matched_run(wildcards):
    """What a compute-matched control reads: the SFT it continues, the KD run whose steps it matches."""
    method, _, label = wildcards.match.partition("-")
    variant = f"synthetic-{label}" if label else ""
    return [task_data(wildcards), model_manifest(wildcards.model, "sft", wildcards.size, wildcards.task),
            model_manifest(wildcards.model, method, wildcards.size, wildcards.task, variant)]


def match_args(wildcards):
    method, _, label = wildcards.match.partition("-")
    return ["--match", method] + (["--synthetic", label] if label else [])


def variant_args(wildcards):
    args = []
    for part in wildcards.variant.split("+"):
        key, _, value = part.partition("-")
        if key not in ("init", "teacher"):
            raise WorkflowError(f"unknown variant '{part}' in {wildcards.variant}")
        args += [f"--{key}", value]
    return args
