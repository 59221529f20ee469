# Tidy tables across all models, the AUC heatmap, the figures (the registry
# kdprivacy.reporting.plots.FIGURES), the findings, the paper comparison and the summary page.
from kdprivacy.kd import METHODS
from kdprivacy.reporting import plots

FIG = f"{R}/figures"


# Per-model tables stacked into results/tables/<name>.csv, with the model's key columns in front.
# name -> (per-model path pattern, which models: None = all, a role ("student") or a predicate, enabled?)
COLLECTED = {
    "memorization_summary": ("{R}/{family}/seed{seed}/memorization/{model}.summary.csv", None, True),
    "inheritance": ("{R}/{family}/seed{seed}/inheritance/{model}.csv", "student", True),
    "membership_vs_memorization": (
        "{R}/{family}/seed{seed}/inheritance/{model}.correlation.csv",
        "student",
        True,
    ),
    "utility": ("{R}/{family}/seed{seed}/utility/{model}.summary.csv", None, CFG.utility.enabled),
    "blocks": ("{R}/{family}/seed{seed}/blocks/{model}.csv", None, CFG.blocks.enabled),
    "blocks_spread": ("{R}/{family}/seed{seed}/blocks/{model}.spread.csv", None, CFG.blocks.enabled),
    # the models with shadow pipelines only (attacks.shadows.models)
    "mia_shadow_curve": (
        "{R}/{family}/seed{seed}/attacks/{model}.shadow_curve.csv",
        has_shadows,
        shadow_attacks_requested() and "lira" in CFG.attacks.names,
    ),
}


# ---------------------------------------------------------------- figures
# Figure inputs that are per-model files rather than tables under results/tables/.
PER_MODEL_FIGURE_INPUTS = {"roc": "{R}/{family}/seed{seed}/attacks/{model}.roc.csv"}


# ---------------------------------------------------------------- findings, paper comparison
rule aggregate:
    input:
        metrics=per_model("{R}/{family}/seed{seed}/attacks/{model}.metrics.csv"),
        per_category=per_model("{R}/{family}/seed{seed}/attacks/{model}.category.csv"),
        per_example=per_model("{R}/{family}/seed{seed}/attacks/{model}.parquet"),
        memorization=per_model("{R}/{family}/seed{seed}/memorization/{model}.parquet"),
    output:
        mia=table_output("mia"),
        mia_pooled=f"{R}/tables/mia_pooled.csv",
        mia_category=f"{R}/tables/mia_category.csv",
        mia_paired=f"{R}/tables/mia_paired.csv",
        mia_paired_pooled=f"{R}/tables/mia_paired_pooled.csv",
        mia_split=f"{R}/tables/mia_split.csv",
        mia_best_attack=table_output("mia_best_attack"),
        memorization=table_output("memorization"),
    log:
        f"{R}/logs/aggregate.log",
    localrule: True
    conda:
        ENV
    params:
        models=all_models(),
        cfg={
            "n_bootstrap": CFG.attacks.n_bootstrap,
            "bootstrap_seed": CFG.attacks.bootstrap_seed,
            "best_attack_split_seed": CFG.attacks.best_attack_split_seed,
        },
        code=code("aggregate.py", "reporting.tables", "reporting.best_attack"),
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
        code=code("heatmap.py", "reporting.plots.mia"),
    script:
        "../scripts/heatmap.py"


rule collect:
    input:
        collect_inputs,
    output:
        table=table_output("{table}"),
    log:
        f"{R}/logs/collect/{{table}}.log",
    wildcard_constraints:
        table=alternatives(COLLECTED),
    localrule: True
    conda:
        ENV
    params:
        models=collect_models,
        code=code("collect.py", "reporting.tables"),
    script:
        "../scripts/collect.py"


rule figures:
    input:
        unpack(figure_inputs),
    output:
        **figure_outputs(),
    log:
        f"{R}/logs/figures.log",
    localrule: True
    conda:
        ENV
    params:
        models=all_models(),
        cfg=figures_cfg(),
        code=code("figures.py", *plots.code_modules()),
    script:
        "../scripts/figures.py"


rule findings:
    input:
        unpack(findings_inputs),
    output:
        findings=table_output("findings"),
    log:
        f"{R}/logs/findings.log",
    localrule: True
    conda:
        ENV
    params:
        cfg=findings_cfg(),
        code=code("findings.py", "reporting.jobs", "reporting.claims"),
    script:
        "../scripts/findings.py"


rule paper_comparison:
    input:
        **optional_tables("mia", "findings", "memorization", "utility"),
    output:
        comparison=f"{R}/tables/paper_comparison.csv",
        claims=f"{R}/tables/paper_claims.csv",
    log:
        f"{R}/logs/paper_comparison.log",
    localrule: True
    conda:
        ENV
    params:
        cfg=paper_cfg(),
        code=code("paper_comparison.py", "reporting.jobs", "reporting.paper"),
    script:
        "../scripts/paper_comparison.py"


rule summary:
    input:
        findings=rules.findings.output.findings,
        claims=rules.paper_comparison.output.claims,
        comparison=rules.paper_comparison.output.comparison,
        mia=f"{R}/tables/mia.csv",
        mia_best_attack=f"{R}/tables/mia_best_attack.csv",
        tables=final_tables(),
        figures=[f for f in final_figures() if not f.endswith("summary.md")],
    output:
        summary=f"{R}/summary.md",
    log:
        f"{R}/logs/summary.log",
    localrule: True
    conda:
        ENV
    params:
        cfg={"config_name": CONFIG_NAME},
        code=code("summary.py", "reporting.jobs", "reporting.summary"),
    script:
        "../scripts/summary.py"
