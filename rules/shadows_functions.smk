# Input/param builders of rules/shadows.smk (Snakemake style: functions apart from rules).
from types import SimpleNamespace

from kdprivacy.mia.registry import SHADOW_ATTACKS

SHADOWS = CFG.attacks.shadows
SHADOW_ASSIGNMENT = f"{R}/shadows/assignment.parquet"


def shadow_manifest(shadow):
    return f"{R}/shadows/shadow{shadow}/manifest.parquet"


def shadow_dir(family, shadow, model):
    return f"{R}/{family}/shadow{shadow}/models/{model}"


def shadow_scores(family, shadow, model):
    return f"{R}/{family}/shadow{shadow}/scores/{model}"


def has_shadows(model):
    """Whether the shadow attacks of ``model`` (a table row or a model name) can run: shadows on, named."""
    name = model["model"] if isinstance(model, dict) else model
    return SHADOWS.n > 0 and name in SHADOWS.models


def shadow_attacks_requested():
    return SHADOWS.n > 0 and any(n in SHADOW_ATTACKS for n in CFG.attacks.names)


def as_target(wildcards):
    """A shadow job's wildcards as the target rules' builders read them: ``seed`` is the shadow's training
    seed (attacks.shadows.seed + shadow), so a shadow pipeline is the target's recipe with its own seed."""
    return SimpleNamespace(**dict(wildcards.items()), seed=str(SHADOWS.seed + int(wildcards.shadow)))


def shadow_manifest_input(wildcards):
    return shadow_manifest(wildcards.shadow)


def shadow_teacher_cfg(wildcards):
    return teacher_cfg(as_target(wildcards))


def shadow_student_base_input(wildcards):
    return student_base_input(as_target(wildcards))


def shadow_student_teacher_input(wildcards):
    if not student_teacher_input(as_target(wildcards)):
        return []
    return [shadow_dir(wildcards.family, wildcards.shadow, "teacher")]


def shadow_generations_input(wildcards):
    if not student_generations_input(as_target(wildcards)):
        return []
    return [f"{R}/{wildcards.family}/shadow{wildcards.shadow}/generations/teacher.parquet"]


def shadow_student_cfg(wildcards):
    cfg = student_cfg(as_target(wildcards))
    if cfg["teacher"] is not None:
        cfg["teacher"] = frozen_teacher_ref(
            wildcards.family, shadow_dir(wildcards.family, wildcards.shadow, "teacher")
        )
    return cfg


def shadow_generation_cfg(wildcards):
    teacher = shadow_dir(wildcards.family, wildcards.shadow, "teacher")
    return {
        **teacher_generation_cfg(as_target(wildcards)),
        "teacher": frozen_teacher_ref(wildcards.family, teacher),
    }


def shadow_attack_inputs(family, model, population):
    """The shadow attacks' inputs of one target: the assignment, and the score table (and population table
    when ``population``) of the matching shadow model of every shadow."""
    if not has_shadows(model):
        return {}
    inputs = {"shadow_assignment": SHADOW_ASSIGNMENT}
    for j in range(SHADOWS.n):
        inputs[f"shadow_{j}"] = f"{shadow_scores(family, j, model)}.parquet"
        if population:
            inputs[f"shadow_population_{j}"] = f"{shadow_scores(family, j, model)}.population.parquet"
    return inputs


def shadow_curve_inputs(wildcards):
    scores = f"{R}/{wildcards.family}/seed{wildcards.seed}/scores/{wildcards.model}.parquet"
    return {"scores": scores, **shadow_attack_inputs(wildcards.family, wildcards.model, population=False)}


def shadow_attack_cfg():
    return {"variance": SHADOWS.variance}


NO_SHADOWS = "not testable: no shadow pipelines for this model (attacks.shadows.models)"
