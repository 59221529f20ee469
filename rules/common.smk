# Helpers shared by all rules: the validated config, paths, code versions and input functions.
# Validation runs before any job: a bad config stops here with a message naming the key.
import re

from snakemake.logging import logger

from kdprivacy import hub, sizing
from kdprivacy.config import ConfigError, model_ref, validate_config
from kdprivacy.fields import is_local, with_overrides
from kdprivacy.kd import METHODS, SGO_PARAM
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
HUB_ENTRIES = hub.entries(CFG)
DOWNLOADS = f"{R}/hub/downloads.json"

CONFIG_NAME = (
    ", ".join(str(p) for p in workflow.config_settings.configfiles) or "config.yaml (embedded default)"
)
ENV = "../envs/kdprivacy.yaml"
SEEDS = CFG.seeds
FAMILIES = CFG.families


STUDENTS = {family: fam.all_students() for family, fam in FAMILIES.items()}
COLLECTED_NAMES = ("memorization_summary", "inheritance", "membership_vs_memorization", "utility", "blocks")


def alternatives(names):
    return "|".join(re.escape(n) for n in sorted(names)) or "__none__"


wildcard_constraints:
    family=alternatives(FAMILIES),
    ref="pretrained|external",
    table=alternatives(COLLECTED_NAMES),
    seed=r"\d+",
    base=alternatives({b for f in FAMILIES.values() for b in f.bases}),
    model=alternatives({"teacher"} | {s for students in STUDENTS.values() for s in students}),
    student=alternatives({s for students in STUDENTS.values() for s in students}),


def code(script, *modules):
    """Rerun trigger for library changes: hash of the modules a rule's script uses, and the script."""
    return code_version(*modules, extra_files=(f"{workflow.basedir}/scripts/{script}",))


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


def prepare_data_inputs(wildcards):
    """The data file (source file) or the hub download manifest (source hub); synthetic data has none."""
    if CFG.data.source == "file":
        return {"data": os.path.normpath(os.path.expanduser(CFG.data.file.path))}
    return {"hub": DOWNLOADS} if hub.dataset_entries(CFG) else {}


def hub_cfg():
    return {"entries": HUB_ENTRIES}


def data_source_cfg():
    """Only what decides the manifest: the active source and the split (not sequence lengths)."""
    data = dump(CFG.data)
    return {"source": data["source"], data["source"]: data[data["source"]], "split": data["split"]}


def data_lengths():
    return {"max_length": CFG.data.max_length, "max_prompt_length": CFG.data.max_prompt_length}


def all_models():
    """Every trained model, in a fixed order, with the columns the tables carry."""
    rows = []
    for family, fam in FAMILIES.items():
        for seed in SEEDS:
            rows.append(
                {
                    "family": family,
                    "seed": seed,
                    "model": "teacher",
                    "role": "teacher",
                    "method": "teacher",
                    "base": fam.teacher.base,
                    "ablation": None,
                    "ablation_value": None,
                }
            )
            for name, (student, axis, value) in STUDENTS[family].items():
                rows.append(
                    {
                        "family": family,
                        "seed": seed,
                        "model": name,
                        "role": "student",
                        "method": student.method,
                        "base": student.base,
                        "ablation": axis,
                        "ablation_value": value,
                    }
                )
    return rows


def all_model_dirs():
    return [model_dir(m["family"], m["seed"], m["model"]) for m in all_models()]


# ---------------------------------------------------------------- resources
def mem_mb(rule):
    """Host memory of a rule's jobs (kdprivacy.sizing: the models the job holds; +50% per retry, capped)."""

    def fn(wildcards, attempt):
        work = sizing.work_for(CFG, rule, dict(wildcards.items()))
        return sizing.request(work, CFG.resources, attempt)["mem_mb"]

    return fn


def runtime(rule):
    """Wall-time minutes of a rule's jobs (kdprivacy.sizing: FLOPs over throughput; +50% per retry, capped)."""

    def fn(wildcards, attempt):
        work = sizing.work_for(CFG, rule, dict(wildcards.items()))
        return sizing.request(work, CFG.resources, attempt)["runtime"]

    return fn


def gpus(rule):
    res = CFG.resources
    return res.train_gpus if rule in sizing.TRAIN_RULES and res.train_gpus is not None else res.gpu


for _warning in sizing.plan_warnings(CFG):
    logger.warning(f"sizing: {_warning}")


