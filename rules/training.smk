# The teacher (SFT on the private pool = members) and the students (public pool only).


def teacher_base_input(wildcards):
    return base_inputs(wildcards.family, FAMILIES[wildcards.family].teacher.base)


def teacher_cfg(wildcards):
    fam = FAMILIES[wildcards.family]
    return {"base": base_ref(wildcards.family, fam.teacher.base), "train": dump(fam.teacher.train),
            "seed": int(wildcards.seed), **data_lengths()}


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
        "teacher": {"name_or_path": model_dir(wildcards.family, wildcards.seed, "teacher")} if uses_teacher else None,
        "train": dump(s.train),
        "kd": dump(s.kd) if uses_teacher else None,
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
    params:
        cfg=teacher_cfg,
        code=code("train_teacher.py", "models", "training"),
    threads: 4
    conda:
        ENV
    script:
        "../scripts/train_teacher.py"


rule train_student:
    input:
        manifest=rules.prepare_data.output.manifest,
        base=student_base_input,
        teacher=student_teacher_input,
    output:
        dir=directory(f"{R}/{{family}}/seed{{seed}}/models/{{student}}"),
    log:
        f"{R}/logs/train_student/{{family}}/seed{{seed}}/{{student}}.log",
    benchmark:
        f"{R}/benchmarks/train_student/{{family}}/seed{{seed}}/{{student}}.tsv"
    params:
        cfg=student_cfg,
        code=code("train_student.py", "models", "training"),
    threads: 4
    conda:
        ENV
    script:
        "../scripts/train_student.py"
