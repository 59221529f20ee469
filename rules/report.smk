# Tidy tables across all models, the AUC heatmap, and the report.


def per_model(pattern):
    return [pattern.format(R=R, **m) for m in all_models()]


rule aggregate:
    input:
        metrics=per_model("{R}/{family}/seed{seed}/attacks/{model}.metrics.csv"),
        memorization=per_model("{R}/{family}/seed{seed}/memorization/{model}.parquet"),
    output:
        mia=f"{R}/tables/mia.csv",
        memorization=f"{R}/tables/memorization.csv",
    log:
        f"{R}/logs/aggregate.log",
    params:
        models=all_models(),
        code=code("aggregate.py", "metrics", "memorization"),
    localrule: True
    conda:
        ENV
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
    params:
        cfg={"attacks": CFG.attacks.names},
        code=code("heatmap.py", "plots"),
    localrule: True
    conda:
        ENV
    script:
        "../scripts/heatmap.py"
