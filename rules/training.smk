# The teacher (SFT on the private pool = members) and the students (public pool only).
STUDENT_METHOD_MODULES = [f"kd.{name}" for name in METHODS]  # the registry loads them by name


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


rule train_teacher:
    input:
        manifest=rules.prepare_data.output.manifest,
        base=teacher_base_input,
    output:
        dir=directory(f"{R}/{{family}}/seed{{seed}}/models/teacher"),
    log:
        f"{R}/logs/train_teacher/{{family}}/seed{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/train_teacher/{{family}}/seed{{seed}}.tsv"
    conda:
        ENV
    threads: CFG.resources.threads
    resources:
        mem_mb=mem_mb("train_teacher"),
        runtime=runtime("train_teacher"),
        gpu=gpus("train_teacher"),
    params:
        sources=sources(teacher_base_input),
        cfg=teacher_cfg,
        code=code("train_teacher.py", "models", "train.jobs", "checkpoint"),
    script:
        "../scripts/train_teacher.py"


rule train_student:
    input:
        manifest=rules.prepare_data.output.manifest,
        base=student_base_input,
        teacher=student_teacher_input,
        generations=student_generations_input,
    output:
        dir=directory(f"{R}/{{family}}/seed{{seed}}/models/{{student}}"),
    log:
        f"{R}/logs/train_student/{{family}}/seed{{seed}}/{{student}}.log",
    benchmark:
        f"{R}/benchmarks/train_student/{{family}}/seed{{seed}}/{{student}}.tsv"
    conda:
        ENV
    threads: CFG.resources.threads
    resources:
        mem_mb=mem_mb("train_student"),
        runtime=runtime("train_student"),
        gpu=gpus("train_student"),
    params:
        sources=sources(student_base_input),
        cfg=student_cfg,
        code=code("train_student.py", "models", "train.jobs", *STUDENT_METHOD_MODULES, "checkpoint"),
    script:
        "../scripts/train_student.py"


rule train_init:
    input:
        manifest=rules.prepare_data.output.manifest,
        base=init_base_input,
    output:
        dir=directory(f"{R}/{{family}}/seed{{seed}}/init/{{base}}"),
    log:
        f"{R}/logs/train_init/{{family}}/seed{{seed}}/{{base}}.log",
    benchmark:
        f"{R}/benchmarks/train_init/{{family}}/seed{{seed}}/{{base}}.tsv"
    conda:
        ENV
    threads: CFG.resources.threads
    resources:
        mem_mb=mem_mb("train_init"),
        runtime=runtime("train_init"),
        gpu=gpus("train_init"),
    params:
        sources=sources(init_base_input),
        cfg=init_cfg,
        code=code("train_student.py", "models", "train.jobs", *STUDENT_METHOD_MODULES, "checkpoint"),
    script:
        "../scripts/train_student.py"


rule generate_teacher:
    input:
        manifest=rules.prepare_data.output.manifest,
        teacher=f"{R}/{{family}}/seed{{seed}}/models/teacher",
    output:
        generations=f"{R}/{{family}}/seed{{seed}}/generations/teacher.parquet",
        provenance=f"{R}/{{family}}/seed{{seed}}/generations/teacher.parquet.provenance.json",
    log:
        f"{R}/logs/generate_teacher/{{family}}/seed{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/generate_teacher/{{family}}/seed{{seed}}.tsv"
    conda:
        ENV
    threads: CFG.resources.threads
    resources:
        mem_mb=mem_mb("generate_teacher"),
        runtime=runtime("generate_teacher"),
        gpu=gpus("generate_teacher"),
    params:
        cfg=teacher_generation_cfg,
        code=code("generate_teacher.py", "kd.generations"),
    script:
        "../scripts/generate_teacher.py"
