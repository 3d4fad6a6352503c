"""One workflow job -> its cost and its Slurm allocation.

    from kdtools.estimate import estimate
    est = estimate(world, "sft", {"model": "70b", "task": "general", "size": "939k"}, Settings())

A rule's wildcards name the models and data (workflow/rules/*.smk); kdtools.workload turns them
into shapes and token counts; the stage functions below say what the job computes (tokens
trained, teacher forwards, tokens generated) and `_train_job` / `_generate_job` choose the
smallest allocation that fits in GPU memory and under the partition's time limit. The Slurm
profile's resources (`slurm_resources`) and `kdtools plan` both come from here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from kdtools import costmodel as cm
from kdtools.errors import KdError
from kdtools.workload import (FUSED_LOGIT_CHUNK, GENERAL, SYNTH_INSTRUCTION_TOKENS, SYNTH_KEEP_RATE,
                              VLLM_BATCH, Estimate, Settings, Tokens, arch_of, benchmark_sizes,
                              data_tokens, dtype_bytes, synthetic_tokens)
from kdtools.world import World

CPU_RULES = {"toy_world": 600.0, "data": 1800.0, "data_task": 300.0, "report": 120.0, "report_demo": 120.0,
             "eval_floor": 300.0}  # wall s, assumed (eval_floor: no model, the scorers x 4 strategies)
RUNTIME_FLOOR_MIN = 30             # the shortest Slurm time limit a rule asks for
RUNTIME_STEP_MIN = 15              # time limits are rounded up to this
HOST_BYTES_PER_GPU = 16e9          # dataloader workers, pinned buffers, one rank's Python


@dataclass
class Work:
    """What a training job computes, in tokens (see README "Planning cost" for the formulas)."""

    student: str
    teacher: str | None = None
    train_tokens: float = 0.0      # tokens through forward + backward of the student
    train_len: float = 1.0         # mean sequence length of those tokens
    teacher_tokens: float = 0.0    # tokens through the teacher's forward pass
    offpolicy_teacher: float = 0.0  # the part of teacher_tokens a top-k cache could serve
    onpolicy: tuple = (0.0, 0.0, 0.0)      # (sequences, prompt, new tokens) the student samples
    teacher_gen: tuple = (0.0, 0.0, 0.0)   # (sequences, prompt, new tokens) the teacher samples
    checkpoints: int = 1
    text_tokens: float = 0.0       # tokens of generations written to disk
    cache: tuple | None = None     # (key, data Tokens) of the teacher cache serving this job


def _rows_trained(world: World, rows: float, epochs: float | None, max_steps: int | None) -> float:
    epochs = world.train.epochs if epochs is None else epochs
    total = rows * epochs
    steps = max_steps if max_steps is not None else world.train.max_steps
    return min(total, steps * world.train.effective_batch_size) if steps else total


def _sft_work(world: World, model: str, data: Tokens, o: dict) -> Work:
    rows = _rows_trained(world, data.rows, o.get("epochs"), o.get("max_steps"))
    return Work(student=model, train_tokens=rows * data.per_row, train_len=data.per_row)


def _gkd_work(world: World, student: str, teacher: str, data: Tokens, o: dict) -> Work:
    """A fraction lambda of the steps trains on the student's own samples (prompt + a sample as
    long as the data's answers, capped at max_new_tokens); the teacher scores every sequence."""
    lmbda = o.get("lmbda", world.gkd.get("lmbda", 0.5))
    cap = o.get("max_new_tokens") or world.gkd.get("max_new_tokens", 1024)
    rows = _rows_trained(world, data.rows, o.get("epochs"), o.get("max_steps"))
    new = min(cap, data.response)
    off, on = (1 - lmbda) * rows, lmbda * rows
    tokens = off * data.per_row + on * (data.prompt + new)
    return Work(student=student, teacher=teacher, train_tokens=tokens, train_len=tokens / max(rows, 1),
                teacher_tokens=tokens, offpolicy_teacher=off * data.per_row, onpolicy=(on, data.prompt, new))