def final_tables():
    tables = [
        f"{R}/tables/{name}.csv"
        for name in (
            "mia",
            "mia_pooled",
            "mia_category",
            "mia_paired",
            "mia_paired_pooled",
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


# ---------------------------------------------------------------- report rules
def per_model(pattern, role=None):
    return [pattern.format(R=R, **m) for m in all_models() if role is None or m["role"] == role]


# Per-model tables stacked into results/tables/<name>.csv, with the model's key columns in front.
# name -> (per-model path pattern, which models: None = all, "student" = students only, enabled?)
COLLECTED = {
    "memorization_summary": ("{R}/{family}/seed{seed}/memorization/{model}.summary.csv", None, True),
    "inheritance": ("{R}/{family}/seed{seed}/inheritance/{model}.csv", "student", True),
    "membership_vs_memorization": (
        "{R}/{family}/seed{seed}/inheritance/{model}.correlation.csv",
        "student",
        True,
    ),
    "utility": ("{R}/{family}/seed{seed}/utility/{model}.summary.csv", None, CFG.utility.enabled),
    "blocks": ("{R}/{family}/seed{seed}/blocks/{model}.csv", None, CFG.blocks.enabled),
}


def collected_tables():
    return [name for name, (_, role, enabled) in COLLECTED.items() if enabled and per_model("x", role)]


def collect_inputs(wildcards):
    pattern, role, _ = COLLECTED[wildcards.table]
    return per_model(pattern, role)


def collect_models(wildcards):
    return [m for m in all_models() if COLLECTED[wildcards.table][1] in (None, m["role"])]


# ---------------------------------------------------------------- figures, findings, paper comparison
FIG = f"{R}/figures"


def student_base_pairs():
    return sorted(
        {(family, s.base) for family, students in STUDENTS.items() for s, _, _ in students.values()}
    )


def student_bases():
    return [f"{family}/{base}" for family, base in student_base_pairs()]


def ablation_sources():
    """The student each ablation copies, and that student's own axis value (the figures' reference)."""
    out = {}
    for family, fam in FAMILIES.items():
        abl, entry = fam.ablations, {}
        if abl.objective is not None:
            src = fam.students[abl.objective.student]
            entry["objective"] = {"student": abl.objective.student, "objective": src.kd.objective}
        if abl.sgo_ratio is not None:
            src = fam.students[abl.sgo_ratio.student]
            value = getattr(getattr(src, src.method), SGO_PARAM[src.method])
            entry["sgo_ratio"] = {"student": abl.sgo_ratio.student, "value": value}
        if entry:
            out[family] = entry
    return out


def figure(name, caption, category):
    return report(
        f"{FIG}/{name}.png",
        caption=os.path.join(workflow.basedir, "report", f"{caption}.rst"),
        category=category,
    )


def figure_outputs():
    """Only the figures this config can fill are declared (and shown in the report)."""
    mi, mem = "Membership inference", "Memorization"
    outs = {
        "methods": [
            figure(f"mia_auc_{family}_{base}", "mia_auc_methods", mi) for family, base in student_base_pairs()
        ],
        "baselines": figure("mia_auc_baselines", "mia_auc_baselines", mi),
        "category": figure("risk_by_category", "risk_by_category", mi),
        "roc": figure("roc_loglog", "roc_loglog", mi),
        "memorization_rate": figure("memorization_rate", "memorization_rate", mem),
        "memorization_gap": figure("memorization_gap", "memorization_gap", mem),
        "membership_vs_memorization": figure("membership_vs_memorization", "membership_vs_memorization", mem),
    }
    if CFG.utility.enabled:
        outs["utility"] = figure("utility_rouge_l", "utility_rouge_l", "Utility")
        outs["privacy_utility"] = figure("privacy_vs_utility", "privacy_vs_utility", "Utility")
    if CFG.blocks.enabled:
        outs["blocks"] = figure("blocks_mope", "blocks_mope", "Per-block risk")
    if any(f.ablations.objective for f in FAMILIES.values()):
        outs["objective"] = figure("ablation_objective", "ablation_objective", "Ablations")
    if any(f.ablations.sgo_ratio for f in FAMILIES.values()):
        outs["sgo"] = figure("ablation_sgo", "ablation_sgo", "Ablations")
    return outs


def optional_tables(*names):
    """Tables the report rules read; utility/blocks only when those stages run."""
    enabled = {
        "utility": CFG.utility.enabled,
        "blocks": CFG.blocks.enabled,
        "blind_baseline": CFG.attacks.blind.enabled,
    }
    return {n: f"{R}/tables/{n}.csv" for n in names if enabled.get(n, True)}


def figure_inputs(wildcards):
    return {
        **optional_tables("mia", "mia_category", "memorization", "memorization_summary", "utility", "blocks"),
        "roc": per_model("{R}/{family}/seed{seed}/attacks/{model}.roc.csv"),
    }


def figures_cfg():
    return {"attacks": CFG.attacks.names, "student_bases": student_bases(), "sources": ablation_sources()}


def findings_inputs(wildcards):
    return optional_tables("mia", "mia_paired", "memorization", "blind_baseline", "mia_category", "blocks")


def findings_cfg():
    sizes = {family: {base: fam.n_params(base) for base in fam.bases} for family, fam in FAMILIES.items()}
    return {"attacks": CFG.attacks.names, "sources": ablation_sources(), "base_sizes": sizes}


def paper_cfg():
    """Map our runs to the paper's cells by hub model name; from-scratch families map to nothing."""
    from kdprivacy import paper

    names = {
        family: {base: spec.name_or_path for base, spec in fam.bases.items() if spec.name_or_path}
        for family, fam in FAMILIES.items()
    }
    return {"paper": paper.mapping_from_names(names)}
