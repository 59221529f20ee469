import math

import numpy as np
import pandas as pd
import pytest

from kdprivacy.memorization import inheritance
from kdprivacy.stats import NO_BOOTSTRAP, Bootstrap


def hand_tables():
    """6 members, 4 non-members; teacher and student match rates chosen for countable overlaps."""
    ids = [f"e{i}" for i in range(10)]
    label = [1] * 6 + [0] * 4
    teacher = pd.DataFrame({
        "id": ids, "label": label,
        "match_rate": [1.0, 0.9, 0.8, 0.6, 0.2, 0.0, 0.7, 0.1, 0.0, 0.0],
        "exact_k": [True, False, False, False, False, False, False, False, False, False],
        "secret_in_prompt": pd.array([False, False, True, False, False, pd.NA, False, False, False, False],
                                     dtype="boolean"),
        "secret_hit": pd.array([True, True, True, False, False, pd.NA, False, False, False, False],
                               dtype="boolean"),
    })
    student = pd.DataFrame({
        "id": ids, "label": label,
        "match_rate": [0.9, 0.1, 0.5, 0.3, 0.7, 0.0, 0.6, 0.2, 0.0, 0.0],
        "exact_k": [True, False, False, False, False, False, False, False, False, False],
        "secret_in_prompt": teacher["secret_in_prompt"],
        "secret_hit": pd.array([True, False, True, True, False, pd.NA, False, False, False, False],
                               dtype="boolean"),
    }).iloc[::-1].reset_index(drop=True)  # row order must not matter
    return teacher, student


def test_counts_at_threshold_hand_made():
    teacher, student = hand_tables()
    table = inheritance.inheritance_table(teacher, student, thresholds=[0.5], bootstrap=Bootstrap(n=100))
    assert list(table.columns) == inheritance.INHERITANCE_COLUMNS
    row = table.query("metric == 'match_rate' and group == 'member'").iloc[0]
    # members e0..e5: teacher >= 0.5 on e0 e1 e2 e3; student >= 0.5 on e0 (0.9), e2 (0.5), e4 (0.7)
    assert row.threshold == 0.5 and row.n == 6
    assert (row.n_teacher, row.n_student, row.both, row.teacher_only, row.student_only, row.neither) == (
        4, 3, 2, 2, 1, 1)
    assert row.p_student_given_teacher == pytest.approx(0.5)
    assert row.p_student_given_not_teacher == pytest.approx(0.5)
    assert row.student_rate_given_teacher == pytest.approx((0.9 + 0.1 + 0.5 + 0.3) / 4)
    assert row.teacher_rate_given_teacher == pytest.approx((1.0 + 0.9 + 0.8 + 0.6) / 4)
    assert row.student_rate == pytest.approx((0.9 + 0.1 + 0.5 + 0.3 + 0.7 + 0.0) / 6)
    assert row.student_rate_given_teacher_ci_low <= row.student_rate_given_teacher <= (
        row.student_rate_given_teacher_ci_high)
    nm = table.query("metric == 'match_rate' and group == 'nonmember'").iloc[0]
    # non-members e6..e9: teacher e6 (0.7); student e6 (0.6)
    assert (nm.n, nm.n_teacher, nm.n_student, nm.both, nm.teacher_only, nm.student_only, nm.neither) == (
        4, 1, 1, 1, 0, 0, 3)


def test_strict_comparison_leaves_out_a_value_at_the_threshold():
    """The authors' ``>`` (protocol paper): the student's e2 at exactly 0.5 is no longer memorized at 0.5."""
    teacher, student = hand_tables()
    rows = {c: inheritance.inheritance_table(teacher, student, thresholds=[0.5], bootstrap=NO_BOOTSTRAP,
                                             comparison=c).query("metric == 'match_rate' and group == 'member'")
            .iloc[0] for c in (">=", ">")}
    counts = ("n_teacher", "n_student", "both", "teacher_only", "student_only", "neither")
    assert tuple(rows[">="][c] for c in counts) == (4, 3, 2, 2, 1, 1)
    # teacher > 0.5: e0 e1 e2 e3 (unchanged); student > 0.5: e0 (0.9), e4 (0.7)
    assert tuple(rows[">"][c] for c in counts) == (4, 2, 1, 3, 1, 1)
    assert rows[">"].p_student_given_teacher == pytest.approx(0.25)
    with pytest.raises(ValueError, match="comparison"):
        inheritance.inheritance_table(teacher, student, thresholds=[0.5], comparison="gt")