def _seqkd_work(world: World, student: str, teacher: str, data: Tokens, o: dict) -> Work:
    """The teacher writes K answers per prompt; the student is fine-tuned on all K x rows pairs."""
    k = o.get("samples") or world.gkd.get("seqkd_samples", 5)
    cap = o.get("max_new_tokens") or world.gkd.get("max_new_tokens", 1024)
    new = min(cap, data.response)
    pairs = Tokens(int(data.rows * k), data.prompt, new, data.source)
    work = _sft_work(world, student, pairs, o)
    work.teacher = teacher
    work.teacher_gen = (data.rows * k, data.prompt, new)
    work.text_tokens = pairs.total
    return work


def _control_rows(world: World, match: str, task: str, size: str, data: Tokens, o: dict) -> float:
    """Rows the compute-matched control (sft_long) trains: as many as the KD run `match` ('gkd',
    'seqkd', 'mix-100k', 'two_stage-100k') trains beyond its SFT cell (kdtools.sft.matched_steps)."""
    method, _, label = match.partition("-")
    sft = _rows_trained(world, data.rows, o.get("epochs"), None)
    if method == "gkd":   # general: GKD continues the SFT; a domain task's GKD starts where its SFT does
        return sft if task == GENERAL else 0.0
    if method == "seqkd":
        k = o.get("samples") or world.gkd.get("seqkd_samples", 5)
        return max(0.0, _rows_trained(world, data.rows * k, o.get("epochs"), None) - sft)
    syn = synthetic_tokens(world, task, label).rows
    if method == "mix":
        return max(0.0, _rows_trained(world, data.rows + syn, o.get("epochs"), None) - sft)
    return _rows_trained(world, syn, o.get("epochs"), None)   # two_stage: its stage 1


