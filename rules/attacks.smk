# Membership inference: one scoring pass per model (members, non-members and an RMIA population), the
# reference models, MoPe, every attack with bootstrap CIs, and the model-free blind baseline.

from kdprivacy.mia.registry import NO_NOKD_REFERENCE, needs as attack_needs
from kdprivacy.mia.registry import nokd_reference as choose_nokd_reference


rule score_model:
    input:
        manifest=rules.prepare_data.output.manifest,
        model=f"{R}/{{family}}/seed{{seed}}/models/{{model}}",
    output:
        scores=f"{R}/{{family}}/seed{{seed}}/scores/{{model}}.parquet",
        population=f"{R}/{{family}}/seed{{seed}}/scores/{{model}}.population.parquet",
    log:
        f"{R}/logs/score_model/{{family}}/seed{{seed}}/{{model}}.log",
    benchmark:
        f"{R}/benchmarks/score_model/{{family}}/seed{{seed}}/{{model}}.tsv"
    conda:
        ENV
    threads: CFG.resources.threads
    resources:
        mem_mb=mem_mb("score_model"),
        runtime=runtime("score_model"),
        gpu=gpus("score_model"),
    params:
        cfg=scoring_cfg,
        code=code("score_model.py", "mia.jobs", "mia.scoring", "config", "models"),
    script:
        "../scripts/score_model.py"


rule score_reference:
    input:
        manifest=rules.prepare_data.output.manifest,
        model=reference_input,
    output:
        scores=f"{R}/{{family}}/references/{{ref}}.parquet",
        population=f"{R}/{{family}}/references/{{ref}}.population.parquet",
    log:
        f"{R}/logs/score_reference/{{family}}/{{ref}}.log",
    benchmark:
        f"{R}/benchmarks/score_reference/{{family}}/{{ref}}.tsv"
    conda:
        ENV
    threads: CFG.resources.threads
    resources:
        mem_mb=mem_mb("score_reference"),
        runtime=runtime("score_reference"),
        gpu=gpus("score_reference"),
    params:
        sources=sources(reference_input),
        cfg=reference_scoring_cfg,
        code=code("score_model.py", "mia.jobs", "mia.scoring", "config", "models"),
    script:
        "../scripts/score_model.py"


rule mope:
    input:
        manifest=rules.prepare_data.output.manifest,
        model=f"{R}/{{family}}/seed{{seed}}/models/{{model}}",
    output:
        mope=f"{R}/{{family}}/seed{{seed}}/mope/{{model}}.parquet",
    log:
        f"{R}/logs/mope/{{family}}/seed{{seed}}/{{model}}.log",
    benchmark:
        f"{R}/benchmarks/mope/{{family}}/seed{{seed}}/{{model}}.tsv"
    conda:
        ENV
    threads: CFG.resources.threads
    resources:
        mem_mb=mem_mb("mope"),
        runtime=runtime("mope"),
        gpu=gpus("mope"),
    params:
        cfg=mope_cfg,
        code=code("mope.py", "mia.jobs", "mia.perturb", "mia.scoring", "models"),
    script:
        "../scripts/mope.py"


rule attack_metrics:
    input:
        unpack(attack_inputs),
    output:
        per_example=f"{R}/{{family}}/seed{{seed}}/attacks/{{model}}.parquet",
        metrics=f"{R}/{{family}}/seed{{seed}}/attacks/{{model}}.metrics.csv",
        per_category=f"{R}/{{family}}/seed{{seed}}/attacks/{{model}}.category.csv",
        roc=f"{R}/{{family}}/seed{{seed}}/attacks/{{model}}.roc.csv",
    log:
        f"{R}/logs/attack_metrics/{{family}}/seed{{seed}}/{{model}}.log",
    localrule: True
    conda:
        ENV
    params:
        cfg=attack_cfg,
        code=code(
            "attack_metrics.py", "mia.jobs", "mia.attacks", "mia.registry", "mia.metrics", "mia.shadows"
        ),
    script:
        "../scripts/attack_metrics.py"


rule blind_baseline:
    input:
        manifest=rules.prepare_data.output.manifest,
    output:
        scores=f"{R}/blind/scores.parquet",
        metrics=f"{R}/tables/blind_baseline.csv",
        per_category=f"{R}/tables/blind_baseline_category.csv",
    log:
        f"{R}/logs/blind_baseline.log",
    localrule: True
    conda:
        ENV
    params:
        cfg=blind_cfg(),
        code=code("blind_baseline.py", "mia.jobs", "mia.blind", "mia.metrics", "mia.scoring"),
    script:
        "../scripts/blind_baseline.py"
