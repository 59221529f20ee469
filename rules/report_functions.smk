# Input/param builders of rules/report.smk (Snakemake style: functions apart from rules).


def selected(model, which):
    """Whether a model row is among ``which``: None = all, a role ("student"), or a predicate of the row."""
    return which is None or (which(model) if callable(which) else model["role"] == which)


def per_model(pattern, which=None):
    return [pattern.format(R=R, **m) for m in all_models() if selected(m, which)]


def collected_tables():
    return [name for name, (_, role, enabled) in COLLECTED.items() if enabled and per_model("x", role)]


def collect_inputs(wildcards):
    pattern, role, _ = COLLECTED[wildcards.table]
    return per_model(pattern, role)


def collect_models(wildcards):
    return [m for m in all_models() if selected(m, COLLECTED[wildcards.table][1])]


def optional_tables(*names):
    """Tables the report rules read; utility/blocks only when those stages run."""
    enabled = {
        "utility": CFG.utility.enabled,
        "blocks": CFG.blocks.enabled,
        "blocks_spread": CFG.blocks.enabled,
        "blind_baseline": CFG.attacks.blind.enabled,
    }
    return {n: f"{R}/tables/{n}.csv" for n in names if enabled.get(n, True)}


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


def table_output(name):
    """``results/tables/<name>.csv`` shown in the report too: category "Tables", subcategory the table's name
    (``{table}``, a wildcard, for the collected per-model tables)."""
    return report(
        f"{R}/tables/{name}.csv",
        caption=os.path.join(KD_DIR, "report", "table.rst"),
        category="Tables",
        subcategory=name,
    )


def figure(stem, spec):
    return report(
        f"{FIG}/{stem}.png",
        caption=os.path.join(KD_DIR, "report", f"{spec.caption}.rst"),
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


def figure_inputs(wildcards):
    """Every input the declared figures read (FigureSpec.tables)."""
    names = dict.fromkeys(n for spec in plots.enabled_figures(CFG) for n in spec.tables)
    return {
        n: per_model(PER_MODEL_FIGURE_INPUTS[n]) if n in PER_MODEL_FIGURE_INPUTS else f"{R}/tables/{n}.csv"
        for n in names
    }


def figures_cfg():
    return {"attacks": CFG.attacks.names, "student_bases": student_bases(), "sources": ablation_sources()}


def findings_inputs(wildcards):
    return optional_tables(
        "mia", "mia_paired", "memorization", "blind_baseline", "mia_category", "blocks", "blocks_spread"
    )


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
    return {"paper": paper.mapping_from_names(names), "protocol": CFG.protocol}