def _rates_time(world: World, s: Settings, w: Work, n: int) -> float:
    """Wall seconds of a training job on n devices."""
    recompute = world.train.gradient_checkpointing
    student = arch_of(world, w.student)
    rs = s.rates(w.student)
    secs = cm.load_seconds(student, rs, dtype_bytes(world))
    secs += cm.train_seconds(w.train_tokens, student, w.train_len, rs, n, recompute)
    secs += _onpolicy_seconds(world, s, w, n)
    if w.teacher:
        teacher = arch_of(world, w.teacher)
        rt = s.rates(w.teacher)
        secs += cm.load_seconds(teacher, rt, dtype_bytes(world))
        secs += cm.forward_seconds(w.teacher_tokens, teacher, w.train_len, rt, n)
        seqs, prompt, new = w.teacher_gen
        if seqs:
            shards = min(n, s.gpus_per_node)
            secs += cm.generate_seconds(seqs / max(1, n // shards), prompt, new, teacher, rt, VLLM_BATCH,
                                        shards, dtype_bytes(world))
    return secs


def _onpolicy_seconds(world: World, s: Settings, w: Work, n: int) -> float:
    """GKD's on-policy sampling on n devices: each samples its own micro-batches at the rate of
    kdtools' sampler (kdtools.onpolicy: a static compiled KV cache on a GPU; the dynamic one under
    ZeRO-3, where it gathers the sharded student once per on-policy optimizer step, not per decode
    step, for all of that step's micro-batches)."""
    seqs, prompt, new = w.onpolicy
    if not seqs:
        return 0.0
    student, db = arch_of(world, w.student), dtype_bytes(world)
    sharded = s.zero == 3 and n > 1
    secs = cm.onpolicy_seconds(seqs / n, prompt, new, student, s.rates(w.student), world.train.per_device_batch_size,
                               static=s.gpu != "cpu" and not sharded, dtype_bytes=db)
    if sharded:
        steps = seqs / world.train.effective_batch_size
        secs += steps * cm.gather_seconds(student, s.device, n, s.gpus_per_node, db)
    return secs


def _train_memory(world: World, s: Settings, w: Work, n: int) -> cm.Memory:
    zero = s.zero if n > 1 else 0
    teacher = arch_of(world, w.teacher) if w.teacher and w.teacher_tokens else None
    return cm.train_memory(arch_of(world, w.student), world.train.max_length, world.train.per_device_batch_size,
                           zero, n, world.train.gradient_checkpointing, teacher=teacher,
                           logit_chunk=FUSED_LOGIT_CHUNK if teacher else None,
                           generate_tokens=world.train.max_length if w.onpolicy[0] else 0,
                           dtype_bytes=dtype_bytes(world))


def _candidates(s: Settings) -> list[int]:
    if s.nodes:
        return [s.nodes * s.gpus_per_node]
    within = [g for g in (1, 2, 4, 8, 16) if g <= s.gpus_per_node]
    if within[-1] != s.gpus_per_node:
        within.append(s.gpus_per_node)
    return within + [s.gpus_per_node * k for k in (2, 4, 8, 16, 32) if k <= s.max_nodes]


def _allocate(s: Settings, memory_at, seconds_at) -> tuple[int, cm.Memory, float, bool]:
    """The smallest device count that fits in memory, doubled while the job (times the safety
    factor) would run past max_runtime_h. -> (devices, memory per device, wall s, fits)."""
    chosen = None
    for n in _candidates(s):
        mem = memory_at(n)
        if not cm.fits(mem, s.device):
            continue
        chosen = (n, mem, seconds_at(n), True)
        if chosen[2] * s.safety <= s.max_runtime_h * 3600:
            break
    if chosen is None:
        n = _candidates(s)[-1]
        chosen = (n, memory_at(n), seconds_at(n), False)
    return chosen


def _finish(est: Estimate, s: Settings, n: int, mem: cm.Memory, wall: float, fits: bool,
            weights_bytes: float) -> Estimate:
    est.gpus, est.wall_s, est.peak_bytes, est.fits = n, wall, mem.peak, fits
    est.nodes = max(1, math.ceil(n / s.gpus_per_node))
    on_node = min(n, s.gpus_per_node)
    est.cpus = max(4, 8 * on_node)
    est.host_mem_mb = int(math.ceil((on_node * HOST_BYTES_PER_GPU + 1.2 * weights_bytes) / 1e6))
    est.over_limit = wall * s.safety > s.max_runtime_h * 3600
    if not fits:
        est.notes.append(f"does not fit {s.device.memory_bytes / cm.GB:.0f} GB per GPU even on {n}")
    if est.over_limit:
        est.notes.append(f"over the {s.max_runtime_h:g} h limit even on {n} GPUs: needs resumable runs")
    return est


def _train_job(world: World, s: Settings, rule: str, job: str, stage: str, w: Work) -> Estimate:
    n, mem, wall, fits = _allocate(s, lambda n: _train_memory(world, s, w, n),
                                   lambda n: _rates_time(world, s, w, n))
    student = arch_of(world, w.student)
    teacher = arch_of(world, w.teacher) if w.teacher else None
    db = dtype_bytes(world)
    if w.teacher_gen[0]:  # the teacher's sampling runs first, tensor parallel on the same GPUs
        seqs, prompt, new = w.teacher_gen
        gen = cm.inference_memory(teacher, min(n, s.gpus_per_node), VLLM_BATCH, int(prompt + new), db)
        if gen.peak > mem.peak:
            mem, fits = gen, fits and cm.fits(gen, s.device)
    est = Estimate(rule, job, stage, trained_tokens=w.train_tokens, teacher_tokens=w.teacher_tokens,
                   generated_tokens=w.onpolicy[0] * w.onpolicy[2] + w.teacher_gen[0] * w.teacher_gen[2],
                   disk_bytes=w.checkpoints * cm.checkpoint_bytes(student, db) + cm.text_bytes(w.text_tokens))
    if w.cache and teacher is not None:
        key, data = w.cache
        rt = s.rates(w.teacher)
        est.cache_key = key
        est.cache_saving_gpu_s = n * cm.forward_seconds(w.offpolicy_teacher, teacher, w.train_len, rt, n)
        est.cache_write_gpu_s = n * cm.forward_seconds(data.total, teacher, data.per_row, rt, n)
        est.cache_bytes = cm.teacher_cache_bytes(data.rows * data.response, s.teacher_cache_k)
    est.onpolicy_s = _onpolicy_seconds(world, s, w, n)
    est.onpolicy_steps = w.onpolicy[0] / world.train.effective_batch_size
    weights = student.params * db + (teacher.params * db if teacher else 0)
    return _finish(est, s, n, mem, wall, fits, weights)


def _generate_job(world: World, s: Settings, rule: str, job: str, stage: str, model: str,
                  batches: list[tuple[float, float, float]], written: float) -> Estimate:
    """vLLM-style generation, tensor parallel over the smallest power of two GPUs of one node
    whose share of the weights leaves half the memory for the KV cache."""
    arch, rates, db = arch_of(world, model), s.rates(model), dtype_bytes(world)
    longest = int(max((p + g for _, p, g in batches), default=1))

    def memory_at(n):
        mem = cm.inference_memory(arch, n, VLLM_BATCH, longest, db)
        return mem if mem.states <= 0.5 * s.device.memory_bytes else cm.Memory(
            s.device.memory_bytes, 0, 0, 0, 0)

    def seconds_at(n):
        return cm.load_seconds(arch, rates, db) + sum(
            cm.generate_seconds(seqs, p, g, arch, rates, VLLM_BATCH, n, db) for seqs, p, g in batches)

    single = Settings(**{**s.__dict__, "nodes": None, "max_nodes": 1})
    n, mem, wall, fits = _allocate(single, memory_at, seconds_at)
    est = Estimate(rule, job, stage, generated_tokens=sum(seqs * g for seqs, _, g in batches),
                   disk_bytes=cm.text_bytes(written))
    return _finish(est, s, n, mem, wall, fits, arch.params * db)


def _cpu_job(world: World, rule: str, job: str) -> Estimate:
    est = Estimate(rule, job, "cpu", gpus=0, wall_s=CPU_RULES.get(rule, 60.0))
    if rule == "data":
        est.disk_bytes = cm.text_bytes(sum(data_tokens(world, GENERAL, size).total for size in world.data.sizes))
    return est


# ---------------------------------------------------------------------------------------------
def estimate(world: World, rule: str, wc: dict, s: Settings, overrides: dict | None = None) -> Estimate:
    """The estimate of one job of `rule` with wildcards `wc` (the names in workflow/rules/*.smk).
    `overrides`: a verb's options (epochs, max_steps, lmbda, max_new_tokens, samples)."""
    o = overrides or {}
    if rule in CPU_RULES:
        return _cpu_job(world, rule, f"{rule} {wc.get('task', '')}".strip())
    if rule == "sft":
        task, size = wc["task"], wc["size"]
        return _train_job(world, s, rule, f"sft {wc['model']} {task}/{size}", "sft",
                          _sft_work(world, wc["model"], data_tokens(world, task, size), o))
    if rule in ("gkd", "gkd_variant"):
        task, size, variant = wc["task"], wc["size"], wc.get("variant", "")
        teacher = next((p[len("teacher-"):] for p in variant.split("+") if p.startswith("teacher-")),
                       o.get("teacher") or "70b")
        data = data_tokens(world, task, size)
        w = _gkd_work(world, wc["student"], teacher, data, o)
        w.cache = (f"{teacher} {task}/{size}", data)
        leaf = f"{size}+{variant}" if variant else size
        return _train_job(world, s, rule, f"gkd {wc['student']} {task}/{leaf}", "gkd", w)
    if rule == "gkd_synthetic":
        task, label, method = wc["task"], wc["label"], wc["method"]
        data, syn = data_tokens(world, task, "full"), synthetic_tokens(world, task, wc["label"])
        job = f"{method} {wc['student']} {task}/full+synthetic-{label}"
        if method == "mix":
            both = Tokens(data.rows + syn.rows, data.prompt, data.response, data.source)
            w = _gkd_work(world, wc["student"], "70b", both, o)
            w.cache = (f"70b {task}/full+synthetic-{label}", both)
            return _train_job(world, s, rule, job, "gkd", w)
        stage1 = _sft_work(world, wc["student"], syn, o)
        w = _gkd_work(world, wc["student"], "70b", data, o)
        tokens = stage1.train_tokens + w.train_tokens
        w.train_len = (stage1.train_tokens * stage1.train_len + w.train_tokens * w.train_len) / max(tokens, 1)
        w.train_tokens, w.checkpoints, w.cache = tokens, 2, (f"70b {task}/full", data)
        return _train_job(world, s, rule, job, "gkd", w)
    if rule == "sft_long":
        task, size = wc["task"], wc["size"]
        data = data_tokens(world, task, size)
        rows = _control_rows(world, wc["match"], task, size, data, o)
        return _train_job(world, s, rule, f"sft_long {wc['model']} {task}/{size}+match-{wc['match']}", "sft",
                          Work(student=wc["model"], train_tokens=rows * data.per_row, train_len=data.per_row))
    if rule == "seqkd":
        task, size = wc["task"], wc["size"]
        w = _seqkd_work(world, wc["student"], o.get("teacher") or "70b", data_tokens(world, task, size), o)
        return _train_job(world, s, rule, f"seqkd {wc['student']} {task}/{size}", "seqkd", w)
    if rule == "synth":
        task = wc["task"]
        data = data_tokens(world, task, "full")
        sizes = world.synth.get("sizes") or {"100k": 100_000}
        n = wc.get("n") or max(sizes.values())
        demos = world.synth.get("demos", 10)
        prompt = SYNTH_INSTRUCTION_TOKENS + demos * data.per_row
        new = min(world.synth.get("max_new_tokens", 4096), data.prompt)
        seqs = n / SYNTH_KEEP_RATE
        return _generate_job(world, s, rule, f"synth {task} ({n:,} inputs)", "synth",
                             world.synth.get("generator", "70b"), [(seqs, prompt, new)], n * new)
    if rule == "annotate":
        task, label = wc["task"], wc["label"]
        syn = synthetic_tokens(world, task, label)
        new = min(world.synth.get("max_new_tokens", 4096), syn.response)
        return _generate_job(world, s, rule, f"annotate {task}/{label}", "annotate", o.get("teacher") or "70b",
                             [(syn.rows, syn.prompt, new)], syn.rows * (syn.prompt + new))
    if rule == "eval":
        model = wc["model"]
        benches = benchmark_sizes(world, wc["suite"])
        batches = [(n, p, g) for _, n, p, g in benches]
        job = f"eval {model} {wc.get('method', '')}/{wc.get('task', '')}/{wc.get('leaf', '')} {wc['suite']}"
        return _generate_job(world, s, rule, job, "eval", model if model in world.models else "8b",
                             batches, sum(n * (p + g) for n, p, g in batches))
    raise KdError(f"no cost model for rule '{rule}': add it to kdtools/estimate.py")


def plan_settings(gpu: str = "h100", calibration: str | None = None, **policy) -> Settings:
    """Settings from the workflow config or the plan verb's options; a calibration file (written
    by `kdtools plan --calibrate`) replaces the datasheet rates."""
    from kdtools.calibrate import load_calibration

    cm.device(gpu)
    return Settings(gpu=gpu, calibration=load_calibration(calibration) if calibration else None, **policy)


TRAIN_RULES = ("sft", "gkd", "gkd_variant", "seqkd", "gkd_synthetic", "sft_long")
# Slurm sends SIGTERM ten minutes before a training job's time limit: each rank saves its part of
# a checkpoint and exits 75, Snakemake's retry resumes it (kdtools/checkpoint.py). Not B: (the
# batch shell only) and not USR1 (it would kill the plugin's own step process at once).
TERM_BEFORE_LIMIT = "--signal=TERM@600"


def slurm_resources(world: World, rule: str, wc: dict, s: Settings) -> dict:
    """The rule's Slurm resources from the estimate: runtime = estimate x safety factor, rounded up
    to RUNTIME_STEP_MIN with a floor; GPUs and nodes as chosen to fit memory and time.

    GPUs are asked per node (`gres` gpu:N: `--gpus` would count them per job) and `gpus` is the
    job's total (what profiles/local schedules by). A training job on several GPUs runs one task
    per GPU (`tasks_per_node`, `cpus_per_task` each) and is an `mpi` job to the plugin: its
    command is kdtools.launch's srun line, run as the job's step, not inside another srun."""
    est = estimate(world, rule, wc, s)
    minutes = est.wall_s * s.safety / 60
    runtime = max(RUNTIME_FLOOR_MIN, math.ceil(minutes / RUNTIME_STEP_MIN) * RUNTIME_STEP_MIN)
    per_node = min(est.gpus, s.gpus_per_node)
    ranks = est.nodes * per_node if rule in TRAIN_RULES else 1
    return dict(gres=f"gpu:{per_node}" if per_node else None, gpus=est.nodes * per_node, nodes=est.nodes,
                tasks_per_node=per_node if ranks > 1 else None, mpi="srun" if ranks > 1 else None,
                cpus_per_task=est.cpus // per_node if ranks > 1 else est.cpus,
                mem_mb=max(16_000, est.host_mem_mb), runtime=runtime,
                slurm_extra=TERM_BEFORE_LIMIT if rule in TRAIN_RULES else None)
