"""Findings computed from the tidy tables: each of the study's claims, tested on this run's numbers.

:func:`compute_findings` returns one tidy table with columns :data:`~kdprivacy.reporting.verdicts.COLUMNS`:

``claim``       the claim's id (:data:`CLAIMS` says what each one means)
``level``       ``cell`` (one model / attack / ...) or ``summary`` (one per family: the share of testable
                cells where the claim holds)
``scope``       what the row is about, ``family/model/attack``-style (``gpt2/kd-small/loss``)
``statistic``   what ``value`` is (e.g. ``auc(model) - auc(nokd)``)
``value``, ``ci_low``, ``ci_high``   the number and its 95% interval (NaN where there is none)
``n``           what the number rests on (seeds, examples, methods, cells: said in ``detail``)
``supported``   True / False when this run can test the claim, None when it cannot (missing models,
                too few points, no interval)
``detail``      the numbers in words and whether the interval supports the claim

Rules used throughout (stated once):

- Only rows of the tables are used; nothing is filled in. Ablation copies (``ablation`` set) enter only
  the ablation claims.
- **Seeds**: a model's value is the mean over its training seeds; its interval is the per-seed 95%
  bootstrap interval for one seed and, for several seeds, the envelope ``[min ci_low, max ci_high]`` of the
  per-seed intervals (conservative: it covers the example resampling of every seed and the seed spread).
- A claim about a difference is **supported** when its interval excludes 0 on the claimed side; an interval
  that contains 0 (or points the other way) gives ``False`` with the reason in ``detail``.
- Paired differences come from ``mia_paired.csv`` (same examples, joint bootstrap). Where a comparison has
  no paired row (e.g. student sizes, objective copies vs. their source), the interval is the normal
  approximation ``d +- 1.96 sqrt(se_a^2 + se_b^2)`` with ``se = (ci_high - ci_low) / 3.92`` of each model:
  marked *approximate, unpaired* in ``detail`` (conservative when both models are scored on the same
  examples, as they are here).
- A summary row is supported when the claim holds in more than half of its family's testable cells.

The claims themselves live by concept in :mod:`~kdprivacy.reporting.claims_mia`,
:mod:`~kdprivacy.reporting.claims_ablations` and :mod:`~kdprivacy.reporting.claims_memorization`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from kdprivacy.reporting.claims_ablations import larger_students, more_sgo, reverse_kl
from kdprivacy.reporting.claims_memorization import memorization_claims
from kdprivacy.reporting.claims_mia import (
    block_variation,
    category_order,
    kd_vs_nokd,
    method_extremes,
    near_chance,
    reference_strongest,
    teacher_vs_students,
)
from kdprivacy.reporting.tidy import require
from kdprivacy.reporting.verdicts import COLUMNS, summarize, untestable_summary

CLAIMS: dict[str, str] = {
    "kd_leaks_more_than_nokd": "a KD student's AUC is above the No-KD student's (paired, same examples)",
    "kd_method_ranking": "KD methods ranked by AUC per attack (descriptive; paired difference vs No-KD)",
    "top_leakers_imitkd_seqkd_kd": "the most-leaking KD method is ImitKD, SeqKD or KD",
    "minillm_leaks_least": "MiniLLM has the lowest AUC among the KD methods",
    "larger_students_leak_more": "the largest student base has a higher AUC than the smallest (same method)",
    "reverse_kl_leaks_less": "reverse-KL-style objectives (rkl, srkl) give a lower AUC than forward KL",
    "more_sgo_leaks_more": "AUC rises with the fraction of student-generated outputs (slope > 0)",
    "teacher_leaks_more_than_students": "the teacher's AUC is above its student's (paired, same examples)",
    "reference_attacks_strongest": "a reference-based attack has the highest mean student AUC",
    "nokd_near_chance": "the No-KD student's AUC interval contains 0.5",
    "blind_baseline_near_chance": "the model-free blind baseline's AUC interval contains 0.5",
    "memorization_gap_positive": "member match rate minus non-member match rate is above 0",
    "distillm_memorizes_most": "DistiLLM has the highest member match rate among the KD methods",
    "membership_memorization_disagree": "per-method AUC and memorization rate rank methods differently "
    "(Spearman rank agreement not significant)",
    "category_risk_order": "creative writing, general QA, brainstorming have a higher mean AUC than "
    "classification, summarization, closed QA",
    "block_risk_varies": "per-block AUC differs between blocks, per signal (logit lens, linear probe, MoPe; "
    "spread tested simultaneously over all block pairs)",
}


def compute_findings(
    mia: pd.DataFrame,
    paired: pd.DataFrame | None = None,
    memorization: pd.DataFrame | None = None,
    blind: pd.DataFrame | None = None,
    category: pd.DataFrame | None = None,
    blocks: pd.DataFrame | None = None,
    blocks_spread: pd.DataFrame | None = None,
    sizes: Mapping[str, Mapping[str, float]] | None = None,
    sources: Mapping[str, Mapping[str, Any]] | None = None,
    attacks: Sequence[str] | None = None,
) -> pd.DataFrame:
    """All claims of :data:`CLAIMS` on this run's tables (module docstring), cells then a summary row per
    (claim, family).

    ``mia`` = ``mia.csv``; ``paired`` = ``mia_paired.csv``; ``memorization`` = ``memorization.csv``;
    ``blind`` = ``blind_baseline.csv``; ``category`` = ``mia_category.csv``; ``blocks`` = ``blocks.csv``;
    ``blocks_spread`` = ``blocks_spread.csv`` (the simultaneous test that blocks differ).
    ``sizes``: ``{family: {base: n_params}}`` (bases missing here are sized from their names when possible).
    ``sources``: ``{family: {"objective": {"student": name, "objective": "fkl"}, "sgo_ratio": {"student":
    name, "value": ratio}}}``: the source students of the ablations and their own setting, so that they join
    the comparison. ``attacks``: preferred attack order.
    """
    require(mia, ["family", "model", "role", "method", "attack", "auc"], "mia")
    rows: list[dict] = []
    rows += kd_vs_nokd(paired)
    rows += method_extremes(mia)
    rows += larger_students(mia, sizes)
    rows += reverse_kl(mia, paired, sources)
    rows += more_sgo(mia, sources)
    rows += teacher_vs_students(paired)
    rows += reference_strongest(mia)
    rows += near_chance(mia, blind)
    rows += memorization_claims(memorization, mia, attacks)
    rows += category_order(category, attacks)
    rows += block_variation(blocks, blocks_spread)
    families = list(dict.fromkeys(mia["family"]))
    out: list[dict] = []
    for claim in CLAIMS:
        cells = [r for r in rows if r["claim"] == claim]
        if not cells:
            for family in families:
                out.append(
                    untestable_summary(
                        claim, family, "no table rows for this claim: not testable in this run"
                    )
                )
            continue
        out += cells
        if claim == "kd_method_ranking":
            continue
        claim_families = [f for f in families if any(r["scope"].split("/")[0] == f for r in cells)]
        for family in claim_families:
            out.append(summarize(cells, claim, family))
            if claim == "block_risk_varies":  # and one summary per signal: family/signal
                for signal in dict.fromkeys(r["scope"].split("/")[2] for r in cells
                                            if r["scope"].split("/")[0] == family):
                    mine = [r for r in cells if r["scope"].split("/")[0] == family
                            and r["scope"].split("/")[2] == signal]
                    out.append({**summarize(mine, claim, family), "scope": f"{family}/{signal}"})
        if claim == "blind_baseline_near_chance":
            out.append(summarize([{**r, "scope": "blind"} for r in cells], claim, "blind"))
    table = pd.DataFrame(out, columns=COLUMNS)
    table["supported"] = table["supported"].astype(object).where(table["supported"].notna(), None)
    return table
