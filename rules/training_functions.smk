# Input/param builders of rules/training.smk (Snakemake style: functions apart from rules).


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
    if not METHODS[s.method].needs_teacher(s.params):
        return []
    return [model_dir(wildcards.family, wildcards.seed, "teacher")]


def student_generations_input(wildcards):
    if student(wildcards).method != "seqkd":
        return []
    return [f"{R}/{wildcards.family}/seed{wildcards.seed}/generations/teacher.parquet"]


def frozen_teacher_ref(family, path):
    """The frozen teacher at ``path`` as KD and generation load it (optionally 8-/4-bit)."""
    return model_ref(path, quantization=FAMILIES[family].teacher.quantization)


def teacher_ref(family, seed):
    return frozen_teacher_ref(family, model_dir(family, seed, "teacher"))


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
        "generation": dump(s.generation) if METHODS[s.method].samples_student else None,
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
