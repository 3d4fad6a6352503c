# Training stages: one rule per verb, each calling the kdtools CLI through shell: (one srun
# step with a task per rank across GPUs and nodes, see kdtools/launch.py). Outputs are the
# run.json manifests the CLI writes last. `exec` makes the trainer (or that srun) the job's
# process itself, so Slurm's SIGTERM (time-limit warning, preemption, scancel) reaches every rank
# and not a shell that would die first: each checkpoints, exits 75, and Snakemake's retry resumes
# (kdtools/checkpoint.py). The resources (GPUs per node, tasks, memory, time, the signal) come from
# the cost model: workflow/rules/common.smk rule_resources.

SIZE = "[0-9]+k|full"
TASK = "general|translation|summarization|arc"


rule sft:
    input:
        sft_inputs,
    output:
        f"{RESULTS}/{W}/models/{{model}}/sft/{{task}}/{{size}}/{paths.MANIFEST}",
    log:
        f"{RESULTS}/{W}/logs/sft/{{model}}/{{task}}/{{size}}.log",
    wildcard_constraints:
        model="[A-Za-z0-9._-]+",
        task=TASK,
        size=SIZE,
    params:
        cmd=kdtools_cmd("sft", "sft", "--model", "{model}", "--data", "{size}", "--task", "{task}"),
    threads: resource("sft", "cpus_per_task")  # = cpus_per_task: Snakemake sets OMP_NUM_THREADS to it (default 1)
    resources:
        **rule_resources("sft"),
    conda:
        "../../envs/kdtools.yaml"
    shell:
        "exec {params.cmd} > {log} 2>&1"


rule gkd:
    input:
        data=task_data,
        init=init_sft,
        teacher=lambda wc: model_manifest(TEACHER, "sft", wc.size, wc.task),
    output:
        f"{RESULTS}/{W}/models/{{student}}/gkd/{{task}}/{{size}}/{paths.MANIFEST}",
    log:
        f"{RESULTS}/{W}/logs/gkd/{{student}}/{{task}}/{{size}}.log",
    wildcard_constraints:
        student="[A-Za-z0-9._-]+",
        task=TASK,
        size=SIZE,
    params:
        cmd=kdtools_cmd("gkd", "gkd", "--student", "{student}", "--data", "{size}", "--task", "{task}"),
    threads: resource("gkd", "cpus_per_task")
    resources:
        **rule_resources("gkd"),
    conda:
        "../../envs/kdtools.yaml"
    shell:
        "exec {params.cmd} > {log} 2>&1"


rule gkd_variant:
    input:
        variant_inputs,
    output:
        f"{RESULTS}/{W}/models/{{student}}/gkd/{{task}}/{{size}}+{{variant}}/{paths.MANIFEST}",
    log:
        f"{RESULTS}/{W}/logs/gkd/{{student}}/{{task}}/{{size}}+{{variant}}.log",
    wildcard_constraints:
        student="[A-Za-z0-9._-]+",
        task="general",
        size=SIZE,
        variant="(init-base|teacher-70b-it)(\\+teacher-70b-it)?",
    params:
        cmd=lambda wc, resources: kdtools_cmd("gkd_variant", "gkd", "--student", "{student}", "--data", "{size}",
                                   "--task", "{task}", *variant_args(wc))(wc, resources),
    threads: resource("gkd_variant", "cpus_per_task")
    resources:
        **rule_resources("gkd_variant"),
    conda:
        "../../envs/kdtools.yaml"
    shell:
        "exec {params.cmd} > {log} 2>&1"


rule seqkd:
    input:
        data=data_manifest(),
        teacher=lambda wc: model_manifest(TEACHER, "sft", wc.size, wc.task),
    output:
        f"{RESULTS}/{W}/models/{{student}}/seqkd/{{task}}/{{size}}/{paths.MANIFEST}",
    log:
        f"{RESULTS}/{W}/logs/seqkd/{{student}}/{{task}}/{{size}}.log",
    wildcard_constraints:
        student="[A-Za-z0-9._-]+",
        task="general",
        size=SIZE,
    params:
        cmd=kdtools_cmd("seqkd", "seqkd", "--student", "{student}", "--data", "{size}", "--task", "{task}"),
    threads: resource("seqkd", "cpus_per_task")
    resources:
        **rule_resources("seqkd"),
    conda:
        "../../envs/kdtools.yaml"
    shell:
        "exec {params.cmd} > {log} 2>&1"


# Domain tasks with synthetic data: Mix (GKD on human + synthetic) and two-stage (CE on the
# synthetic pairs, then GKD on the human data), for each synthetic size (Table 2, Figure 5).
rule gkd_synthetic:
    input:
        data=lambda wc: data_manifest(wc.task),
        init=lambda wc: model_manifest(wc.student, "sft", TOP),
        teacher=lambda wc: model_manifest(TEACHER, "sft", "full", wc.task),
        annotated=lambda wc: annotated_manifest(wc.task),
    output:
        f"{RESULTS}/{W}/models/{{student}}/{{method}}/{{task}}/full+synthetic-{{label}}/{paths.MANIFEST}",
    log:
        f"{RESULTS}/{W}/logs/{{method}}/{{student}}/{{task}}/{{label}}.log",
    wildcard_constraints:
        student="[A-Za-z0-9._-]+",
        method="mix|two_stage",
        task="translation|summarization|arc",
        label="[0-9]+k",
    params:
        cmd=kdtools_cmd("gkd_synthetic", "gkd", "--student", "{student}", "--data", "full", "--task", "{task}",
                        "--method", "{method}", "--synthetic", "{label}"),
    threads: resource("gkd_synthetic", "cpus_per_task")
    resources:
        **rule_resources("gkd_synthetic"),
    conda:
        "../../envs/kdtools.yaml"
    shell:
        "exec {params.cmd} > {log} 2>&1"


# The compute-matched control of a KD cell (kdtools sft --match, method sft_long): the cell's SFT
# continued on the same data for as many optimizer steps as the KD run adds (read from the finished
# runs, so it waits for both). Workflow target `controls`; in all_tables per the world's grid.controls.
rule sft_long:
    input:
        matched_run,
    output:
        f"{RESULTS}/{W}/models/{{model}}/sft_long/{{task}}/{{size}}+match-{{match}}/{paths.MANIFEST}",
    log:
        f"{RESULTS}/{W}/logs/sft_long/{{model}}/{{task}}/{{size}}+match-{{match}}.log",
    wildcard_constraints:
        model="[A-Za-z0-9._-]+",
        task=TASK,
        size=SIZE,
        match="gkd|seqkd|(mix|two_stage)-[0-9]+k",
    params:
        cmd=lambda wc, resources: kdtools_cmd("sft_long", "sft", "--model", "{model}", "--data", "{size}",
                                   "--task", "{task}", *match_args(wc))(wc, resources),
    threads: resource("sft_long", "cpus_per_task")
    resources:
        **rule_resources("sft_long"),
    conda:
        "../../envs/kdtools.yaml"
    shell:
        "exec {params.cmd} > {log} 2>&1"
