# Training stages: one rule per verb, each calling the kdtools CLI through shell:.


rule sft:
    input:
        data=data_manifest(),
    output:
        f"{RESULTS}/{W}/models/{{model}}/sft/general/{{size}}/{paths.MANIFEST}",
    log:
        f"{RESULTS}/{W}/logs/sft/{{model}}/general/{{size}}.log",
    wildcard_constraints:
        model="[A-Za-z0-9._-]+",
        size="[0-9]+k|full",
    resources:
        gpu=train_resource("gpu"),
        nodes=train_resource("nodes"),
        cpus_per_task=train_resource("cpus_per_task"),
        mem_mb=train_resource("mem_mb"),
        runtime=train_resource("runtime"),
    params:
        kd=KD,
    conda:
        "../../envs/kdtools.yaml"
    shell:
        "{params.kd} sft --model {wildcards.model} --data {wildcards.size} > {log} 2>&1"
