"""The paper comparison: packaged numbers, mapped cells only (nothing invented), qualitative claims."""

import math
from importlib import resources

import pandas as pd
import pytest

from kdprivacy.reporting import claims, paper, verdicts

from toy import model


TEACHER = model("teacher", "teacher", "tbase", role="teacher")
KD = model("kd-m", "kd", "m")
NOKD = model("nokd-m", "nokd", "m")
MAPPING = {"families": {"gpt2": {"family": "gpt2", "models": {"tbase": "gpt2-xl", "m": "gpt2-medium"}}}}


def mia_rows(spec):
    return pd.DataFrame(
        [
            {**m, "attack": a, "auc": auc, "auc_ci_low": auc - h, "auc_ci_high": auc + h}
            for m, a, auc, h in spec
        ]
    )


def test_packaged_results():
    table = paper.load_paper_results()
    assert list(table.columns) == ["family", "model", "method", "metric", "attack", "value"]
    assert len(table) == 434
    assert set(table.metric) == {"mia_auc", "memorization_accuracy", "memorization_gap", "rouge_l"}
    assert set(table.method) == set(paper.METHOD_MAP.values())
    assert set(table[table.metric == "mia_auc"].attack) == set(paper.ATTACK_MAP.values())
    assert (table[table.metric != "mia_auc"].attack == "").all()
    assert not table.duplicated(["family", "model", "method", "metric", "attack"]).any()
    cell = table[(table.model == "gpt2-xl") & (table.attack == "mope")].value
    assert cell.tolist() == [0.61]
    readme = resources.files("kdprivacy").joinpath("resources", "README.md").read_text(encoding="utf-8")
    assert "2508.07054" in readme and "Zhang" in readme and "EMNLP 2025" in readme


def test_mapped_cells_exact_and_unmapped_give_no_rows():
    mia = mia_rows(
        [
            (TEACHER, "loss", 0.9, 0.02),
            (KD, "loss", 0.63, 0.02),
            (KD, "rmia", 0.7, 0.02),
            (NOKD, "zlib", 0.5, 0.05),
            (model("kd-m.obj-rkl", "kd", "m", ablation="objective", value="rkl"), "loss", 0.55, 0.02),
            (model("kd-s", "kd", "s"), "loss", 0.6, 0.02),
        ]
    )
    out = paper.compare(MAPPING, mia)
    assert list(out.columns) == paper.COMPARISON_COLUMNS
    by = out.set_index(["model", "attack"])
    # gpt2-medium kd loss = 0.60, gpt2-xl teacher loss = 0.97, gpt2-medium no_kd zlib (read from the file)
    kd = by.loc[("kd-m", "loss")]
    assert (kd.ours, kd.paper, kd.paper_model, kd.paper_method) == (0.63, 0.6, "gpt2-medium", "kd")
    assert kd["diff"] == pytest.approx(0.03) and kd.paper_in_ci is False
    teacher = by.loc[("teacher", "loss")]
    assert (teacher.ours, teacher.paper) == (0.9, 0.97) and teacher["diff"] == pytest.approx(-0.07)
    table = paper.load_paper_results()
    nokd_paper = table[
        (table.model == "gpt2-medium") & (table.method == "no_kd") & (table.attack == "zlib")
    ].value.item()
    assert (
        by.loc[("nokd-m", "zlib")].paper == nokd_paper and by.loc[("nokd-m", "zlib")].paper_method == "no_kd"
    )
    # rmia (no paper counterpart), the ablation copy and the unmapped base "s" give no row
    assert set(out.model) == {"teacher", "kd-m", "nokd-m"} and "rmia" not in set(out.attack)
    assert len(out) == 3
    # a run whose model is not mapped produces no comparison rows at all
    assert paper.compare({}, mia).empty
    assert paper.compare({"families": {"gpt2": {"family": "gpt2", "models": {"zzz": "gpt2"}}}}, mia).empty
    assert paper.compare({"families": {"opt": {"family": "opt", "models": {"m": "opt-350m"}}}}, mia).empty
    # a mapping to a model the paper does not have: no row either
    assert paper.compare({"families": {"gpt2": {"models": {"m": "gpt2-nano"}}}}, mia).empty


