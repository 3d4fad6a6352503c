# kdtools: the paper's study as one DAG.  snakemake --profile profiles/slurm all_tables
# Only config, validation, includes and the top-level targets live here; rules are in
# workflow/rules/, the grid in workflow/rules/common.smk.
from snakemake.utils import min_version, validate

min_version("9.0")

configfile: "workflow/config/config.yaml"
validate(config, "workflow/schemas/config.schema.json")

include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"


# What exists today: the toy world (if any), the data subsets, and SFT of every student and the
# teacher on the world's demo sizes. Tables and figures join when eval and report are built.
rule demo:
    localrule: True
    input:
        demo_targets(),


rule all_tables:
    localrule: True
    input:
        demo_targets(),
