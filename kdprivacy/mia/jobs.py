"""The membership-inference jobs of the workflow, one function per script, each taking a
:class:`kdprivacy.runtime.Job`: score a model (``score_model``), MoPe (``mope``), every per-block
signal (``per_block``), the attacks and their metrics (``attack_metrics``) and the blind baseline
(``blind_baseline``), the shadow pipelines' data (``shadow_assignment``, ``shadow_manifest``) and the
shadow-count curve (``shadow_curve``). Each reads the job's named inputs and ``cfg``, writes its outputs and provenance and
logs into the job's log; the numbers come from :mod:`kdprivacy.mia.scoring`, :mod:`~kdprivacy.mia.perturb`,
:mod:`~kdprivacy.mia.blocks`, :mod:`~kdprivacy.mia.attacks`, :mod:`~kdprivacy.mia.metrics` and
:mod:`~kdprivacy.mia.blind`. Heavy imports are inside the functions: the job starts (logging, threads)
before torch and the models load, as the scripts always did.
"""

from __future__ import annotations

from typing import Any


def _evaluation(job: Any, log_counts: bool = True):
    """The manifest and the shared evaluation set (``max_members``, ``max_nonmembers``, ``sample_seed``)."""
    import pandas as pd

    from kdprivacy.mia import scoring

    cfg = job.cfg
    manifest = pd.read_parquet(job.inputs["manifest"])
    evaluation = scoring.evaluation_set(manifest, cfg["max_members"], cfg["max_nonmembers"], cfg["sample_seed"])
    if log_counts:
        n_members = int((evaluation.label == 1).sum())
        job.log.info("evaluation set: %d members, %d non-members", n_members, len(evaluation) - n_members)
    return manifest, evaluation


def _scored_items(cfg: Any, tokenizer, frame):
    """The encoded examples a scoring pass scores: with ``score_eos`` false (``evaluation.score_eos``; absent =
    true) each response's final EOS is not a scored token."""
    from kdprivacy import encoding

    items = encoding.encode_frame(tokenizer, frame, cfg["max_length"], cfg["max_prompt_length"])
    return items if cfg.get("score_eos", True) else encoding.without_eos(items, tokenizer.eos_token_id)


def score_model(job: Any) -> None:
    """Outputs ``scores`` (members + non-members) and optional ``population`` (the RMIA population sample of
    ``cfg["population"]``), each with its provenance; the model is ``cfg["model"]`` (a hub/base ref) when
    given, else the ``model`` input."""
    from kdprivacy import io, models
    from kdprivacy.mia import scoring

    cfg, inp, out, log = job.cfg, job.inputs, job.outputs, job.log
    short_tokens = cfg["short_tokens"]
    manifest, evaluation = _evaluation(job)
    if cfg["model"] is not None:
        model, tokenizer = models.load_base(cfg["model"])
        source = cfg["model"]["name_or_path"]
        model.to(scoring.inference_device())
    else:
        model, tokenizer = scoring.load_for_inference(inp["model"])
        source = inp["model"]
    log.info("model %s (%s, vocabulary %d)", source, type(model).__name__, len(tokenizer))

    scoring_pass = scoring.ScoringPass(cfg["batch_size"], tokenizer.pad_token_id, precision=cfg["precision"])

    def score(frame, keep: list[str], what: str):
        items = _scored_items(cfg, tokenizer, frame)
        scores = scoring.score_examples(model, items, scoring_pass)
        table = frame[keep].merge(scores, on="id", how="left", validate="one_to_one")
        if len(table) != len(frame) or table["n_tokens"].isna().any():
            raise RuntimeError(f"scoring lost {what} examples")
        counts = scoring.short_counts(table["n_tokens"], short_tokens)
        log.info(
            "%s: scored %d examples, %d response tokens; %d with no scored token, %d short (< %d tokens)",
            what, counts["n_examples"], int(table.n_tokens.sum()), counts["n_empty"], counts["n_short"],
            short_tokens,
        )
        if counts["n_empty"]:
            log.warning("%s: %d example(s) have no scored token: every attack on them is NaN and the metrics "
                        "will refuse them", what, counts["n_empty"])
        return table

    io.write_parquet(score(evaluation, ["id", "label", "category"], "evaluation set"), out["scores"])
    inputs = {k: v for k, v in inp.items() if k in ("manifest", "model")}
    job.write_provenance(f"{out['scores']}.provenance.json", inputs=inputs)
    if "population" in out:
        population = _population(cfg, manifest)
        io.write_parquet(score(population, ["id", "pool", "category"], "population"), out["population"])
        job.write_provenance(f"{out['population']}.provenance.json", inputs=inputs)


