# The toy world and the nested data subsets.


rule toy_world:
    output:
        str(WORLD.built_dir / paths.MANIFEST),
    log:
        f"{RESULTS}/{W}/logs/toy.log",
    threads: 2  # = cpus_per_task: Snakemake sets OMP_NUM_THREADS to it (default 1)
    resources:
        cpus_per_task=2,
        mem_mb=8000,
        runtime=30,
    params:
        kd=shlex.join(["kdtools", *GLOBAL_ARGS]),
    conda:
        "../../envs/kdtools.yaml"
    shell:
        "{params.kd} toy > {log} 2>&1"


rule data:
    input:
        world_manifest(),
    output:
        data_manifest(),
    log:
        f"{RESULTS}/{W}/logs/data.log",
    threads: 1 if WORLD.toy else 4
    resources:
        cpus_per_task=1 if WORLD.toy else 4,       # Tulu 3 (939k rows) is read in memory
        mem_mb=4000 if WORLD.toy else 32000,
        runtime=60,
    params:
        kd=shlex.join(["kdtools", *GLOBAL_ARGS]),
    conda:
        "../../envs/kdtools.yaml"
    shell:
        "{params.kd} data > {log} 2>&1"


rule data_task:
    input:
        world_manifest(),
    output:
        f"{RESULTS}/{W}/data/{{task}}/{paths.MANIFEST}",
    log:
        f"{RESULTS}/{W}/logs/data-{{task}}.log",
    wildcard_constraints:
        task="translation|summarization|arc",
    threads: 1  # a few thousand rows converted: one core, so it never waits for a second one to free up
    resources:
        cpus_per_task=1,
        mem_mb=8000,
        runtime=30,
    params:
        kd=shlex.join(["kdtools", *GLOBAL_ARGS]),
    conda:
        "../../envs/kdtools.yaml"
    shell:
        "{params.kd} data --task {wildcards.task} > {log} 2>&1"


# Synthetic inputs for a domain task: one pool at the largest size; smaller sizes are prefixes.
rule synth:
    input:
        data=lambda wc: data_manifest(wc.task),
        generator=lambda wc: model_manifest(WORLD.synth.get("generator", TEACHER), "sft", TOP),
    output:
        f"{RESULTS}/{W}/data/synth/{{task}}/{paths.MANIFEST}",
    log:
        f"{RESULTS}/{W}/logs/synth-{{task}}.log",
    wildcard_constraints:
        task="translation|summarization|arc",
    params:
        cmd=kdtools_cmd("synth", "synth", "--task", "{task}", "--n", synth_top() if WORLD.synth else "100k",
                        single_process=True),
    threads: resource("synth", "cpus_per_task")
    # synth -> annotate -> Mix / 2-Stage is the grid's longest chain: start it as soon as its
    # generator exists, before the ladder's shorter jobs
    priority: 10
    resources:
        **rule_resources("synth"),
    conda:
        "../../envs/kdtools.yaml"
    shell:
        "{params.cmd} > {log} 2>&1"


# The task teacher (70b SFT'd on the task) answers the whole synthetic pool at T = 0.6.
rule annotate:
    input:
        synth=f"{RESULTS}/{W}/data/synth/{{task}}/{paths.MANIFEST}",
        teacher=lambda wc: model_manifest(TEACHER, "sft", "full", wc.task),
    output:
        f"{RESULTS}/{W}/data/annotated/{{task}}/{paths.model_name(TEACHER)}/{{label}}/{paths.MANIFEST}",
    log:
        f"{RESULTS}/{W}/logs/annotate-{{task}}-{{label}}.log",
    wildcard_constraints:
        task="translation|summarization|arc",
        label="[0-9]+k",
    params:
        cmd=lambda wc, resources: kdtools_cmd("annotate", "annotate", "--task", "{task}", "--inputs",
                                   f"{RESULTS}/{W}/data/synth/{wc.task}/{wc.label}.jsonl",
                                   single_process=True)(wc, resources),
    threads: resource("annotate", "cpus_per_task")
    priority: 10                          # the longest chain, as synth
    resources:
        **rule_resources("annotate"),
    conda:
        "../../envs/kdtools.yaml"
    shell:
        "{params.cmd} > {log} 2>&1"
