# Shadow teacher-to-student pipelines (attacks.shadows; LiRA and RMIA-shadow): the IN/OUT assignment, and for
# every shadow the target's rules again -- same recipes, same resources -- on the shadow's manifest (its IN
# candidates as the private pool) with its own training seed, scored on the target's evaluation set.


rule shadow_assignment:
    input:
        manifest=rules.prepare_data.output.manifest,
    output:
        assignment=SHADOW_ASSIGNMENT,
    log:
        f"{R}/logs/shadow_assignment.log",
    localrule: True
    conda:
        ENV
    params:
        cfg={"n": SHADOWS.n, "seed": SHADOWS.seed},
        code=code("shadow_assignment.py", "mia.jobs", "mia.shadows"),
    script:
        "../scripts/shadow_assignment.py"


# One job per shadow, depending on (seed, shadow) only: adding shadows leaves the existing ones untouched.
rule shadow_manifest:
    input:
        manifest=rules.prepare_data.output.manifest,
    output:
        manifest=shadow_manifest("{shadow}"),
    log:
        f"{R}/logs/shadow_manifest/shadow{{shadow}}.log",
    localrule: True
    conda:
        ENV
    params:
        cfg=lambda wildcards: {"shadow": int(wildcards.shadow), "seed": SHADOWS.seed},
        code=code("shadow_manifest.py", "mia.jobs", "mia.shadows", "data.manifest"),
    script:
        "../scripts/shadow_manifest.py"


use rule train_teacher as train_shadow_teacher with:
    input:
        manifest=shadow_manifest_input,
        base=teacher_base_input,
    output:
        dir=directory(shadow_dir("{family}", "{shadow}", "teacher")),
    log:
        f"{R}/logs/train_shadow_teacher/{{family}}/shadow{{shadow}}.log",
    benchmark:
        f"{R}/benchmarks/train_shadow_teacher/{{family}}/shadow{{shadow}}.tsv"
    params:
        cfg=shadow_teacher_cfg,


use rule generate_teacher as generate_shadow_teacher with:
    input:
        manifest=shadow_manifest_input,
        teacher=shadow_dir("{family}", "{shadow}", "teacher"),
    output:
        generations=f"{R}/{{family}}/shadow{{shadow}}/generations/teacher.parquet",
        provenance=f"{R}/{{family}}/shadow{{shadow}}/generations/teacher.parquet.provenance.json",
    log:
        f"{R}/logs/generate_shadow_teacher/{{family}}/shadow{{shadow}}.log",
    benchmark:
        f"{R}/benchmarks/generate_shadow_teacher/{{family}}/shadow{{shadow}}.tsv"
    params:
        cfg=shadow_generation_cfg,


use rule train_student as train_shadow_student with:
    input:
        manifest=shadow_manifest_input,
        base=shadow_student_base_input,
        teacher=shadow_student_teacher_input,
        generations=shadow_generations_input,
    output:
        dir=directory(shadow_dir("{family}", "{shadow}", "{student}")),
    log:
        f"{R}/logs/train_shadow_student/{{family}}/shadow{{shadow}}/{{student}}.log",
    benchmark:
        f"{R}/benchmarks/train_shadow_student/{{family}}/shadow{{shadow}}/{{student}}.tsv"
    params:
        sources=sources(shadow_student_base_input),
        cfg=shadow_student_cfg,


use rule score_model as score_shadow with:
    input:
        manifest=rules.prepare_data.output.manifest,
        model=shadow_dir("{family}", "{shadow}", "{model}"),
    output:
        scores=f"{shadow_scores('{family}', '{shadow}', '{model}')}.parquet",
        population=f"{shadow_scores('{family}', '{shadow}', '{model}')}.population.parquet",
    log:
        f"{R}/logs/score_shadow/{{family}}/shadow{{shadow}}/{{model}}.log",
    benchmark:
        f"{R}/benchmarks/score_shadow/{{family}}/shadow{{shadow}}/{{model}}.tsv"


rule shadow_curve:
    input:
        unpack(shadow_curve_inputs),
    output:
        curve=f"{R}/{{family}}/seed{{seed}}/attacks/{{model}}.shadow_curve.csv",
    log:
        f"{R}/logs/shadow_curve/{{family}}/seed{{seed}}/{{model}}.log",
    localrule: True
    conda:
        ENV
    params:
        cfg={
            **shadow_attack_cfg(),
            "fprs": CFG.attacks.fprs,
            "n_bootstrap": CFG.attacks.n_bootstrap,
            "bootstrap_seed": CFG.attacks.bootstrap_seed,
        },
        code=code("shadow_curve.py", "mia.jobs", "mia.shadows", "mia.metrics"),
    script:
        "../scripts/shadow_curve.py"