def _population(cfg, manifest):
    """The population examples (``cfg["population"]``: pools, size, seed) of the manifest, as RMIA scores them."""
    from kdprivacy import config
    from kdprivacy.mia import scoring

    pop = config.Population.model_validate(cfg["population"])
    return scoring.population_set(manifest, pop.pools, pop.max_examples, pop.seed)


def mope(job: Any) -> None:
    """Output ``mope`` (``id, label, category, n_tokens, nll, mope``): K seeded weight perturbations, on
    decoder block ``cfg["block"]`` only when it is not null."""
    from kdprivacy import io
    from kdprivacy.mia import perturb, scoring

    cfg, log = job.cfg, job.log
    _, evaluation = _evaluation(job, log_counts=False)
    model, tokenizer = scoring.load_for_inference(job.input.model)
    block = cfg["block"]
    params = None if block is None else perturb.block_params(model, int(block))
    if params is not None:
        log.info("perturbing block %s only (%d tensors)", perturb.find_blocks(model)[int(block)][0], len(params))
    items = _scored_items(cfg, tokenizer, evaluation)
    log.info("MoPe: %d examples, K=%d, sigma=%g, seed=%d", len(items), cfg["k"], cfg["sigma"], cfg["seed"])
    table = perturb.mope_scores(
        model, items, k=int(cfg["k"]), sigma=float(cfg["sigma"]), seed=int(cfg["seed"]),
        batch_size=int(cfg["batch_size"]), pad_id=tokenizer.pad_token_id, params=params,
        precision=cfg["precision"],
    )
    table = evaluation[["id", "label", "category"]].merge(table, on="id", how="left", validate="one_to_one")
    if len(table) != len(evaluation) or table["mope"].isna().any():
        raise RuntimeError("MoPe lost examples or produced NaN scores (examples without scored tokens?)")
    io.write_parquet(table, job.output.mope)
    job.write_provenance(f"{job.output.mope}.provenance.json",
                         inputs={"manifest": job.input.manifest, "model": job.input.model})


def per_block(job: Any) -> None:
    """Outputs ``per_block`` (one AUC per signal, block and sigma), ``spread`` (the simultaneous test that
    blocks differ, per signal: :func:`kdprivacy.mia.blocks.block_spread`) and ``per_example``: the signals of
    ``cfg["signals"]`` (:data:`kdprivacy.mia.registry.BLOCK_SIGNALS`) -- the hidden-state ones from one pass,
    MoPe from its perturbed passes -- on the shared evaluation set."""
    import pandas as pd

    from kdprivacy import io
    from kdprivacy.mia import blocks, scoring
    from kdprivacy.mia.registry import BLOCK_SIGNALS
    from kdprivacy.stats import Bootstrap

    cfg, log = job.cfg, job.log
    manifest, evaluation = _evaluation(job)
    model, tokenizer = scoring.load_for_inference(job.input.model)
    items = _scored_items(cfg, tokenizer, evaluation)
    labels = evaluation["label"].to_numpy()
    bootstrap = Bootstrap.from_cfg(cfg)
    signals = list(cfg["signals"])
    tables = []
    hidden = [s for s in signals if BLOCK_SIGNALS[s].hidden_states]
    if hidden:
        population = ()
        if "probe" in hidden and cfg["probe"]["population_negatives"]:
            population = _scored_items(cfg, tokenizer, _population(cfg, manifest))
        tables.append(blocks.hidden_state_signals(
            model, items, labels, hidden, batch_size=cfg["batch_size"], pad_id=tokenizer.pad_token_id,
            bootstrap=bootstrap, probe=cfg["probe"], min_k=cfg["min_k"], min_k_count=cfg["min_k_count"],
            population=population, precision=cfg["precision"],
        ))
    if "mope" in signals:
        tables.append(blocks.block_mope(
            model, items, labels, k=cfg["k"], sigmas=cfg["sigmas"], seed=cfg["seed"],
            batch_size=cfg["batch_size"], pad_id=tokenizer.pad_token_id, bootstrap=bootstrap,
            precision=cfg["precision"],
        ))
    order = {name: i for i, name in enumerate(signals)}

    def in_signal_order(frame):
        return frame.sort_values("signal", key=lambda c: c.map(order), kind="stable", ignore_index=True)

    per_block = in_signal_order(pd.concat([t[0] for t in tables], ignore_index=True))
    per_example = in_signal_order(pd.concat([t[1] for t in tables], ignore_index=True))
    log.info("per-block signals:\n%s", per_block.drop(columns=["access", "block_name"]).to_string(index=False))
    io.write_csv(per_block, job.output.per_block)
    spread = blocks.block_spread(per_example, bootstrap)
    log.info("do blocks differ (simultaneous over all block pairs):\n%s", spread.to_string(index=False))
    io.write_csv(spread, job.output.spread)
    io.write_parquet(per_example, job.output.per_example)
    job.write_provenance(f"{job.output.per_block}.provenance.json",
                         inputs={"manifest": job.input.manifest, "model": job.input.model})


