# kdprivacy: does a teacher LLM's private training data leak into the students distilled from it?
# Targets: `all` (default: tables, heatmap), `models`, `tables`. See README.md.
import os
import sys

from snakemake.utils import min_version

min_version("9.0")

# This workflow's own directory: workflow.basedir is the *importing* workflow's when this one is used as a
# Snakemake module (`module kd: snakefile: ...`), so every path to our own files starts from here.
KD_DIR = os.path.abspath(str(workflow.current_basedir))
sys.path.insert(0, KD_DIR)


# config.yaml (next to this file) is the embedded default. A --configfile replaces it instead of being
# merged into it, so a paper config never inherits the demo's families; --config still overrides keys.
if not workflow.config_settings.configfiles:

    configfile: os.path.join(KD_DIR, "config.yaml")


report: "report/workflow.rst"


include: "rules/common.smk"


# Every rule runs in this image under --sdm apptainer (README: build it once, point the profile at it).
container: CFG.container


include: "rules/data_functions.smk"
include: "rules/data.smk"
include: "rules/models_functions.smk"
include: "rules/models.smk"
include: "rules/training_functions.smk"
include: "rules/training.smk"
include: "rules/attacks_functions.smk"
include: "rules/attacks.smk"
include: "rules/shadows_functions.smk"
include: "rules/shadows.smk"
include: "rules/memorization_functions.smk"
include: "rules/memorization.smk"
include: "rules/report_functions.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        tables=final_tables(),
        figures=final_figures(),


rule models:
    input:
        all_model_dirs(),


rule tables:
    input:
        final_tables(),
