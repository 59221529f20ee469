# Helpers shared by all rules: the validated config, paths, code versions and input functions.
# Validation runs before any job: a bad config stops here with a message naming the key.
import re

from snakemake.logging import logger

from kdprivacy import hub, runtime, sizing
from kdprivacy.config import ConfigError, model_ref, validate_config
from kdprivacy.fields import is_local, with_overrides
from kdprivacy.kd import METHODS
from kdprivacy.provenance import code_version, input_hash

# Strict types: --config values nested in a mapping/list come from Snakemake as strings and are re-typed
# (fields.typed_overrides); local model directories and the data file must exist, relative paths taken from
# the working directory (where Snakemake parses this file).
try:
    CFG = validate_config(with_overrides(config, workflow.config_settings.config), check_paths=True)
except ConfigError as err:
    raise WorkflowError(str(err)) from None

R = "results"

# Hub access: download_hub fetches every hub name into the cache; every other job reads only that cache
# (jobs inherit this environment, also on SLURM, where each job parses this file again).
hub.set_environment(CFG.hub)
# deterministic: true -> every job turns on torch's deterministic algorithms (kdprivacy.runtime.start)
runtime.set_deterministic_environment(CFG.deterministic)
HUB_ENTRIES = hub.entries(CFG)
DOWNLOADS = f"{R}/hub/downloads.json"

CONFIG_NAME = (
    ", ".join(str(p) for p in workflow.config_settings.configfiles) or "config.yaml (embedded default)"
)
ENV = "../envs/kdprivacy.yaml"
SEEDS = CFG.seeds
FAMILIES = CFG.families


STUDENTS = {family: fam.all_students() for family, fam in FAMILIES.items()}


def alternatives(names):
    return "|".join(re.escape(n) for n in sorted(names)) or "__none__"


def code(script, *modules):
    """Rerun trigger for library changes: hash of the modules a rule's script uses, and the script; every
    script runs as a ``runtime.Job``, which writes its outputs (``io``: atomic files, CSV float format)."""
    return code_version("runtime", *modules, extra_files=(f"{KD_DIR}/scripts/{script}",))


def dump(model):
    return model.model_dump(mode="json")


def model_dir(family, seed, model):
    return f"{R}/{family}/seed{seed}/models/{model}"


def base_dir(family, base):
    return f"{R}/{family}/base/{base}"


def base_ref(family, base):
    """How a job loads a base: the pretrained from-scratch directory, or the hub name/local path."""
    return FAMILIES[family].bases[base].ref(base_dir(family, base))


def model_inputs(name_or_path):
    """What a job that loads ``name_or_path`` depends on: the local directory itself (a missing one stops the
    plan; its content hash is a param, see ``sources``), or the hub download manifest."""
    return [os.path.normpath(os.path.expanduser(name_or_path))] if is_local(name_or_path) else [DOWNLOADS]


def sources(input_fn):
    """A param holding the content hash of every external input of a rule (local model directories, the data
    file): Snakemake sees a directory's own mtime only, so editing weights in place would rerun nothing.
    Hashes are cached by file size and mtime (kdprivacy.provenance.input_hash)."""

    def fn(wildcards):
        found = input_fn(wildcards)
        paths = found.values() if isinstance(found, dict) else found
        return {p: input_hash(p) for p in paths if not p.startswith(f"{R}/")}

    return fn


def base_inputs(family, base):
    spec = FAMILIES[family].bases[base]
    return [base_dir(family, base)] if spec.from_scratch is not None else model_inputs(spec.name_or_path)


def data_lengths():
    return {"max_length": CFG.data.max_length, "max_prompt_length": CFG.data.max_prompt_length}


MODEL_COLUMNS = ("family", "seed", "model", "role", "method", "base", "ablation", "ablation_value")


def all_models():
    """Every trained model, in a fixed order, with the columns the tables carry (MODEL_COLUMNS)."""
    rows = []
    for family, fam in FAMILIES.items():
        for seed in SEEDS:
            teacher = (family, seed, "teacher", "teacher", "teacher", fam.teacher.base, None, None)
            rows.append(dict(zip(MODEL_COLUMNS, teacher)))
            for name, (student, axis, value) in STUDENTS[family].items():
                row = (family, seed, name, "student", student.method, student.base, axis, value)
                rows.append(dict(zip(MODEL_COLUMNS, row)))
    return rows


def all_model_dirs():
    return [model_dir(m["family"], m["seed"], m["model"]) for m in all_models()]


# ---------------------------------------------------------------- resources
def _sized(rule, key):
    def fn(wildcards, attempt):
        work = sizing.work_for(CFG, rule, dict(wildcards.items()))
        return sizing.request(work, CFG.resources, attempt)[key]

    return fn


def mem_mb(rule):
    """Host memory of a rule's jobs (kdprivacy.sizing: the models the job holds; +50% per retry, capped)."""
    return _sized(rule, "mem_mb")


def runtime(rule):
    """Wall-time minutes of a rule's jobs (kdprivacy.sizing: FLOPs over throughput; +50% per retry, capped)."""
    return _sized(rule, "runtime")


def gpus(rule):
    res = CFG.resources
    return res.train_gpus if rule in sizing.TRAIN_RULES and res.train_gpus is not None else res.gpu


for _warning in sizing.plan_warnings(CFG):
    logger.warning(f"sizing: {_warning}")
for _warning in sizing.population_warnings(CFG):
    logger.warning(f"rmia: {_warning}")


# The targets (of rule all), the report rules' tables and figures (collected_tables, figure_outputs, see rules/report.smk).
def final_tables():
    tables = [
        f"{R}/tables/{name}.csv"
        for name in (
            "mia",
            "mia_pooled",
            "mia_category",
            "mia_paired",
            "mia_paired_pooled",
            "mia_split",
            "mia_best_attack",
            "memorization",
            "data_card",
            "mia_auc_heatmap",
        )
    ]
    if CFG.attacks.blind.enabled:
        tables.append(f"{R}/tables/blind_baseline.csv")
    tables += [f"{R}/tables/{name}.csv" for name in collected_tables()]
    return tables + [
        f"{R}/tables/findings.csv",
        f"{R}/tables/paper_comparison.csv",
        f"{R}/tables/paper_claims.csv",
    ]


def final_figures():
    outs = [f"{R}/figures/mia_auc_heatmap.png", f"{R}/summary.md"]
    for value in figure_outputs().values():
        outs += value if isinstance(value, list) else [value]
    return outs