def attack_metrics(job: Any) -> None:
    """Every attack of ``cfg["names"]`` on one model's ``scores`` (with the ``ref_*``, ``population*`` and
    ``mope`` inputs given), then AUC / TPR@FPR with bootstrap CIs: outputs ``per_example``, ``metrics``,
    optional ``per_category`` and ``roc``. ``cfg["untestable"]`` (reference -> reason, e.g. no independent
    No-KD reference for the No-KD student itself): its ``ref_<name>`` attack, and RMIA when no other
    reference remains, are not run: their ``metrics``/``per_category`` rows have NaN metrics and the reason in
    ``note`` (empty for tested rows); they have no ``per_example``/``roc`` rows."""
    import pandas as pd

    from kdprivacy import io
    from kdprivacy.mia import attacks, metrics
    from kdprivacy.stats import Bootstrap

    cfg, inp, out, log = job.cfg, job.inputs, job.outputs, job.log
    names, fprs = cfg["names"], cfg["fprs"]
    bootstrap, short_tokens = Bootstrap.from_cfg(cfg), cfg["short_tokens"]

    scores = pd.read_parquet(inp["scores"])
    manifest = pd.read_parquet(inp["manifest"], columns=["id", "response"])
    texts = dict(zip(manifest["id"], manifest["response"]))
    references = {k[len("ref_"):]: pd.read_parquet(v) for k, v in inp.items() if k.startswith("ref_")}
    populations = {
        k[len("population_"):]: pd.read_parquet(v) for k, v in inp.items() if k.startswith("population_")
    }
    population = pd.read_parquet(inp["population"]) if "population" in inp else None
    mope_table = pd.read_parquet(inp["mope"]) if "mope" in inp else None
    shadow_tables = _shadow_tables(inp, cfg)
    unused = sorted(set(references) - {n[len("ref_"):] for n in names if n.startswith("ref_")})
    if unused and "rmia" not in names:
        log.warning("reference table(s) %s given but no attack uses them", unused)
    if mope_table is not None and "mope" not in names:
        log.warning("a MoPe table is given but 'mope' is not among the attacks %s", names)
    log.info("attacks %s; references %s; population %s", names, sorted(references),
             "none" if population is None else f"{len(population)} examples")
    untestable = dict(cfg.get("untestable") or {})
    rmia_cfg = dict(cfg["rmia"])
    na, rmia_cfg["references"] = attacks.untestable_attacks(
        names, untestable, rmia_cfg.get("references"), list(references)
    )
    for name, why in na.items():
        log.warning("attack %s: %s -- written NA", name, why)
    run = [n for n in names if n not in na]

    long = attacks.compute_attacks(
        scores, texts, run, min_k=cfg["min_k"], min_k_count=cfg["min_k_count"], references=references,
        population=population,
        reference_populations=populations, mope=mope_table, rmia=rmia_cfg, short_tokens=short_tokens,
        shadows=shadow_tables,
    )
    per_example = long.merge(scores[["id", "label", "category", "n_tokens"]], on="id", how="left",
                             validate="many_to_one")
    per_example = per_example[["id", "label", "category", "n_tokens", "attack", "score", "short"]]
    n_short = int(per_example.loc[per_example.attack == run[0], "short"].sum()) if run else 0
    log.info("%d of %d examples are short (< %d scored tokens under a model the attack reads) -- kept, counted",
             n_short, len(scores), short_tokens)
    labels = scores["label"].to_numpy()
    counts = {"n_members": int((labels == 1).sum()), "n_nonmembers": int((labels == 0).sum())}
    summary = _with_na(
        metrics.summarize_attacks(per_example, fprs=fprs, bootstrap=bootstrap),
        names, na, lambda name: [{"attack": name, **counts}],
    )
    log.info("attack metrics:\n%s", summary.to_string(index=False))
    io.write_parquet(per_example, out["per_example"])
    io.write_csv(summary, out["metrics"])

    if "per_category" in out:
        categories = scores.groupby("category", sort=True)["label"]
        by_category = _with_na(
            metrics.summarize_by_category(per_example, fprs=fprs, bootstrap=bootstrap),
            names, na,
            lambda name: [{"attack": name, "category": c, "n_members": int((g == 1).sum()),
                           "n_nonmembers": int((g == 0).sum())} for c, g in categories],
        )
        io.write_csv(by_category, out["per_category"])
    if "roc" in out:
        max_points = cfg["roc_max_points"]
        curves = []
        for name in run:
            part = per_example[per_example.attack == name]
            curves.append(metrics.roc_points(part["score"], part["label"], max_points).assign(attack=name))
        roc = pd.concat(curves, ignore_index=True)[["attack", "fpr", "tpr", "threshold"]]
        io.write_csv(roc, out["roc"], float_format="%.8g")


