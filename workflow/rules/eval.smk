# Evaluation: one rule for every cell; the suite follows the task (workflow/rules/common.smk).


rule eval:
    input:
        f"{RESULTS}/{W}/models/{{model}}/{{method}}/{{task}}/{{leaf}}/{paths.MANIFEST}",
    output:
        f"{RESULTS}/{W}/evals/{{model}}/{{method}}/{{task}}/{{leaf}}/{{suite}}.json",
    log:
        f"{RESULTS}/{W}/logs/eval/{{model}}/{{method}}/{{task}}/{{leaf}}/{{suite}}.log",
    wildcard_constraints:
        model="[A-Za-z0-9._-]+",
        method="[a-z_]+",
        task="general|translation|summarization|arc",
        leaf="([0-9]+k|full)(\\+[A-Za-z0-9._+-]+)?",
        suite="general|translation|summarization|arc",
    params:
        cmd=eval_cmd,
    threads: lambda wc: 2 if WORLD.toy else 16  # = cpus_per_task: Snakemake sets OMP_NUM_THREADS to it (default 1)
    resources:
        gpu=lambda wc: 0 if WORLD.toy else (8 if wc.model.startswith("70b") else 1),
        cpus_per_task=lambda wc: 2 if WORLD.toy else 16,
        mem_mb=lambda wc: 4000 if WORLD.toy else 256_000,
        runtime=lambda wc: 60 if WORLD.toy else 12 * 60,
    conda:
        "../../envs/kdtools.yaml"
    shell:
        "{params.cmd} > {log} 2>&1"


# Tables and figures from whatever evaluations exist; a missing cell is a dash. Re-run after a
# target adds evaluations (`snakemake report -f` or any target that lists it).
rule report:
    input:
        lambda wc: EVALS_FOR_REPORT,
    output:
        REPORT,
    log:
        f"{RESULTS}/{W}/logs/report.log",
    localrule: True
    params:
        kd=shlex.join(["kdtools", *GLOBAL_ARGS]),
    conda:
        "../../envs/kdtools.yaml"
    shell:
        "{params.kd} report > {log} 2>&1"