def test_binary_metric_and_secret_subset():
    teacher, student = hand_tables()
    table = inheritance.inheritance_table(teacher, student, thresholds=[0.5], bootstrap=NO_BOOTSTRAP)
    exact = table.query("metric == 'exact_k' and group == 'member'").iloc[0]
    assert math.isnan(exact.threshold)
    assert (exact.n_teacher, exact.n_student, exact.both) == (1, 1, 1)
    secret = table.query("metric == 'secret_hit' and group == 'member'").iloc[0]
    # learnable (not in prompt): e0 e1 e3 e4 (e2 in prompt, e5 unknown)
    assert secret.n == 4
    assert (secret.both, secret.teacher_only, secret.student_only, secret.neither) == (1, 1, 1, 1)
    # a secret truncated out of the teacher's reference is not learnable: e1 leaves the count
    teacher["secret_in_reference"] = pd.array([True, False] + [True] * 8, dtype="boolean")
    table = inheritance.inheritance_table(teacher, student, thresholds=[0.5], bootstrap=NO_BOOTSTRAP)
    secret = table.query("metric == 'secret_hit' and group == 'member'").iloc[0]
    assert (secret.n, secret.both, secret.teacher_only) == (3, 1, 0)
    assert math.isnan(secret.student_rate_given_teacher_ci_low)  # no bootstrap


def test_paper_variant_thresholds():
    teacher, student = hand_tables()
    table = inheritance.inheritance_table(teacher, student, metric_names=["match_rate"],
                                          bootstrap=NO_BOOTSTRAP)
    members = table[table.group == "member"].set_index("threshold")
    assert list(members.index) == list(inheritance.DEFAULT_THRESHOLDS)
    assert members.n_teacher.tolist() == [4, 3, 2, 1]  # teacher >= 0.5, 0.75, 0.9, 0.9999
    assert members.student_rate_given_teacher.tolist() == pytest.approx([0.45, 0.5, 0.5, 0.9])
    assert members.loc[0.9999, "student_rate_given_teacher"] == pytest.approx(0.9)


def test_empty_selection_is_nan_not_error():
    teacher, student = hand_tables()
    teacher["match_rate"] = 0.0
    table = inheritance.inheritance_table(teacher, student, thresholds=[0.5], metric_names=["match_rate"])
    assert (table.n_teacher == 0).all() and table.student_rate_given_teacher.isna().all()


def test_mismatched_tables_are_errors():
    teacher, student = hand_tables()
    with pytest.raises(ValueError, match="different examples"):
        inheritance.inheritance_table(teacher, student.iloc[1:])
    flipped = student.assign(label=1 - student.label)
    with pytest.raises(ValueError, match="labels"):
        inheritance.inheritance_table(teacher, flipped)
    with pytest.raises(ValueError, match="unknown metric"):
        inheritance.inheritance_table(teacher, student, metric_names=["bogus"])


# ------------------------------------------------------------------------------------ correlation
def test_spearman_kendall_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = np.round(rng.normal(size=60), 1)  # ties
        y = np.round(x + rng.normal(size=60), 1)
        assert inheritance.spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
        assert inheritance.kendall_tau_b(x, y, chunk=7) == pytest.approx(stats.kendalltau(x, y).statistic,
                                                                        abs=1e-12)
    assert math.isnan(inheritance.spearman([1, 1, 1], [1, 2, 3]))
    assert math.isnan(inheritance.kendall_tau_b([1], [2]))


def test_correlation_sign_constructed():
    n = 40
    ids = [f"e{i}" for i in range(n)]
    mem = pd.DataFrame({"id": ids, "label": [1] * 20 + [0] * 20,
                        "match_rate": np.linspace(0, 1, n), "rouge_l": np.linspace(1, 0, n)})
    scores = pd.concat([
        pd.DataFrame({"id": ids, "attack": "loss", "score": np.arange(n, dtype=float)}),  # agrees with match
        pd.DataFrame({"id": ids[::-1], "attack": "zlib", "score": np.arange(n, dtype=float)}),  # reversed
    ])
    out = inheritance.membership_memorization_correlation(scores, mem)
    assert list(out.columns) == inheritance.CORRELATION_COLUMNS
    assert set(out.metric) == {"match_rate", "rouge_l"}  # exposure absent: skipped
    cell = out.set_index(["attack", "metric", "group"])
    assert cell.loc[("loss", "match_rate", "all"), "spearman"] == pytest.approx(1.0)
    assert cell.loc[("loss", "match_rate", "all"), "kendall"] == pytest.approx(1.0)
    assert cell.loc[("loss", "rouge_l", "all"), "spearman"] == pytest.approx(-1.0)
    assert cell.loc[("zlib", "match_rate", "member"), "spearman"] == pytest.approx(-1.0)
    assert cell.loc[("zlib", "match_rate", "member"), "n"] == 20
    assert cell.loc[("loss", "match_rate", "all"), "n"] == n


