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


# Targets. Today they stop at the trained models (run.json of each cell of the grid);
# evaluations, tables and figures join when eval and report are built.
rule all_tables:
    localrule: True
    input:
        sorted({f for files in grid().values() for f in files}),


rule demo:
    localrule: True
    input:
        demo_targets(),


for _name, _files in grid().items():

    rule:
        name:
            _name
        localrule: True
        input:
            _files,
