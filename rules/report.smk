# Tidy tables across all models, the AUC heatmap, the figures (the registry
# kdprivacy.reporting.plots.FIGURES), the findings, the paper comparison and the summary page.
from kdprivacy.kd import METHODS
from kdprivacy.reporting import plots

FIG = f"{R}/figures"


def per_model(pattern, role=None):
    return [pattern.format(R=R, **m) for m in all_models() if role is None or m["role"] == role]


# Per-model tables stacked into results/tables/<name>.csv, with the model's key columns in front.
# name -> (per-model path pattern, which models: None = all, "student" = students only, enabled?)
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
}


def collected_tables():
    return [name for name, (_, role, enabled) in COLLECTED.items() if enabled and per_model("x", role)]


def collect_inputs(wildcards):
    pattern, role, _ = COLLECTED[wildcards.table]
    return per_model(pattern, role)


def collect_models(wildcards):
    return [m for m in all_models() if COLLECTED[wildcards.table][1] in (None, m["role"])]


def optional_tables(*names):
    """Tables the report rules read; utility/blocks only when those stages run."""
    enabled = {
        "utility": CFG.utility.enabled,
        "blocks": CFG.blocks.enabled,
        "blind_baseline": CFG.attacks.blind.enabled,
    }
    return {n: f"{R}/tables/{n}.csv" for n in names if enabled.get(n, True)}


# ---------------------------------------------------------------- figures
def student_base_pairs():
    return sorted(
        {(family, s.base) for family, students in STUDENTS.items() for s, _, _ in students.values()}
    )


def student_bases():
    return [f"{family}/{base}" for family, base in student_base_pairs()]


def ablation_sources():
    """The student each ablation copies, and that student's own axis value (the figures' reference)."""
    out = {}
    for family, fam in FAMILIES.items():
        abl, entry = fam.ablations, {}
        if abl.objective is not None:
            src = fam.students[abl.objective.student]
            entry["objective"] = {"student": abl.objective.student, "objective": src.kd.objective}
        if abl.sgo_ratio is not None:
            src = fam.students[abl.sgo_ratio.student]
            value = getattr(getattr(src, src.method), METHODS[src.method].sgo_param)
            entry["sgo_ratio"] = {"student": abl.sgo_ratio.student, "value": value}
        if entry:
            out[family] = entry
    return out


def figure(stem, spec):
    return report(
        f"{FIG}/{stem}.png",
        caption=os.path.join(workflow.basedir, "report", f"{spec.caption}.rst"),
        category=spec.category,
    )


def figure_outputs():
    """Only the figures this config can fill are declared (and shown in the report); a per-base figure has
    one file per student base."""
    outs = {}
    for spec in plots.enabled_figures(CFG):
        if spec.per_base:
            outs[spec.name] = [
                figure(spec.file.format(family=family, base=base), spec)
                for family, base in student_base_pairs()
            ]
        else:
            outs[spec.name] = figure(spec.file, spec)
    return outs


# Figure inputs that are per-model files rather than tables under results/tables/.
PER_MODEL_FIGURE_INPUTS = {"roc": "{R}/{family}/seed{seed}/attacks/{model}.roc.csv"}


def figure_inputs(wildcards):
    """Every input the declared figures read (FigureSpec.tables)."""
    names = dict.fromkeys(n for spec in plots.enabled_figures(CFG) for n in spec.tables)
    return {
        n: per_model(PER_MODEL_FIGURE_INPUTS[n]) if n in PER_MODEL_FIGURE_INPUTS else f"{R}/tables/{n}.csv"
        for n in names
    }


def figures_cfg():
    return {"attacks": CFG.attacks.names, "student_bases": student_bases(), "sources": ablation_sources()}


# ---------------------------------------------------------------- findings, paper comparison
def findings_inputs(wildcards):
    return optional_tables("mia", "mia_paired", "memorization", "blind_baseline", "mia_category", "blocks")


def findings_cfg():
    sizes = {family: {base: fam.n_params(base) for base in fam.bases} for family, fam in FAMILIES.items()}
    return {"attacks": CFG.attacks.names, "sources": ablation_sources(), "base_sizes": sizes}


def paper_cfg():
    """Map our runs to the paper's cells by hub model name; from-scratch families map to nothing."""
    from kdprivacy.reporting import paper

    names = {
        family: {base: spec.name_or_path for base, spec in fam.bases.items() if spec.name_or_path}
        for family, fam in FAMILIES.items()
    }
    return {"paper": paper.mapping_from_names(names)}


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
        code=code("aggregate.py", "reporting.tables"),
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
    wildcard_constraints:
        table=alternatives(COLLECTED),
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
        findings=f"{R}/tables/findings.csv",
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
