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
include: "workflow/rules/eval.smk"


# Targets: every cell's evaluation (its model, teacher, init and data come along through the
# rules). `all_tables` ends with the report of the whole grid; `demo` (the quick look: Table 3
# on the toy world's ladder) with its own report in <results>/<world>/demo/.


rule all_tables:
    localrule: True
    input:
        all_evals(),
        REPORT,


rule demo:
    localrule: True
    input:
        demo_targets(),
        DEMO_REPORT,


for _name, _files in grid().items():

    rule:
        name:
            _name
        localrule: True
        input:
            _files,
