# Input/param builders of rules/attacks.smk (Snakemake style: functions apart from rules).


def scoring_cfg(wildcards=None):
    ev, att = CFG.evaluation, CFG.attacks
    return {
        "model": None,
        "batch_size": ev.batch_size,
        "max_members": ev.max_members,
        "max_nonmembers": ev.max_nonmembers,
        "sample_seed": ev.sample_seed,
        "population": dump(ev.population),
        "short_tokens": att.short_tokens,
        "precision": ev.precision,
        "score_eos": ev.score_eos,
        **data_lengths(),
    }


def reference_model(family, ref):
    """``pretrained``: the teacher's pretrained base (the paper's Ref-pretrained, for every model of the
    family); ``external``: attacks.external_reference. Returns (how to load it, local inputs)."""
    if ref == "pretrained":
        base = FAMILIES[family].teacher.base
        return base_ref(family, base), base_inputs(family, base)
    ext = CFG.attacks.external_reference
    if ext.family is not None:
        return base_ref(ext.family, ext.base), base_inputs(ext.family, ext.base)
    return ext.ref(), model_inputs(ext.name_or_path)


def reference_input(wildcards):
    return reference_model(wildcards.family, wildcards.ref)[1]


def reference_scoring_cfg(wildcards):
    return {**scoring_cfg(), "model": reference_model(wildcards.family, wildcards.ref)[0]}


def mope_cfg(wildcards):
    ev, mope = CFG.evaluation, CFG.attacks.mope
    return {
        "k": mope.k,
        "sigma": mope.sigma,
        "seed": mope.seed,
        "batch_size": mope.batch_size or ev.batch_size,
        "max_members": ev.max_members,
        "max_nonmembers": ev.max_nonmembers,
        "sample_seed": ev.sample_seed,
        "block": None,
        "precision": ev.precision,
        "score_eos": ev.score_eos,
        **data_lengths(),
    }


def nokd_reference(family, model, seed):
    """The No-KD student ``(name, seed)`` a model is compared with, or None (kdprivacy.mia.attacks.nokd_reference:
    same base when there is one, else the family's first, same seed; for the No-KD student itself the next
    seed's No-KD student, None with one seed -- never the target itself)."""
    students = FAMILIES[family].students
    nokd = [(n, s.base) for n, s in students.items() if s.method == "nokd"]
    base = FAMILIES[family].teacher.base if model == "teacher" else STUDENTS[family][model][0].base
    return choose_nokd_reference(nokd, model, base, int(seed), SEEDS)


def attack_inputs(wildcards):
    """The target's scores plus whatever its attacks read (kdprivacy.mia.attacks.ATTACKS: each attack's
    ``needs``): reference scores and their populations, the target's population, MoPe."""
    family, seed, model = wildcards.family, wildcards.seed, wildcards.model
    scores = f"{R}/{family}/seed{seed}/scores"
    inputs = {
        "scores": f"{scores}/{model}.parquet",
        "manifest": rules.prepare_data.output.manifest,
    }
    needs = attack_needs(CFG.attacks.names)
    for ref in CFG.attacks.reference_names:
        if ref == "nokd":
            chosen = nokd_reference(family, model, seed)
            if chosen is not None:  # None: no independent No-KD reference, ref_nokd is NA (attack_cfg)
                other, other_seed = chosen
                ref_scores = f"{R}/{family}/seed{other_seed}/scores"
                inputs["ref_nokd"] = f"{ref_scores}/{other}.parquet"
                inputs["population_nokd"] = f"{ref_scores}/{other}.population.parquet"
        else:
            inputs[f"ref_{ref}"] = f"{R}/{family}/references/{ref}.parquet"
            inputs[f"population_{ref}"] = f"{R}/{family}/references/{ref}.population.parquet"
    if "population" in needs:
        inputs["population"] = f"{scores}/{model}.population.parquet"
    if "mope" in needs:
        inputs["mope"] = f"{R}/{family}/seed{seed}/mope/{model}.parquet"
    if "shadows" in needs:
        inputs.update(shadow_attack_inputs(family, model, population="rmia_shadow" in CFG.attacks.names))
    return inputs


def attack_cfg(wildcards):
    """The attack settings; ``untestable``: reference -> why this target has none (ref_nokd of the No-KD
    student with one seed), so that its cells are written NA."""
    att = CFG.attacks
    untestable = {}
    if (
        "nokd" in att.reference_names
        and nokd_reference(wildcards.family, wildcards.model, wildcards.seed) is None
    ):
        untestable["nokd"] = NO_NOKD_REFERENCE
    shadows = {}
    if shadow_attacks_requested():  # the key only with shadows on: other configs keep their params
        shadows = {"shadows": shadow_attack_cfg()}
        if not has_shadows(wildcards.model):
            untestable["shadows"] = NO_SHADOWS
    return {
        **shadows,
        "untestable": untestable,
        "names": att.names,
        "min_k": att.min_k,
        "min_k_count": att.min_k_count,
        "fprs": att.fprs,
        "n_bootstrap": att.n_bootstrap,
        "bootstrap_seed": att.bootstrap_seed,
        "short_tokens": att.short_tokens,
        "roc_max_points": att.roc_max_points,
        "rmia": dump(att.rmia),
    }


def blind_cfg():
    ev, att = CFG.evaluation, CFG.attacks
    return {
        **{k: v for k, v in dump(att.blind).items() if k != "enabled"},
        "max_members": ev.max_members,
        "max_nonmembers": ev.max_nonmembers,
        "sample_seed": ev.sample_seed,
        "fprs": att.fprs,
        "n_bootstrap": att.n_bootstrap,
        "bootstrap_seed": att.bootstrap_seed,
    }
