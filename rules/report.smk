# Tidy tables across all models, the AUC heatmap, and the report.


rule aggregate:
    input:
        metrics=per_model("{R}/{family}/seed{seed}/attacks/{model}.metrics.csv"),
        per_category=per_model("{R}/{family}/seed{seed}/attacks/{model}.category.csv"),
        per_example=per_model("{R}/{family}/seed{seed}/attacks/{model}.parquet"),
        memorization=per_model("{R}/{family}/seed{seed}/memorization/{model}.parquet"),
    output:
        mia=f"{R}/tables/mia.csv",
        mia_pooled=f"{R}/tables/mia_pooled.csv",
        mia_category=f"{R}/tables/mia_category.csv",
        mia_paired=f"{R}/tables/mia_paired.csv",
        mia_paired_pooled=f"{R}/tables/mia_paired_pooled.csv",
        memorization=f"{R}/tables/memorization.csv",
    log:
        f"{R}/logs/aggregate.log",
    localrule: True
    conda:
        ENV
    params:
        models=all_models(),
        cfg={"n_bootstrap": CFG.attacks.n_bootstrap, "bootstrap_seed": CFG.attacks.bootstrap_seed},
        code=code("aggregate.py", "metrics", "memorization"),
    script:
        "../scripts/aggregate.py"


rule heatmap:
    input:
        mia=rules.aggregate.output.mia,
    output:
        figure=report(
            f"{R}/figures/mia_auc_heatmap.png",
            caption="../report/mia_auc_heatmap.rst",
            category="Membership inference",
        ),
        table=f"{R}/tables/mia_auc_heatmap.csv",
    log:
        f"{R}/logs/heatmap.log",
    localrule: True
    conda:
        ENV
    params:
        cfg={"attacks": CFG.attacks.names},
        code=code("heatmap.py", "plots"),
    script:
        "../scripts/heatmap.py"


rule collect:
    input:
        collect_inputs,
    output:
        table=f"{R}/tables/{{table}}.csv",
    log:
        f"{R}/logs/collect/{{table}}.log",
    localrule: True
    conda:
        ENV
    params:
        models=collect_models,
        code=code("collect.py", "io"),
    script:
        "../scripts/collect.py"