def test_memorization_and_utility_cells():
    memo = pd.DataFrame(
        [
            {
                **KD,
                "member_rate": 0.05,
                "member_rate_ci_low": 0.04,
                "member_rate_ci_high": 0.07,
                "gap": 0.004,
                "gap_ci_low": -0.002,
                "gap_ci_high": 0.01,
            }
        ]
    )
    util = pd.DataFrame(
        [
            {**KD, "category": c, "rouge_l": v, "rouge_l_ci_low": v - 1, "rouge_l_ci_high": v + 1}
            for c, v in (("ALL", 22.0), ("open_qa", 30.0))
        ]
    )
    out = paper.compare(MAPPING, memorization=memo, utility=util).set_index("metric")
    table = paper.load_paper_results().set_index(["model", "method", "metric"])
    for metric, ours in (("memorization_accuracy", 0.05), ("memorization_gap", 0.004), ("rouge_l", 22.0)):
        expected = table.loc[("gpt2-medium", "kd", metric), "value"]
        assert out.loc[metric, "ours"] == ours and out.loc[metric, "paper"] == expected
        assert out.loc[metric, "diff"] == pytest.approx(ours - expected)
    assert len(out) == 3


def test_seeds_pooled_before_comparison():
    mia = mia_rows([({**KD, "seed": 0}, "loss", 0.62, 0.02), ({**KD, "seed": 1}, "loss", 0.66, 0.02)])
    row = paper.compare(MAPPING, mia).iloc[0]
    assert row.ours == pytest.approx(0.64) and row.n_seeds == 2 and row.paper_in_ci is True


def claims_table(rows):
    return pd.DataFrame(
        [verdicts.make_row(c, lvl, s, "x", v, supported=sup, detail=d) for c, lvl, s, v, sup, d in rows],
        columns=verdicts.COLUMNS,
    )


def test_qualitative_claims_verdicts():
    t = claims_table(
        [
            ("teacher_leaks_more_than_students", "summary", "gpt2", 0.9, True, "ok"),
            ("teacher_leaks_more_than_students", "summary", "opt", 0.8, True, "ok"),
            ("kd_leaks_more_than_nokd", "summary", "gpt2", 0.9, True, "ok"),
            ("kd_leaks_more_than_nokd", "summary", "opt", 0.2, False, "no"),
            ("larger_students_leak_more", "summary", "gpt2", math.nan, None, "one base"),
            ("memorization_gap_positive", "cell", "gpt2/teacher", 0.05, True, ""),
            ("memorization_gap_positive", "cell", "gpt2/kd-m", 0.01, False, ""),
        ]
    )
    out = paper.qualitative_claims(t).set_index("claim")
    assert list(out.columns[:3]) == ["section", "paper_claim", "findings"]
    assert (
        out.loc["teachers_leak_most", "supported"] is True
        and out.loc["teachers_leak_most", "n_testable"] == 2
    )
    assert out.loc["students_inherit_risk", "supported"] is False
    assert out.loc["larger_students_leak_more", "supported"] is None
    assert out.loc["reverse_kl_lowers_risk", "supported"] is None  # no findings rows: not testable
    assert out.loc["small_memorization_gap", "supported"] is True  # the teacher's gap does not count
    big = claims_table([("memorization_gap_positive", "cell", "gpt2/kd-m", 0.03, True, "")])
    assert (
        paper.qualitative_claims(big).set_index("claim").loc["small_memorization_gap", "supported"] is False
    )
    assert len(out) == len(paper.PAPER_CLAIMS)


def test_qualitative_claims_after_csv_round_trip(tmp_path):
    mia = mia_rows([(TEACHER, "loss", 0.9, 0.02), (NOKD, "loss", 0.5, 0.05)])
    t = claims.compute_findings(mia)
    t.to_csv(tmp_path / "f.csv", index=False)
    back = pd.read_csv(tmp_path / "f.csv")
    assert (
        paper.qualitative_claims(back)["supported"].tolist()
        == paper.qualitative_claims(t)["supported"].tolist()
    )
    nokd = paper.qualitative_claims(back).set_index("claim").loc["nokd_at_chance"]
    assert nokd.supported is True


def test_mapping_from_names_exact_only():
    bases = {
        "gpt2": {"teacher": "openai-community/gpt2-xl", "large": "openai-community/gpt2-large", "tiny": None},
        "opt": {"teacher": "facebook/opt-2.7b", "x": "facebook/opt-1.3b-finetuned"},
        "llama": {"teacher": "openlm-research/open_llama_7b"},
    }
    mapping = paper.mapping_from_names(bases)
    assert mapping == {
        "families": {
            "gpt2": {"family": "gpt2", "models": {"teacher": "gpt2-xl", "large": "gpt2-large"}},
            "opt": {"family": "opt", "models": {"teacher": "opt-2.7b"}},
        }
    }


def test_method_names_come_from_the_registry():
    """Every method of kdprivacy.kd.METHODS maps to its paper name, and the paper's table knows each name."""
    from kdprivacy.kd import METHODS

    assert list(paper.METHOD_MAP) == ["teacher", *METHODS]
    assert paper.METHOD_MAP == {"teacher": "teacher", **{n: s.paper_name for n, s in METHODS.items()}}
    assert set(paper.METHOD_MAP.values()) <= set(paper.load_paper_results()["method"])
