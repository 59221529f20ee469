# Input/param builders of rules/memorization.smk (Snakemake style: functions apart from rules).


def memorization_cfg(wildcards):
    mem, ev = CFG.memorization, CFG.evaluation
    return {
        **{
            k: v
            for k, v in dump(mem).items()
            if k not in ("inheritance_thresholds", "inheritance_comparison")
        },
        "sample_seed": ev.sample_seed,
        "bootstrap_seed": CFG.attacks.bootstrap_seed,
        **data_lengths(),
    }


def inheritance_inputs(wildcards):
    run = f"{R}/{wildcards.family}/seed{wildcards.seed}"
    return {
        "teacher": f"{run}/memorization/teacher.parquet",
        "student": f"{run}/memorization/{wildcards.student}.parquet",
        "student_attacks": f"{run}/attacks/{wildcards.student}.parquet",
        "teacher_attacks": f"{run}/attacks/teacher.parquet",
    }


def inheritance_cfg():
    return {
        "thresholds": CFG.memorization.inheritance_thresholds,
        "comparison": CFG.memorization.inheritance_comparison,
        "n_bootstrap": CFG.memorization.n_bootstrap,
        "bootstrap_seed": CFG.attacks.bootstrap_seed,
    }


def utility_cfg(wildcards):
    return {
        **{k: v for k, v in dump(CFG.utility).items() if k != "enabled"},
        "sample_seed": CFG.evaluation.sample_seed,
        "n_bootstrap": CFG.memorization.n_bootstrap,
        "bootstrap_seed": CFG.attacks.bootstrap_seed,
        **data_lengths(),
    }


def blocks_cfg(wildcards):
    blk = CFG.blocks
    return {
        **{k: v for k, v in dump(blk).items() if k != "enabled"},
        "batch_size": blk.batch_size or CFG.evaluation.batch_size,
        "min_k": CFG.attacks.min_k,
        "min_k_count": CFG.attacks.min_k_count,
        # the probe's extra negatives only: a population change reruns nothing else here
        "population": dump(CFG.evaluation.population) if blk.probe.population_negatives else None,
        "sample_seed": CFG.evaluation.sample_seed,
        "bootstrap_seed": CFG.attacks.bootstrap_seed,
        "precision": CFG.evaluation.precision,
        "score_eos": CFG.evaluation.score_eos,
        **data_lengths(),
    }
