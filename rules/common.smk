# Helpers shared by all rules: the validated config, paths, code versions and input functions.
# Validation runs before any job: a bad config stops here with a message naming the key.
import re

from snakemake.logging import logger

from kdprivacy import hub, sizing
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


wildcard_constraints:
    family=alternatives(FAMILIES),
    ref="pretrained|external",
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


# The targets (rule all): the report rules' tables and figures (collected_tables, figure_outputs: rules/report.smk).
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


# ---------------------------------------------------------------- models rules
def tokenizer_cfg(wildcards):
    return dump(FAMILIES[wildcards.family].tokenizer.train)


def pretrain_cfg(wildcards):
    fam = FAMILIES[wildcards.family]
    return {
        "spec": dump(fam.bases[wildcards.base].from_scratch),
        "train": dump(fam.pretrain.train),
        "pools": fam.pretrain.pools,
        "seed": fam.pretrain.seed,
        **data_lengths(),
    }


# ---------------------------------------------------------------- training rules
def teacher_base_input(wildcards):
    return base_inputs(wildcards.family, FAMILIES[wildcards.family].teacher.base)


def teacher_cfg(wildcards):
    fam = FAMILIES[wildcards.family]
    return {
        "base": base_ref(wildcards.family, fam.teacher.base),
        "train": dump(fam.teacher.train),
        "lora": dump(fam.teacher.lora) if fam.teacher.lora else None,
        "seed": int(wildcards.seed),
        **data_lengths(),
    }


def student(wildcards):
    return STUDENTS[wildcards.family][wildcards.student][0]


def init_dir(family, seed, base):
    return f"{R}/{family}/seed{seed}/init/{base}"


def student_start(wildcards):
    """Where a student starts: its pretrained base, or the family's init student of that base (stored in the
    base's dtype, so the student's checkpoint is saved in that dtype too)."""
    s = student(wildcards)
    ref = base_ref(wildcards.family, s.base)
    if s.init == "init":
        path = init_dir(wildcards.family, wildcards.seed, s.base)
        return model_ref(path, dtype=ref["dtype"]), [path]
    return ref, base_inputs(wildcards.family, s.base)


def student_base_input(wildcards):
    return student_start(wildcards)[1]


def student_teacher_input(wildcards):
    """Only methods that query the teacher depend on it (No-KD does not rerun when the teacher changes)."""
    s = student(wildcards)
    if not s.uses_teacher or (s.method == "seqkd" and s.seqkd.loss == "ce"):
        return []
    return [model_dir(wildcards.family, wildcards.seed, "teacher")]


def student_generations_input(wildcards):
    if student(wildcards).method != "seqkd":
        return []
    return [f"{R}/{wildcards.family}/seed{wildcards.seed}/generations/teacher.parquet"]


def teacher_ref(family, seed):
    """The frozen teacher as KD and generation load it (optionally 8-/4-bit)."""
    return model_ref(model_dir(family, seed, "teacher"), quantization=FAMILIES[family].teacher.quantization)


def student_cfg(wildcards):
    s = student(wildcards)
    return {
        "base": student_start(wildcards)[0],
        "init": s.init,
        "method": s.method,
        "teacher": teacher_ref(wildcards.family, wildcards.seed) if s.uses_teacher else None,
        "train": dump(s.train),
        "lora": dump(s.lora) if s.lora else None,
        "kd": dump(s.kd) if s.uses_teacher else None,
        "generation": dump(s.generation) if s.method in ("imitkd", "gkd", "minillm", "distillm") else None,
        "method_params": s.method_params,
        "seed": int(wildcards.seed),
        **data_lengths(),
    }


def init_base_input(wildcards):
    return base_inputs(wildcards.family, wildcards.base)


def init_cfg(wildcards):
    """The init student is a No-KD fine-tune of the base on public data with the family's init settings."""
    fam = FAMILIES[wildcards.family]
    return {
        "base": base_ref(wildcards.family, wildcards.base),
        "method": "nokd",
        "teacher": None,
        "train": dump(fam.init.train),
        "lora": dump(fam.init.lora) if fam.init.lora else None,
        "kd": None,
        "generation": None,
        "method_params": None,
        "seed": int(wildcards.seed),
        **data_lengths(),
    }


def teacher_generation_cfg(wildcards):
    fam = FAMILIES[wildcards.family]
    return {
        "teacher": teacher_ref(wildcards.family, wildcards.seed),
        "generation": dump(fam.teacher_generation),
        "seed": int(wildcards.seed),
        **data_lengths(),
    }


# ---------------------------------------------------------------- attacks rules
def scoring_cfg(wildcards=None):
    ev, att = CFG.evaluation, CFG.attacks
    return {
        "batch_size": ev.batch_size,
        "max_members": ev.max_members,
        "max_nonmembers": ev.max_nonmembers,
        "sample_seed": ev.sample_seed,
        "population": dump(ev.population),
        "short_tokens": att.short_tokens,
        "precision": ev.precision,
        **data_lengths(),
    }