def test_correlation_noisy_positive_and_nan_handling():
    rng = np.random.default_rng(1)
    n = 200
    ids = [f"e{i}" for i in range(n)]
    memorized = rng.uniform(size=n)
    mem = pd.DataFrame({"id": ids, "label": rng.integers(0, 2, n), "match_rate": memorized,
                        "exposure": np.where(np.arange(n) < 10, np.nan, memorized),
                        "secret_in_prompt": pd.array([False] * (n - 20) + [True] * 20, dtype="boolean")})
    scores = pd.DataFrame({"id": ids, "attack": "loss", "score": memorized + rng.normal(scale=0.3, size=n)})
    out = inheritance.membership_memorization_correlation(scores, mem).set_index(["metric", "group"])
    assert out.loc[("match_rate", "all"), "spearman"] > 0.5
    assert out.loc[("match_rate", "all"), "kendall"] > 0.3
    assert out.loc[("exposure", "all"), "n"] == n - 10 - 20  # NaN and secret-in-prompt rows left out


# ------------------------------------------------------------------------------------ the workflow script
class Named(dict):
    """Stands in for Snakemake's named lists (attribute access, keys(), items())."""

    __getattr__ = dict.__getitem__


@pytest.mark.parametrize("with_teacher_attacks", [False, True])
def test_inheritance_script(tmp_path, with_teacher_attacks):
    import runpy
    from pathlib import Path
    from types import SimpleNamespace

    teacher, student = hand_tables()
    paths = {"teacher": tmp_path / "t.parquet", "student": tmp_path / "s.parquet",
             "student_attacks": tmp_path / "sa.parquet"}
    teacher.to_parquet(paths["teacher"], index=False)
    student.to_parquet(paths["student"], index=False)
    attacks = pd.DataFrame({"id": teacher.id, "label": teacher.label, "category": "x", "attack": "loss",
                            "score": teacher.match_rate})
    attacks.to_parquet(paths["student_attacks"], index=False)
    if with_teacher_attacks:
        paths["teacher_attacks"] = paths["student_attacks"]
    cfg = {"thresholds": [0.5, 0.9], "comparison": ">=", "n_bootstrap": 10, "bootstrap_seed": 0}
    out = {"inheritance": str(tmp_path / "inh.csv"), "correlation": str(tmp_path / "corr.csv")}
    repo = Path(__file__).resolve().parents[1]
    smk = SimpleNamespace(scriptdir=str(repo / "scripts"), params=SimpleNamespace(cfg=cfg, code="c"),
                          input=Named({k: str(v) for k, v in paths.items()}), output=Named(out), log=[],
                          threads=1, rule="inheritance")
    runpy.run_path(str(repo / "scripts" / "inheritance.py"), init_globals={"snakemake": smk}, run_name="__main__")
    table = pd.read_csv(out["inheritance"])
    assert list(table.columns) == inheritance.INHERITANCE_COLUMNS
    assert set(table.query("metric == 'match_rate'").threshold) == {0.5, 0.9}
    corr = pd.read_csv(out["correlation"])
    assert list(corr.columns) == ["model", *inheritance.CORRELATION_COLUMNS]
    assert set(corr.model) == ({"student", "teacher"} if with_teacher_attacks else {"student"})
    teacher_self = corr.query("model == 'teacher' and metric == 'match_rate' and group == 'all'")
    if with_teacher_attacks:
        assert teacher_self.spearman.item() == pytest.approx(1.0)  # scores are the teacher's match rates


def test_correlation_uses_the_memorization_subsample():
    """Memorization may score fewer examples than the attacks; the join keeps the memorized ones."""
    attacked = pd.DataFrame({"id": list("abcdef"), "attack": "loss", "score": [6, 5, 4, 3, 2, 1.0]})
    memorized = pd.DataFrame({"id": list("abc"), "label": [1, 1, 0], "match_rate": [0.9, 0.5, 0.1]})
    table = inheritance.membership_memorization_correlation(attacked, memorized, metric_names=["match_rate"],
                                                            groups=["all"])
    assert table["n"].item() == 3 and table["spearman"].item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="never attacked"):
        inheritance.membership_memorization_correlation(attacked[attacked.id != "a"], memorized,
                                                        metric_names=["match_rate"])
