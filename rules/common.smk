# Helpers shared by all rules: the validated config, paths, code versions and input functions.
# Validation runs before any job: a bad config stops here with a message naming the key.
import re

from kdprivacy.config import ConfigError, validate_config
from kdprivacy.provenance import code_version

try:
    CFG = validate_config(config)
except ConfigError as err:
    raise WorkflowError(str(err)) from None

R = "results"
ENV = "../envs/kdprivacy.yaml"
SEEDS = CFG.seeds
FAMILIES = CFG.families


STUDENTS = {family: fam.all_students() for family, fam in FAMILIES.items()}


def alternatives(names):
    return "|".join(re.escape(n) for n in sorted(names)) or "__none__"


wildcard_constraints:
    family=alternatives(FAMILIES),
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
    spec = FAMILIES[family].bases[base]
    if spec.from_scratch is not None:
        return {
            "name_or_path": base_dir(family, base),
            "revision": None,
            "dtype": "float32",
            "trust_remote_code": False,
        }
    return {k: v for k, v in dump(spec).items() if k != "from_scratch"}


def base_inputs(family, base):
    return [base_dir(family, base)] if FAMILIES[family].bases[base].from_scratch is not None else []


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


def final_tables():
    return [
        f"{R}/tables/mia.csv",
        f"{R}/tables/memorization.csv",
        f"{R}/tables/data_card.csv",
        f"{R}/tables/mia_auc_heatmap.csv",
    ]


def final_figures():
    return [f"{R}/figures/mia_auc_heatmap.png"]


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
        "seed": int(wildcards.seed),
        **data_lengths(),
    }


def student(wildcards):
    return STUDENTS[wildcards.family][wildcards.student][0]


def init_dir(family, seed, base):
    return f"{R}/{family}/seed{seed}/init/{base}"


def student_start(wildcards):
    """Where a student starts: its pretrained base, or the family's init student of that base."""
    s = student(wildcards)
    if s.init == "init":
        path = init_dir(wildcards.family, wildcards.seed, s.base)
        return {"name_or_path": path, "revision": None, "dtype": "float32", "trust_remote_code": False}, [
            path
        ]
    return base_ref(wildcards.family, s.base), base_inputs(wildcards.family, s.base)


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
    return {"name_or_path": model_dir(family, seed, "teacher")}


def student_cfg(wildcards):
    s = student(wildcards)
    return {
        "base": student_start(wildcards)[0],
        "init": s.init,
        "method": s.method,
        "teacher": teacher_ref(wildcards.family, wildcards.seed) if s.uses_teacher else None,
        "train": dump(s.train),
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
def scoring_cfg(wildcards):
    ev = CFG.evaluation
    return {
        "batch_size": ev.batch_size,
        "max_members": ev.max_members,
        "max_nonmembers": ev.max_nonmembers,
        "sample_seed": ev.sample_seed,
        **data_lengths(),
    }


# ---------------------------------------------------------------- memorization rules
def memorization_cfg(wildcards):
    mem, ev = CFG.memorization, CFG.evaluation
    return {
        "first_k": mem.first_k,
        "max_members": mem.max_members,
        "max_nonmembers": mem.max_nonmembers,
        "batch_size": mem.batch_size,
        "sample_seed": ev.sample_seed,
        **data_lengths(),
    }


# ---------------------------------------------------------------- report rules
def per_model(pattern):
    return [pattern.format(R=R, **m) for m in all_models()]
