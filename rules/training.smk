# The teacher (SFT on the private pool = members) and the students (public pool only).
STUDENT_METHOD_MODULES = [f"kd.{name}" for name in METHODS]  # the registry loads them by name


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
