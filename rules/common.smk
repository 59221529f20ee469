# Helpers shared by all rules: the validated config, paths, code versions and input functions.
# Validation runs before any job: a bad config stops here with a message naming the key.
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


wildcard_constraints:
    family="|".join(FAMILIES),
    seed=r"\d+",
    base="|".join({b for f in FAMILIES.values() for b in f.bases}),
    model="|".join(["teacher"] + sorted({s for f in FAMILIES.values() for s in f.students})),
    student="|".join(sorted({s for f in FAMILIES.values() for s in f.students}) or ["__none__"]),


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
    """(family, seed, model, role, method, base) for every trained model, in a fixed order."""
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
                }
            )
            for name, student in fam.students.items():
                rows.append(
                    {
                        "family": family,
                        "seed": seed,
                        "model": name,
                        "role": "student",
                        "method": student.method,
                        "base": student.base,
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
    return FAMILIES[wildcards.family].students[wildcards.student]


def student_base_input(wildcards):
    return base_inputs(wildcards.family, student(wildcards).base)


def student_teacher_input(wildcards):
    """Only methods that query the teacher depend on it (No-KD does not rerun when the teacher changes)."""
    if student(wildcards).method == "nokd":
        return []
    return [model_dir(wildcards.family, wildcards.seed, "teacher")]


def student_cfg(wildcards):
    s = student(wildcards)
    uses_teacher = s.method != "nokd"
    return {
        "base": base_ref(wildcards.family, s.base),
        "method": s.method,
        "teacher": (
            {"name_or_path": model_dir(wildcards.family, wildcards.seed, "teacher")} if uses_teacher else None
        ),
        "train": dump(s.train),
        "kd": dump(s.kd) if uses_teacher else None,
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
