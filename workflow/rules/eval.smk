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
    threads: resource("eval", "cpus_per_task")  # = cpus_per_task: Snakemake sets OMP_NUM_THREADS to it (default 1)
    resources:
        **rule_resources("eval"),
    conda:
        "../../envs/kdtools.yaml"
    shell:
        "{params.cmd} > {log} 2>&1"


# A suite's floor (`kdtools eval --model floor`): what answers that know nothing score, through the
# same tasks and scorers; the report's fidelity table compares the teacher and students with it.
rule eval_floor:
    input:
        world_manifest(),
    output:
        floor_eval("{suite}"),
    log:
        f"{RESULTS}/{W}/logs/eval/floor/{{suite}}.log",
    wildcard_constraints:
        suite="general|translation|summarization|arc",
    params:
        cmd=floor_cmd,
    threads: 1  # no model: the benchmarks' scorers only
    resources:
        cpus_per_task=1,
        mem_mb=4000,
        runtime=30,
    conda:
        "../../envs/kdtools.yaml"
    shell:
        "{params.cmd} > {log} 2>&1"


# Tables and figures from whatever evaluations exist; a missing cell is a dash. `report` waits
# for the whole grid; `report_demo` for the demo's cells and writes to <results>/<world>/demo/.
rule report:
    input:
        all_evals(),
    output:
        REPORT,
    log:
        f"{RESULTS}/{W}/logs/report.log",
    localrule: True
    params:
        kd=shlex.join(["kdtools", *GLOBAL_ARGS]),
        out=lambda wc, output: str(Path(output[0]).parent.parent),  # <out>/tables/report.json
    conda:
        "../../envs/kdtools.yaml"
    shell:
        "{params.kd} report --out {params.out} > {log} 2>&1"


use rule report as report_demo with:
    input:
        demo_targets(),
    output:
        DEMO_REPORT,
    log:
        f"{RESULTS}/{W}/logs/report-demo.log",
