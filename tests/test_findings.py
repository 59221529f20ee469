"""Findings on hand-made tables whose answers are known: supported, not supported, not testable."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kdprivacy.reporting import claims, claims_ablations, summary, tidy, verdicts

from toy import mia_rows, model

REPO = Path(__file__).resolve().parents[1]


HARNESS = """
import json, runpy, sys, types
from pathlib import Path


class Named(list):  # what the scripts use of Snakemake's Namedlist: attributes, items(), iteration
    def __init__(self, named=None, plain=()):
        super().__init__(list(plain) + list((named or {}).values()))
        self._named = dict(named or {})
        for k, v in self._named.items():
            setattr(self, k, v)

    def items(self):
        return self._named.items()


spec = json.loads(Path(sys.argv[1]).read_text())
for script, inp, outp, params, config in spec["calls"]:
    log = f"{spec['logs']}/{Path(script).stem}.log"
    smk = types.SimpleNamespace(scriptdir=spec["scripts"], input=Named(inp), output=Named(outp),
                                params=types.SimpleNamespace(**params), log=Named(plain=[log]), threads=1,
                                rule=Path(script).stem, config=config)
    runpy.run_path(f"{spec['scripts']}/{script}", init_globals={"snakemake": smk}, run_name="__main__")
"""


def paired_rows(spec):
    """(model dict, comparator name, comparison, attack, auc_model, auc_comparator, ci half-width)."""
    return pd.DataFrame(
        [
            {
                **m,
                "comparator": c,
                "comparison": k,
                "attack": a,
                "auc_model": am,
                "auc_comparator": ac,
                "auc_diff": am - ac,
                "auc_diff_ci_low": am - ac - h,
                "auc_diff_ci_high": am - ac + h,
                "n_members": 100,
                "n_nonmembers": 100,
            }
            for m, c, k, a, am, ac, h in spec
        ]
    )


def rows_of(table, claim, level="cell"):
    return table[(table.claim == claim) & (table.level == level)]


def one(table, claim, scope, level="cell"):
    hit = table[(table.claim == claim) & (table.scope == scope) & (table.level == level)]
    assert len(hit) == 1, (claim, scope, hit)
    return hit.iloc[0]


TEACHER = model("teacher", "teacher", "teacher", role="teacher")
NOKD = model("nokd-s", "nokd", "s")
KD, SEQ, MINI = model("kd-s", "kd", "s"), model("seqkd-s", "seqkd", "s"), model("minillm-s", "minillm", "s")


# ------------------------------------------------------------------------------------------ helpers
def test_pool_mean_and_envelope():
    t = mia_rows(
        [
            (model("a", "kd", "s", seed=0), "loss", 0.6, 0.05),
            (model("a", "kd", "s", seed=1), "loss", 0.7, 0.02),
            (model("b", "kd", "s"), "loss", 0.55, 0.05),
        ]
    )
    p = tidy.pool(t, ["model", "attack"]).set_index("model")
    assert p.loc["a", "auc"] == pytest.approx(0.65) and p.loc["a", "n_seeds"] == 2
    assert p.loc["a", "ci_low"] == pytest.approx(0.55) and p.loc["a", "ci_high"] == pytest.approx(0.72)
    assert p.loc["b", "ci_low"] == pytest.approx(0.5) and p.loc["b", "n_seeds"] == 1
    t.loc[0, "auc"] = np.nan
    assert math.isnan(tidy.pool(t, ["model", "attack"]).set_index("model").loc["a", "auc"])


def test_sizes_spearman_slope_bool():
    size = claims_ablations.size_from_name
    assert size("opt-1.3b") == 1.3e9 and size("125m") == 125e6
    assert (
        claims_ablations.size_from_name("large", "gpt2") == 774e6
        and claims_ablations.size_from_name("small", "llama") is None
    )
    assert verdicts.spearman([1, 2, 3, 4], [2, 4, 6, 9]) == pytest.approx(1.0)
    assert math.isnan(verdicts.spearman([1, 2, 3], [5, 5, 5]))
    assert verdicts.spearman_p_greater([1, 2, 3, 4, 5], [1, 2, 3, 4, 5]) == pytest.approx(1 / 120)
    slope, lo, hi = claims_ablations.slope_with_ci(
        [0, 0.5, 1], [0.5, 0.6, 0.7], [0.49, 0.59, 0.69], [0.51, 0.61, 0.71]
    )
    assert slope == pytest.approx(0.2) and lo < 0.2 < hi and lo > 0
    assert [verdicts.as_bool(x) for x in (True, "False", "true", "", float("nan"), None)] == [
        True,
        False,
        True,
        None,
        None,
        None,
    ]


# ------------------------------------------------------------------------------------------ claims
def test_kd_vs_nokd_supported_and_not_and_ranking():
    paired = paired_rows(
        [
            (KD, "nokd-s", "nokd", "loss", 0.65, 0.50, 0.03),  # CI [0.12, 0.18]: supported
            (SEQ, "nokd-s", "nokd", "loss", 0.52, 0.50, 0.05),  # CI contains 0: not
            (MINI, "nokd-s", "nokd", "loss", 0.51, 0.50, 0.05),
            (KD, "teacher", "teacher", "loss", 0.65, 0.90, 0.04),
        ]
    )
    mia = mia_rows([(TEACHER, "loss", 0.9, 0.02), (NOKD, "loss", 0.5, 0.05)])
    t = claims.compute_findings(mia, paired=paired)
    kd = one(t, "kd_leaks_more_than_nokd", "gpt2/kd-s/loss")
    assert kd.supported is True and kd.value == pytest.approx(0.15) and kd.ci_low == pytest.approx(0.12)
    assert "supported" in kd.detail and "0.650" in kd.detail
    assert one(t, "kd_leaks_more_than_nokd", "gpt2/seqkd-s/loss").supported is False
    summary = one(t, "kd_leaks_more_than_nokd", "gpt2", "summary")
    assert summary.value == pytest.approx(1 / 3) and summary.supported is False and summary.n == 3
    ranking = one(t, "kd_method_ranking", "gpt2/s/loss")
    assert ranking.supported is None and ranking.detail.index("1. kd") < ranking.detail.index(
        "2. seqkd"
    ) < ranking.detail.index("3. minillm")
    teacher = one(t, "teacher_leaks_more_than_students", "gpt2/kd-s/loss")
    assert teacher.value == pytest.approx(0.25) and teacher.supported is True
    assert teacher.ci_low == pytest.approx(0.21) and teacher.ci_high == pytest.approx(0.29)


def test_method_extremes():
    mia = mia_rows(
        [
            (KD, "loss", 0.7, 0.05),
            (SEQ, "loss", 0.6, 0.05),
            (MINI, "loss", 0.52, 0.05),
            (KD, "zlib", 0.5, 0.05),
            (SEQ, "zlib", 0.5, 0.05),
            (MINI, "zlib", 0.55, 0.05),
            (KD, "mope", 0.5, 0.05),
        ]
    )
    t = claims.compute_findings(mia)
    assert one(t, "top_leakers_imitkd_seqkd_kd", "gpt2/s/loss").supported is True
    assert one(t, "minillm_leaks_least", "gpt2/s/loss").supported is True
    assert one(t, "top_leakers_imitkd_seqkd_kd", "gpt2/s/zlib").supported is False
    assert one(t, "minillm_leaks_least", "gpt2/s/zlib").supported is False
    assert one(t, "minillm_leaks_least", "gpt2/s/mope").supported is None  # one method only


def test_larger_students():
    small, large = model("kd-s", "kd", "s"), model("kd-l", "kd", "l")
    mia = mia_rows(
        [
            (small, "loss", 0.6, 0.02),
            (large, "loss", 0.75, 0.02),
            (small, "zlib", 0.6, 0.02),
            (large, "zlib", 0.52, 0.02),
        ]
    )
    single = claims.compute_findings(mia[mia.model == "kd-s"])
    assert one(single, "larger_students_leak_more", "gpt2").supported is None
    assert one(single, "larger_students_leak_more", "gpt2", "summary").supported is None
    t = claims.compute_findings(mia, sizes={"gpt2": {"s": 1e8, "l": 1e9}})
    loss = one(t, "larger_students_leak_more", "gpt2/kd/loss")
    assert loss.value == pytest.approx(0.15) and loss.supported is True and "approximate" in loss.detail
    assert one(t, "larger_students_leak_more", "gpt2/kd/zlib").supported is False
    # no sizes given and names that say nothing: not testable
    assert one(claims.compute_findings(mia), "larger_students_leak_more", "gpt2").supported is None


def test_reverse_kl():
    rkl = model("kd-s.obj-rkl", "kd", "s", ablation="objective", value="rkl")
    fkl = model("kd-s.obj-fkl", "kd", "s", ablation="objective", value="fkl")
    tvd = model("kd-s.obj-tvd", "kd", "s", ablation="objective", value="tvd")
    mia = mia_rows(
        [
            (rkl, "loss", 0.55, 0.01),
            (fkl, "loss", 0.65, 0.01),
            (tvd, "loss", 0.6, 0.01),
            (rkl, "zlib", 0.6, 0.05),
            (fkl, "zlib", 0.6, 0.05),
            (KD, "loss", 0.66, 0.01),
        ]
    )
    t = claims.compute_findings(mia)
    assert one(t, "reverse_kl_leaks_less", "gpt2/rkl/loss").supported is True
    assert one(t, "reverse_kl_leaks_less", "gpt2/rkl/loss").value == pytest.approx(-0.10)
    assert one(t, "reverse_kl_leaks_less", "gpt2/rkl/zlib").supported is False
    assert not len(t[t.scope.str.contains("tvd")])
    # no fkl copy: not testable unless the source student's objective is named
    no_fkl = mia[mia.model != "kd-s.obj-fkl"]
    assert one(claims.compute_findings(no_fkl), "reverse_kl_leaks_less", "gpt2").supported is None
    src = {"gpt2": {"objective": {"student": "kd-s", "objective": "fkl"}}}
    row = one(claims.compute_findings(no_fkl, sources=src), "reverse_kl_leaks_less", "gpt2/rkl/loss")
    assert row.value == pytest.approx(-0.11) and row.supported is True and "source student kd-s" in row.detail
    # a paired row rkl copy vs the fkl model is used when present
    paired = paired_rows([(rkl, "kd-s.obj-fkl", "source", "loss", 0.55, 0.65, 0.2)])
    row = one(claims.compute_findings(mia, paired=paired), "reverse_kl_leaks_less", "gpt2/rkl/loss")
    assert "paired bootstrap" in row.detail and row.supported is False


def test_more_sgo():
    def m(r):
        return model(f"imitkd-s.sgo-{r:g}", "imitkd", "s", ablation="sgo_ratio", value=str(r))

    mia = mia_rows(
        [
            (m(0.0), "loss", 0.55, 0.01),
            (m(0.5), "loss", 0.6, 0.01),
            (m(1.0), "loss", 0.66, 0.01),
            (m(0.0), "zlib", 0.6, 0.05),
            (m(0.5), "zlib", 0.6, 0.05),
            (m(1.0), "zlib", 0.6, 0.05),
        ]
    )
    t = claims.compute_findings(mia)
    loss = one(t, "more_sgo_leaks_more", "gpt2/loss")
    assert loss.supported is True and loss.value == pytest.approx(0.11) and loss.n == 3
    assert one(t, "more_sgo_leaks_more", "gpt2/zlib").supported is False
    one_ratio = mia[mia.ablation_value == "0.5"]
    assert one(claims.compute_findings(one_ratio), "more_sgo_leaks_more", "gpt2/loss").supported is None
    # the source student joins at its own ratio
    src = {"gpt2": {"sgo_ratio": {"student": "imitkd-s", "value": 1.0}}}
    with_src = pd.concat([one_ratio, mia_rows([(model("imitkd-s", "imitkd", "s"), "loss", 0.7, 0.01)])])
    row = one(claims.compute_findings(with_src, sources=src), "more_sgo_leaks_more", "gpt2/loss")
    assert row.n == 2 and row.value == pytest.approx(0.2) and row.supported is True
    assert (
        one(
            claims.compute_findings(mia_rows([(KD, "loss", 0.6, 0.1)])), "more_sgo_leaks_more", "gpt2"
        ).supported
        is None
    )


def test_near_chance_and_blind():
    mia = mia_rows([(NOKD, "loss", 0.51, 0.05), (NOKD, "zlib", 0.6, 0.03), (KD, "loss", 0.6, 0.03)])
    blind_ok = pd.DataFrame(
        [
            {
                "attack": "blind",
                "auc": 0.52,
                "auc_ci_low": 0.45,
                "auc_ci_high": 0.6,
                "n_members": 50,
                "n_nonmembers": 50,
            }
        ]
    )
    t = claims.compute_findings(mia, blind=blind_ok)
    assert one(t, "nokd_near_chance", "gpt2/nokd-s/loss").supported is True
    assert one(t, "nokd_near_chance", "gpt2/nokd-s/zlib").supported is False
    assert one(t, "blind_baseline_near_chance", "blind/blind").supported is True
    assert one(t, "blind_baseline_near_chance", "blind", "summary").supported is True
    blind_bad = blind_ok.assign(auc=0.7, auc_ci_low=0.62, auc_ci_high=0.78)
    assert (
        one(
            claims.compute_findings(mia, blind=blind_bad), "blind_baseline_near_chance", "blind/blind"
        ).supported
        is False
    )
    assert (
        one(claims.compute_findings(mia), "blind_baseline_near_chance", "gpt2", "summary").supported is None
    )


def memo(spec):
    return pd.DataFrame(
        [
            {
                **m,
                "member_rate": r,
                "member_rate_ci_low": r - 0.005,
                "member_rate_ci_high": r + 0.005,
                "nonmember_rate": r - g,
                "gap": g,
                "gap_ci_low": g - h,
                "gap_ci_high": g + h,
            }
            for m, r, g, h in spec
        ]
    )


def test_memorization_gap_and_distillm():
    dist, imit = model("distillm-s", "distillm", "s"), model("imitkd-s", "imitkd", "s")
    m = memo(
        [
            (TEACHER, 0.2, 0.08, 0.02),
            (KD, 0.05, 0.01, 0.02),
            (dist, 0.09, 0.02, 0.01),
            (imit, 0.04, 0.0, 0.01),
        ]
    )
    t = claims.compute_findings(mia_rows([(KD, "loss", 0.6, 0.1)]), memorization=m)
    assert one(t, "memorization_gap_positive", "gpt2/teacher").supported is True
    assert one(t, "memorization_gap_positive", "gpt2/kd-s").supported is False
    assert one(t, "distillm_memorizes_most", "gpt2/s").supported is True
    m2 = m.assign(member_rate=[0.2, 0.1, 0.05, 0.04])
    assert (
        one(
            claims.compute_findings(mia_rows([(KD, "loss", 0.6, 0.1)]), memorization=m2),
            "distillm_memorizes_most",
            "gpt2/s",
        ).supported
        is False
    )
    m3 = m.assign(member_rate=0.0)
    assert (
        one(
            claims.compute_findings(mia_rows([(KD, "loss", 0.6, 0.1)]), memorization=m3),
            "distillm_memorizes_most",
            "gpt2/s",
        ).supported
        is None
    )


def test_membership_memorization_disagreement():
    methods = [model(f"{m}-s", m, "s") for m in ("kd", "seqkd", "imitkd", "gkd", "minillm", "distillm")]
    aucs = [0.70, 0.68, 0.72, 0.62, 0.55, 0.60]
    mia = mia_rows([(m, "loss", a, 0.02) for m, a in zip(methods, aucs)])
    agree = memo([(m, a / 10, 0.0, 0.01) for m, a in zip(methods, aucs)])  # same ranking
    disagree = memo([(m, r, 0.0, 0.01) for m, r in zip(methods, [0.05, 0.06, 0.04, 0.07, 0.08, 0.09])])
    row = one(
        claims.compute_findings(mia, memorization=agree), "membership_memorization_disagree", "gpt2/s/loss"
    )
    assert row.value == pytest.approx(1.0) and row.supported is False
    row = one(
        claims.compute_findings(mia, memorization=disagree),
        "membership_memorization_disagree",
        "gpt2/s/loss",
    )
    assert row.value < 0 and row.supported is True and row.n == 6
    three = memo([(m, r, 0.0, 0.01) for m, r in zip(methods[:3], [0.05, 0.06, 0.04])])
    assert (
        one(
            claims.compute_findings(mia, memorization=three),
            "membership_memorization_disagree",
            "gpt2/s/loss",
        ).supported
        is None
    )


def test_category_order_and_blocks():
    rows = []
    for c, auc in (
        ("creative_writing", 0.7),
        ("general_qa", 0.68),
        ("brainstorming", 0.66),
        ("classification", 0.55),
        ("summarization", 0.54),
        ("closed_qa", 0.5),
    ):
        rows.append(
            {
                **KD,
                "attack": "loss",
                "category": c,
                "auc": auc,
                "auc_ci_low": auc - 0.1,
                "auc_ci_high": auc + 0.1,
            }
        )
        rows.append(
            {
                **KD,
                "attack": "zlib",
                "category": c,
                "auc": 1.2 - auc,
                "auc_ci_low": 1.1 - auc,
                "auc_ci_high": 1.3 - auc,
            }
        )
    cat = pd.DataFrame(rows)
    t = claims.compute_findings(mia_rows([(KD, "loss", 0.6, 0.1)]), category=cat)
    assert one(t, "category_risk_order", "gpt2/loss").supported is True
    assert one(t, "category_risk_order", "gpt2/zlib").supported is False
    only_risky = cat[cat.category.isin(["creative_writing", "general_qa"])]
    assert (
        one(
            claims.compute_findings(mia_rows([(KD, "loss", 0.6, 0.1)]), category=only_risky),
            "category_risk_order",
            "gpt2/loss",
        ).supported
        is None
    )
    blocks = pd.DataFrame(
        [
            {**m, "signal": "mope", "block": b, "sigma": 0.01, "auc": a, "auc_ci_low": a - 0.03,
             "auc_ci_high": a + 0.03}
            for m, aucs in ((TEACHER, [0.55, 0.75]), (KD, [0.55, 0.57]), (NOKD, [0.5]))
            for b, a in enumerate(aucs)
        ]
    )
    # the verdict is the simultaneous spread test's (blocks_spread.csv), not whether the extremes' intervals
    # overlap: the KD student's extremes overlap but its test rejects; the teacher's do not but its test does not
    spread = pd.DataFrame(
        [
            {**m, "signal": "mope", "sigma": 0.01, "n_blocks": 2, "n_pairs": 1, "p_value": p, "level": 0.95}
            for m, p in ((TEACHER, 0.2), (KD, 0.01), (NOKD, math.nan))
        ]
    )
    t = claims.compute_findings(mia_rows([(KD, "loss", 0.6, 0.1)]), blocks=blocks, blocks_spread=spread)
    assert one(t, "block_risk_varies", "gpt2/teacher/mope/sigma=0.01").supported is False
    assert one(t, "block_risk_varies", "gpt2/kd-s/mope/sigma=0.01").supported is True
    assert "p = 0.01" in one(t, "block_risk_varies", "gpt2/kd-s/mope/sigma=0.01").detail
    assert one(t, "block_risk_varies", "gpt2/nokd-s/mope/sigma=0.01").supported is None  # one block
    # no spread table (or no p-value): not testable, whatever the intervals say
    t = claims.compute_findings(mia_rows([(KD, "loss", 0.6, 0.1)]), blocks=blocks)
    assert one(t, "block_risk_varies", "gpt2/teacher/mope/sigma=0.01").supported is None
    nan_p = spread.assign(p_value=math.nan)
    t = claims.compute_findings(mia_rows([(KD, "loss", 0.6, 0.1)]), blocks=blocks, blocks_spread=nan_p)
    assert one(t, "block_risk_varies", "gpt2/kd-s/mope/sigma=0.01").supported is None
    # two seeds: Bonferroni, min p x 2 (0.03 x 2 = 0.06 is not below 0.05; 0.02 x 2 is)
    two = pd.concat([spread.assign(seed=0), spread.assign(seed=1)], ignore_index=True)
    two.loc[two.model == "kd-s", "p_value"] = [0.03, 0.5]
    t = claims.compute_findings(mia_rows([(KD, "loss", 0.6, 0.1)]), blocks=blocks, blocks_spread=two)
    assert one(t, "block_risk_varies", "gpt2/kd-s/mope/sigma=0.01").supported is False
    two.loc[two.model == "kd-s", "p_value"] = [0.02, 0.5]
    t = claims.compute_findings(mia_rows([(KD, "loss", 0.6, 0.1)]), blocks=blocks, blocks_spread=two)
    assert one(t, "block_risk_varies", "gpt2/kd-s/mope/sigma=0.01").supported is True


def test_block_claims_per_signal():
    """One block_risk_varies cell per (model, signal[, sigma]), matched to its own spread test; a summary per
    family and one per family/signal; the paper's per-block claim reads the MoPe summary only."""
    from kdprivacy.reporting import paper

    rows, tests = [], []
    for signal, sigma, p_kd in (("lens_loss", math.nan, 0.001), ("probe", math.nan, 0.001), ("mope", 0.01, 0.4)):
        for m in (TEACHER, KD):
            rows += [{**m, "signal": signal, "block": b, "sigma": sigma, "auc": a, "auc_ci_low": a - 0.1,
                      "auc_ci_high": a + 0.1} for b, a in enumerate([0.6, 0.7, 0.65])]
            p = p_kd if m is KD else 0.5
            tests.append({**m, "signal": signal, "sigma": sigma, "n_blocks": 3, "n_pairs": 3, "p_value": p,
                          "level": 0.95})
    t = claims.compute_findings(mia_rows([(KD, "loss", 0.6, 0.1)]), blocks=pd.DataFrame(rows),
                                blocks_spread=pd.DataFrame(tests))
    assert one(t, "block_risk_varies", "gpt2/kd-s/lens_loss").supported is True
    assert one(t, "block_risk_varies", "gpt2/kd-s/probe").supported is True
    assert one(t, "block_risk_varies", "gpt2/kd-s/mope/sigma=0.01").supported is False
    assert "p = 0.4" in one(t, "block_risk_varies", "gpt2/kd-s/mope/sigma=0.01").detail
    assert one(t, "block_risk_varies", "gpt2/teacher/probe").supported is False
    summaries = t[(t.claim == "block_risk_varies") & (t.level == "summary")].set_index("scope")
    assert list(summaries.index) == ["gpt2", "gpt2/lens_loss", "gpt2/probe", "gpt2/mope"]
    assert summaries.loc["gpt2/mope", "value"] == 0 and summaries.loc["gpt2/probe", "value"] == 0.5
    verdict = paper.qualitative_claims(t).set_index("claim").loc["per_block_risk_varies"]
    assert verdict.n_testable == 1 and verdict.supported is False and "gpt2/mope" in verdict.detail