# The target's members and non-members: kdprivacy.mia.scoring's MEMBER_POOL and NONMEMBER_POOL, written here
# so that the shadow-data jobs (whose code version decides whether every shadow retrains) need not import the
# scorer and torch; tests/test_shadows.py checks they agree.
SHADOW_CANDIDATE_POOLS = ("private", "nonmember")


def _shadow_tables(inp, cfg):
    """The :class:`~kdprivacy.mia.shadows.ShadowTables` of the inputs ``shadow_assignment``, ``shadow_<j>``
    and ``shadow_population_<j>`` (j = 0..N-1), or None without an assignment."""
    if "shadow_assignment" not in inp:
        return None
    import pandas as pd

    from kdprivacy.mia.shadows import ShadowTables

    assignment = pd.read_parquet(inp["shadow_assignment"])
    n = int(assignment["shadow"].max()) + 1
    missing = [j for j in range(n) if f"shadow_{j}" not in inp]
    if missing:
        raise ValueError(f"the assignment has {n} shadows; score tables of shadow(s) {missing} are not inputs")
    populations = [pd.read_parquet(inp[f"shadow_population_{j}"]) for j in range(n)
                   if f"shadow_population_{j}" in inp]
    return ShadowTables(assignment, [pd.read_parquet(inp[f"shadow_{j}"]) for j in range(n)], populations,
                        variance=cfg.get("shadows", {}).get("variance", "auto"))


def _candidates(job: Any):
    """The target's manifest, the candidate mask (pools ``SHADOW_CANDIDATE_POOLS``) and the candidate ids."""
    import pandas as pd

    manifest = pd.read_parquet(job.inputs["manifest"])
    candidate = manifest["pool"].isin(SHADOW_CANDIDATE_POOLS).to_numpy()
    return manifest, candidate, manifest.loc[candidate, "id"].tolist()


def shadow_assignment(job: Any) -> None:
    """``attacks.shadows``: the IN/OUT assignment of the candidates over ``cfg["n"]`` shadows (output
    ``assignment``: ``example_id, shadow, in``), checked for balance."""
    from kdprivacy import io
    from kdprivacy.mia import shadows

    cfg = job.cfg
    _, _, ids = _candidates(job)
    keep = shadows.assign(len(ids), int(cfg["n"]), int(cfg["seed"]))
    shadows.check_balance(keep)
    io.write_parquet(shadows.assignment_table(ids, keep), job.outputs["assignment"])
    job.log.info("%d candidates (%s) over %d shadows: every shadow holds %s of them, every candidate is IN %s "
                 "times", len(ids), "+".join(SHADOW_CANDIDATE_POOLS), keep.shape[1],
                 sorted(set(keep.sum(axis=0).tolist())), sorted(set(keep.sum(axis=1).tolist())))
    job.write_provenance(f"{job.outputs['assignment']}.provenance.json", inputs={"manifest": job.inputs["manifest"]})


