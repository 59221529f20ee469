"""The memorization jobs of the workflow, one function per script, each taking a
:class:`kdprivacy.runtime.Job`: memorization metrics of one model (``memorization``), utility (``utility``)
and teacher -> student inheritance (``inheritance``). Each reads the job's named inputs and ``cfg``, writes
its outputs and provenance and logs into the job's log; the numbers come from
:mod:`kdprivacy.memorization.extraction`, :mod:`~kdprivacy.memorization.utility` and
:mod:`~kdprivacy.memorization.inheritance`. Heavy imports are inside the functions: the job starts
(logging, threads) before torch and the models load, as the scripts always did.
"""

from __future__ import annotations

from typing import Any


def _decoding(cfg: Any) -> dict[str, Any]:
    """The greedy-decoding settings the memorization and utility jobs share (same cfg keys)."""
    from kdprivacy.memorization.utility import stemmer_from_flag

    return dict(
        batch_size=cfg["batch_size"],
        max_length=cfg["max_length"],
        max_prompt_length=cfg["max_prompt_length"],
        max_new_tokens=cfg["max_new_tokens"],
        stemmer=stemmer_from_flag(cfg["rouge_stemmer"]),
    )


def memorization(job: Any) -> None:
    """Greedy decodes of the shared evaluation prompts, every memorization metric per example: output
    ``per_example`` (with provenance), optional ``summary``."""
    import pandas as pd

    from kdprivacy import io
    from kdprivacy.memorization import extraction
    from kdprivacy.mia import scoring
    from kdprivacy.stats import Bootstrap

    cfg, inp, out, log = job.cfg, job.input, job.output, job.log
    manifest = pd.read_parquet(inp.manifest)
    evaluation = scoring.evaluation_set(manifest, cfg["max_members"], cfg["max_nonmembers"], cfg["sample_seed"])
    n_members = int((evaluation.label == 1).sum())
    log.info("evaluation set: %d members, %d non-members", n_members, len(evaluation) - n_members)

    model, tokenizer = scoring.load_for_inference(inp.model)
    table = extraction.memorization_table(
        model, tokenizer, evaluation,
        k=cfg["first_k"],
        rouge_threshold=cfg["rouge_threshold"],
        n_candidates=cfg["n_candidates"],
        candidate_seed=cfg["sample_seed"],
        exposure_in_prompt=cfg["exposure_in_prompt"],
        match_positions=cfg["match_positions"],
        **_decoding(cfg),
    )
    table = evaluation[["id", "label", "category"]].merge(table, on="id", how="left", validate="one_to_one")
    if len(table) != len(evaluation) or table["n_compared"].isna().any():
        raise RuntimeError("memorization lost examples")
    summary = extraction.memorization_summary(table, Bootstrap.from_cfg(cfg))
    log.info("memorization summary:\n%s", summary.to_string(index=False))
    io.write_parquet(table, out.per_example)
    if job.has_output("summary"):
        io.write_csv(summary, out.summary)
    job.write_provenance(f"{out.per_example}.provenance.json",
                         inputs={"manifest": inp.manifest, "model": inp.model})


def utility(job: Any) -> None:
    """ROUGE-L of greedy responses to held-out dev prompts: outputs ``per_example`` (with provenance) and
    ``summary``."""
    import pandas as pd

    from kdprivacy import generation, io
    from kdprivacy.memorization import utility as rouge
    from kdprivacy.mia import scoring
    from kdprivacy.stats import Bootstrap

    cfg, inp, out, log = job.cfg, job.input, job.output, job.log
    manifest = pd.read_parquet(inp.manifest)
    dev = rouge.dev_set(manifest, cfg["max_examples"], cfg["sample_seed"])
    log.info("utility on %d dev examples", len(dev))

    model, tokenizer = scoring.load_for_inference(inp.model)
    sampling = generation.Sampling(bool(cfg["do_sample"]), float(cfg["temperature"]), float(cfg["top_p"]),
                                   int(cfg["top_k"]), int(cfg["seed"]))
    log.info("decoding: %s", sampling if sampling.do_sample else "greedy")
    table = rouge.utility_table(model, tokenizer, dev, **_decoding(cfg), sampling=sampling)
    if len(table) != len(dev):
        raise RuntimeError("utility lost examples")
    summary = rouge.summarize_utility(table, Bootstrap.from_cfg(cfg))
    log.info("utility (ROUGE-L x 100):\n%s", summary.to_string(index=False))
    io.write_parquet(table, out.per_example)
    io.write_csv(summary, out.summary)
    job.write_provenance(f"{out.per_example}.provenance.json",
                         inputs={"manifest": inp.manifest, "model": inp.model})


def inheritance(job: Any) -> None:
    """Teacher -> student inheritance of memorization (output ``inheritance``, with provenance over every
    named input) and membership vs memorization per sample for the student and, given ``teacher_attacks``,
    the teacher (output ``correlation``)."""
    import pandas as pd

    from kdprivacy import io
    from kdprivacy.memorization import inheritance as inherit
    from kdprivacy.stats import Bootstrap

    cfg, inp, out, log = job.cfg, job.input, job.output, job.log
    teacher = pd.read_parquet(inp.teacher)
    student = pd.read_parquet(inp.student)
    table = inherit.inheritance_table(
        teacher, student, thresholds=cfg["thresholds"], bootstrap=Bootstrap.from_cfg(cfg),
        comparison=cfg["comparison"],
    )
    log.info("inheritance:\n%s", table.to_string(index=False))

    pairs = [("student", inp.student_attacks, student)]
    if "teacher_attacks" in job.inputs:
        pairs.append(("teacher", inp.teacher_attacks, teacher))
    frames = []
    for model, attacks_path, per_example in pairs:
        attack_scores = pd.read_parquet(attacks_path, columns=["id", "attack", "score"])
        corr = inherit.membership_memorization_correlation(attack_scores, per_example)
        corr.insert(0, "model", model)
        frames.append(corr)
    correlation = pd.concat(frames, ignore_index=True)
    log.info("membership vs memorization:\n%s", correlation.to_string(index=False))
    io.write_csv(table, out.inheritance)
    io.write_csv(correlation, out.correlation)
    job.write_provenance(f"{out.inheritance}.provenance.json")