def test_reference_attacks_and_table_shape():
    mia = mia_rows(
        [
            (KD, "loss", 0.6, 0.05),
            (KD, "ref_pretrained", 0.7, 0.05),
            (SEQ, "loss", 0.58, 0.05),
            (SEQ, "ref_pretrained", 0.66, 0.05),
        ]
    )
    t = claims.compute_findings(mia)
    assert list(t.columns) == verdicts.COLUMNS
    assert one(t, "reference_attacks_strongest", "gpt2").supported is True
    no_ref = claims.compute_findings(mia[mia.attack == "loss"])
    assert one(no_ref, "reference_attacks_strongest", "gpt2").supported is None
    # every claim has a summary row for the family, testable or not
    assert set(t[t.level == "summary"].claim) >= set(claims.CLAIMS) - {"kd_method_ranking"}
    assert set(t.supported.map(type)) <= {bool, type(None)}


def test_render_summary_links_and_numbers(tmp_path):
    mia = mia_rows([(TEACHER, "loss", 0.912, 0.02), (NOKD, "loss", 0.503, 0.05), (KD, "loss", 0.655, 0.02)])
    paired = paired_rows([(KD, "nokd-s", "nokd", "loss", 0.655, 0.503, 0.03)])
    t = claims.compute_findings(mia, paired=paired)
    results = tmp_path / "results"
    text = summary.render_summary(
        results / "summary.md",
        t,
        {"mia": str(results / "tables" / "mia.csv"), "findings": str(results / "tables" / "findings.csv")},
        {"baselines": str(results / "figures" / "baselines.png")},
        config_name="configs/smoke.yaml",
        config_hash="abc123",
        mia=mia,
    )
    assert "[mia](tables/mia.csv)" in text and "[baselines](figures/baselines.png)" in text
    assert "configs/smoke.yaml" in text and "abc123" in text
    assert "teacher AUC 0.912-0.912" in text and "KD students AUC 0.655-0.655" in text
    assert "kd_leaks_more_than_nokd | gpt2 | supported" in text