def shadow_manifest(job: Any) -> None:
    """Shadow ``cfg["shadow"]``'s manifest (output ``manifest``): the target's with the candidates relabelled,
    IN -> private (what the shadow teacher trains on), OUT -> nonmember, every other pool as it is. IN is
    :func:`kdprivacy.mia.shadows.shadow_half`, the same column the assignment table holds."""
    import numpy as np
    import pandas as pd

    from kdprivacy import io
    from kdprivacy.data.manifest import check_disjoint
    from kdprivacy.mia import shadows

    cfg = job.cfg
    manifest, candidate, ids = _candidates(job)
    half = shadows.shadow_half(len(ids), int(cfg["shadow"]), int(cfg["seed"]))
    pool = manifest["pool"].to_numpy(dtype=object).copy()
    pool[candidate] = np.where(half, *SHADOW_CANDIDATE_POOLS)
    relabelled = manifest.assign(pool=pd.Series(pool, index=manifest.index, dtype=str))
    check_disjoint(relabelled)
    io.write_parquet(relabelled, job.outputs["manifest"])
    job.log.info("shadow %s: %d of %d candidates IN (private), %d OUT (nonmember)", cfg["shadow"], int(half.sum()),
                 len(ids), int((~half).sum()))
    job.write_provenance(f"{job.outputs['manifest']}.provenance.json", inputs={"manifest": job.inputs["manifest"]})


def shadow_curve(job: Any) -> None:
    """Online LiRA with the first 4, 6, ... shadows (output ``curve``: one metric row per shadow count; LiRA's
    deviation needs two IN and two OUT shadows per candidate, ``LIRA_MIN_SHADOWS``)."""
    import pandas as pd

    from kdprivacy import io
    from kdprivacy.config.evaluation import LIRA_MIN_SHADOWS
    from kdprivacy.mia import shadows
    from kdprivacy.stats import Bootstrap

    cfg, inp = job.cfg, job.inputs
    tables = _shadow_tables(inp, cfg)
    if tables is None:
        raise ValueError("shadow_curve needs the input shadow_assignment")
    n = len(tables.scores)
    counts = sorted({*range(LIRA_MIN_SHADOWS, n + 1, 2), n})
    curve = shadows.shadow_count_curve(pd.read_parquet(inp["scores"]), tables, counts, cfg["fprs"],
                                       Bootstrap.from_cfg(cfg))
    job.log.info("LiRA (online) by shadow count:\n%s", curve.to_string(index=False))
    io.write_csv(curve, job.outputs["curve"])


def _with_na(table, names, na, rows_of):
    """``table`` (rows of the attacks run) plus NaN-metric rows for the untestable attacks ``na`` (attack ->
    reason), in the order of ``names``, and a ``note`` column: the reason, empty for tested rows."""
    import pandas as pd

    table = table.assign(note="")
    extra = pd.DataFrame([{**row, "note": na[name]} for name in na for row in rows_of(name)],
                         columns=table.columns)
    out = pd.concat([table, extra], ignore_index=True) if len(extra) else table
    order = {name: i for i, name in enumerate(names)}
    return out.sort_values("attack", key=lambda s: s.map(order), kind="stable").reset_index(drop=True)


def blind_baseline(job: Any) -> None:
    """A bag-of-words classifier that never queries a model, scored out-of-fold: outputs ``scores``,
    ``metrics`` (with per-fold AUCs) and its provenance, optional ``per_category``."""
    from kdprivacy import io
    from kdprivacy.mia import blind, metrics
    from kdprivacy.stats import Bootstrap

    cfg, out = job.cfg, job.outputs
    fprs, bootstrap = cfg["fprs"], Bootstrap.from_cfg(cfg)
    _, evaluation = _evaluation(job, log_counts=False)
    scores = blind.blind_scores(
        evaluation, folds=cfg["folds"], seed=cfg["seed"], features=cfg["features"], ngram_max=cfg["ngram_max"],
        c=cfg["C"],
    )
    per_example = scores.merge(evaluation[["id", "category"]], on="id", how="left", validate="one_to_one")
    per_example = per_example.assign(attack="blind")[["id", "label", "category", "fold", "attack", "score"]]
    summary = metrics.summarize_attacks(per_example, fprs=fprs, bootstrap=bootstrap)
    folds = blind.fold_aucs(scores)
    summary["fold_auc_mean"] = folds.mean()
    summary["fold_auc_min"] = folds.min()
    summary["fold_auc_max"] = folds.max()
    job.log.info("blind baseline (never queries a model):\n%s\nper-fold AUC: %s", summary.to_string(index=False),
                 ", ".join(f"{a:.3f}" for a in folds))
    io.write_parquet(per_example, out["scores"])
    io.write_csv(summary, out["metrics"])
    if "per_category" in out:
        io.write_csv(metrics.summarize_by_category(per_example, fprs=fprs, bootstrap=bootstrap),
                     out["per_category"])
    job.write_provenance(f"{out['metrics']}.provenance.json", inputs={"manifest": job.inputs["manifest"]})