def reference_model(family, ref):
    """``pretrained``: the teacher's pretrained base (the paper's Ref-pretrained, for every model of the
    family); ``external``: attacks.external_reference. Returns (how to load it, local inputs)."""
    if ref == "pretrained":
        base = FAMILIES[family].teacher.base
        return base_ref(family, base), base_inputs(family, base)
    ext = CFG.attacks.external_reference
    if ext.family is not None:
        return base_ref(ext.family, ext.base), base_inputs(ext.family, ext.base)
    return ext.ref(), model_inputs(ext.name_or_path)


def reference_input(wildcards):
    return reference_model(wildcards.family, wildcards.ref)[1]


def reference_scoring_cfg(wildcards):
    return {**scoring_cfg(), "model": reference_model(wildcards.family, wildcards.ref)[0]}


def mope_cfg(wildcards):
    ev, mope = CFG.evaluation, CFG.attacks.mope
    return {
        "k": mope.k,
        "sigma": mope.sigma,
        "seed": mope.seed,
        "batch_size": mope.batch_size or ev.batch_size,
        "max_members": ev.max_members,
        "max_nonmembers": ev.max_nonmembers,
        "sample_seed": ev.sample_seed,
        "block": None,
        "precision": ev.precision,
        **data_lengths(),
    }


def nokd_reference(family, model):
    """The No-KD student a model is compared with: same base when there is one, else the family's first."""
    students = FAMILIES[family].students
    nokd = [n for n, s in students.items() if s.method == "nokd"]
    base = FAMILIES[family].teacher.base if model == "teacher" else STUDENTS[family][model][0].base
    same = [n for n in nokd if students[n].base == base]
    return (same or nokd)[0]


def attack_inputs(wildcards):
    """The target's scores plus whatever its attacks read: reference scores, populations, MoPe."""
    family, seed, model = wildcards.family, wildcards.seed, wildcards.model
    scores = f"{R}/{family}/seed{seed}/scores"
    inputs = {
        "scores": f"{scores}/{model}.parquet",
        "manifest": rules.prepare_data.output.manifest,
    }
    names = CFG.attacks.names
    for ref in CFG.attacks.reference_names:
        if ref == "nokd":
            other = nokd_reference(family, model)
            inputs["ref_nokd"] = f"{scores}/{other}.parquet"
            inputs["population_nokd"] = f"{scores}/{other}.population.parquet"
        else:
            inputs[f"ref_{ref}"] = f"{R}/{family}/references/{ref}.parquet"
            inputs[f"population_{ref}"] = f"{R}/{family}/references/{ref}.population.parquet"
    if "rmia" in names:
        inputs["population"] = f"{scores}/{model}.population.parquet"
    if "mope" in names:
        inputs["mope"] = f"{R}/{family}/seed{seed}/mope/{model}.parquet"
    return inputs


def attack_cfg():
    att = CFG.attacks
    return {
        "names": att.names,
        "min_k": att.min_k,
        "fprs": att.fprs,
        "n_bootstrap": att.n_bootstrap,
        "bootstrap_seed": att.bootstrap_seed,
        "short_tokens": att.short_tokens,
        "roc_max_points": att.roc_max_points,
        "rmia": dump(att.rmia),
    }


def blind_cfg():
    ev, att = CFG.evaluation, CFG.attacks
    return {
        **{k: v for k, v in dump(att.blind).items() if k != "enabled"},
        "max_members": ev.max_members,
        "max_nonmembers": ev.max_nonmembers,
        "sample_seed": ev.sample_seed,
        "fprs": att.fprs,
        "n_bootstrap": att.n_bootstrap,
        "bootstrap_seed": att.bootstrap_seed,
    }


# ---------------------------------------------------------------- memorization rules
def memorization_cfg(wildcards):
    mem, ev = CFG.memorization, CFG.evaluation
    return {
        **{k: v for k, v in dump(mem).items() if k != "inheritance_thresholds"},
        "sample_seed": ev.sample_seed,
        "bootstrap_seed": CFG.attacks.bootstrap_seed,
        **data_lengths(),
    }


def inheritance_inputs(wildcards):
    run = f"{R}/{wildcards.family}/seed{wildcards.seed}"
    return {
        "teacher": f"{run}/memorization/teacher.parquet",
        "student": f"{run}/memorization/{wildcards.student}.parquet",
        "student_attacks": f"{run}/attacks/{wildcards.student}.parquet",
        "teacher_attacks": f"{run}/attacks/teacher.parquet",
    }


def inheritance_cfg():
    return {
        "thresholds": CFG.memorization.inheritance_thresholds,
        "n_bootstrap": CFG.memorization.n_bootstrap,
        "bootstrap_seed": CFG.attacks.bootstrap_seed,
    }


def utility_cfg(wildcards):
    return {
        **{k: v for k, v in dump(CFG.utility).items() if k != "enabled"},
        "sample_seed": CFG.evaluation.sample_seed,
        "n_bootstrap": CFG.memorization.n_bootstrap,
        "bootstrap_seed": CFG.attacks.bootstrap_seed,
        **data_lengths(),
    }


def blocks_cfg(wildcards):
    blk = CFG.blocks
    return {
        **{k: v for k, v in dump(blk).items() if k != "enabled"},
        "batch_size": blk.batch_size or CFG.evaluation.batch_size,
        "sample_seed": CFG.evaluation.sample_seed,
        "bootstrap_seed": CFG.attacks.bootstrap_seed,
        "precision": CFG.evaluation.precision,
        **data_lengths(),
    }