def test_scripts_contract(tmp_path):
    """The four scripts on small tables, with a stand-in for Snakemake's object (one subprocess)."""
    tables = tmp_path / "in"
    tables.mkdir()
    spec = [
        (TEACHER, "loss", 0.9, 0.03),
        (NOKD, "loss", 0.5, 0.05),
        (KD, "loss", 0.65, 0.03),
        (MINI, "loss", 0.55, 0.03),
        (model("kd-s.obj-rkl", "kd", "s", ablation="objective", value="rkl"), "loss", 0.6, 0.03),
    ]
    mia = mia_rows(spec)
    mia.to_csv(tables / "mia.csv", index=False)
    paired_rows(
        [(KD, "nokd-s", "nokd", "loss", 0.65, 0.5, 0.03), (KD, "teacher", "teacher", "loss", 0.65, 0.9, 0.03)]
    ).to_csv(tables / "mia_paired.csv", index=False)
    memo(
        [
            (TEACHER, 0.1, 0.02, 0.01),
            (NOKD, 0.03, 0.0, 0.01),
            (KD, 0.05, 0.01, 0.01),
            (MINI, 0.06, 0.01, 0.01),
        ]
    ).to_csv(tables / "memorization.csv", index=False)
    models = (
        mia.drop_duplicates("model")[
            ["family", "seed", "model", "role", "method", "base", "ablation", "ablation_value"]
        ]
        .astype(object)
        .where(lambda f: f.notna(), None)
    )
    roc = []
    for name in models.model:
        path = tables / f"{name}.roc.csv"
        pd.DataFrame(
            {"attack": "loss", "fpr": [0, 0.1, 1], "tpr": [0, 0.3, 1], "threshold": [9, 1, 0]}
        ).to_csv(path, index=False)
        roc.append(str(path))
    out = tmp_path / "results"
    t, o = str(tables), str(out)
    src = {"gpt2": {"objective": {"student": "kd-s", "objective": "fkl"}}}
    figure_outputs = {
        "methods": [f"{o}/figures/methods_s.png", f"{o}/figures/methods_x.png"],
        **{k: f"{o}/figures/{k}.png" for k in ("baselines", "objective", "sgo", "roc")},
        "membership_vs_memorization": f"{o}/figures/mm.png",
    }
    calls = [
        (
            "findings.py",
            {
                "mia": f"{t}/mia.csv",
                "mia_paired": f"{t}/mia_paired.csv",
                "memorization": f"{t}/memorization.csv",
            },
            {"findings": f"{o}/tables/findings.csv"},
            {"cfg": {"attacks": ["loss"], "sources": src, "base_sizes": {}}},
            {},
        ),
        (
            "paper_comparison.py",
            {
                "mia": f"{t}/mia.csv",
                "memorization": f"{t}/memorization.csv",
                "findings": f"{o}/tables/findings.csv",
            },
            {"comparison": f"{o}/tables/paper_comparison.csv", "claims": f"{o}/tables/paper_claims.csv"},
            {"cfg": {"paper": {"families": {"gpt2": {"family": "gpt2", "models": {"s": "gpt2-medium"}}}}, "protocol": "paper"}},
            {},
        ),
        (
            "figures.py",
            {"mia": f"{t}/mia.csv", "memorization": f"{t}/memorization.csv", "roc": roc},
            figure_outputs,
            {
                "cfg": {"attacks": ["loss"], "student_bases": ["gpt2/s", "gpt2/x"], "sources": src},
                "models": models.to_dict("records"),
            },
            {},
        ),
        (
            "summary.py",
            {
                "findings": f"{o}/tables/findings.csv",
                "claims": f"{o}/tables/paper_claims.csv",
                "comparison": f"{o}/tables/paper_comparison.csv",
                "mia": f"{t}/mia.csv",
                "tables": [f"{t}/mia.csv"],
                "figures": [f"{o}/figures/baselines.png"],
            },
            {"summary": f"{o}/summary.md"},
            {"cfg": {"config_name": "test.yaml"}},
            {"seeds": [0]},
        ),
    ]
    (tmp_path / "calls.json").write_text(
        json.dumps({"scripts": str(REPO / "scripts"), "logs": f"{o}/logs", "calls": calls})
    )
    (tmp_path / "harness.py").write_text(HARNESS)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "harness.py"), str(tmp_path / "calls.json")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-4000:] + "".join(
        p.read_text() for p in (out / "logs").glob("*.log")
    )
    f = pd.read_csv(out / "tables" / "findings.csv")
    assert list(f.columns) == verdicts.COLUMNS
    assert bool(f[(f.claim == "kd_leaks_more_than_nokd") & (f.level == "cell")].supported.iloc[0]) is True
    comparison = pd.read_csv(out / "tables" / "paper_comparison.csv")
    kd_loss = comparison[(comparison.model == "kd-s") & (comparison.metric == "mia_auc")].iloc[0]
    assert (kd_loss.paper_model, kd_loss.ours, kd_loss.paper) == ("gpt2-medium", 0.65, 0.6)
    assert "teacher" not in set(comparison.model)  # the teacher's base is not mapped
    assert (comparison["protocol"] == "paper").all()  # the rule's protocol param reaches every row
    assert len(pd.read_csv(out / "tables" / "paper_claims.csv")) > 10
    for name in ("methods_s", "methods_x", "baselines", "objective", "sgo", "roc", "mm"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 0, name
    assert "no rows" in (out / "logs" / "figures.log").read_text()  # sgo: a notice, logged
    summary = (out / "summary.md").read_text()
    assert "test.yaml" in summary and "(figures/baselines.png)" in summary and "../in/mia.csv" in summary


def test_near_chance_never_counts_an_untestable_nokd_cell():
    """Issue #15.1: the No-KD student's ref_nokd cell without an independent reference (NaN metrics and a
    ``note`` from attack_metrics) is not testable: never support, even if a stale row holds 0.5 [0.5, 0.5]
    (the old self-comparison)."""
    from kdprivacy.mia.attacks import NO_NOKD_REFERENCE

    for auc, half in ((math.nan, math.nan), (0.5, 0.0)):
        mia = mia_rows([(NOKD, "loss", 0.51, 0.05), (NOKD, "ref_nokd", auc, half), (KD, "loss", 0.6, 0.03)])
        mia["note"] = [np.nan, NO_NOKD_REFERENCE, np.nan]
        t = claims.compute_findings(mia)
        cell = one(t, "nokd_near_chance", "gpt2/nokd-s/ref_nokd")
        assert cell.supported is None and math.isnan(cell.value)
        assert NO_NOKD_REFERENCE in cell.detail
        s = one(t, "nokd_near_chance", "gpt2", "summary")
        assert s.n == 1 and "holds in 1 of 1 testable cells (1 not testable)" in s.detail
