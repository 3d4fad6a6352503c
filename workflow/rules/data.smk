# The toy world and the nested data subsets.


rule toy_world:
    output:
        str(WORLD.built_dir / paths.MANIFEST),
    log:
        f"{RESULTS}/{W}/logs/toy.log",
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
    resources:
        cpus_per_task=4,
        mem_mb=32000,
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
    resources:
        cpus_per_task=2,
        mem_mb=8000,
        runtime=30,
    params:
        kd=shlex.join(["kdtools", *GLOBAL_ARGS]),
    conda:
        "../../envs/kdtools.yaml"
    shell:
        "{params.kd} data --task {wildcards.task} > {log} 2>&1"
