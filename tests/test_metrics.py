import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from kdprivacy.mia import metrics
from kdprivacy.stats import Bootstrap


def tied_data(seed, n=300):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    scores = np.round(rng.normal(size=n) + 0.4 * labels, 1)  # rounding creates many ties
    return scores, labels


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_sklearn_with_ties(seed):
    scores, labels = tied_data(seed)
    assert metrics.roc_auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_roc_curve_matches_sklearn(seed):
    scores, labels = tied_data(seed)
    fpr, tpr, thr = metrics.roc_curve(scores, labels)
    sk_fpr, sk_tpr, sk_thr = sk_roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    np.testing.assert_allclose(thr[1:], sk_thr[1:])
    assert thr[0] == np.inf


def test_auc_below_half_is_not_flipped():
    scores = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    labels = np.array([1, 1, 0, 1, 0, 0])  # members mostly score lower
    auc = metrics.roc_auc(scores, labels)
    assert auc < 0.5
    assert auc == pytest.approx(roc_auc_score(labels, scores))
    assert auc == pytest.approx(1 / 9)


def test_all_tied_is_half():
    assert metrics.roc_auc([1.0] * 6, [1, 0, 1, 0, 1, 0]) == 0.5


def test_tpr_at_fpr_hand_case():
    # 100 non-members 0..99 (scores 0.00..0.99), 4 members at 0.995, 0.985, 0.5, 0.1.
    nonmembers = np.arange(100) / 100.0
    members = np.array([0.995, 0.985, 0.5, 0.1])
    scores = np.r_[members, nonmembers]
    labels = np.r_[np.ones(4), np.zeros(100)]
    # Threshold 0.985 flags one non-member (0.99; FPR 1/100) and members 0.995, 0.985 -> TPR 0.5;
    # the next threshold (0.98) would reach FPR 2/100.
    assert metrics.tpr_at_fpr(scores, labels, 0.01) == pytest.approx(0.5)
    # FPR <= 2%: threshold 0.98 adds non-member 0.98 -> still 2 members.
    assert metrics.tpr_at_fpr(scores, labels, 0.02) == pytest.approx(0.5)
    # FPR 0.1% needs >= 1000 non-members: not resolvable with 100.
    assert math.isnan(metrics.tpr_at_fpr(scores, labels, 0.001))


def test_tpr_at_fpr_nan_threshold_boundary():
    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(50), np.zeros(1000)]
    scores = rng.normal(size=1050)
    assert not math.isnan(metrics.tpr_at_fpr(scores, labels, 0.001))  # exactly 1/fpr non-members
    assert math.isnan(metrics.tpr_at_fpr(scores[1:], labels[1:], 0.0005))
    assert math.isnan(metrics.tpr_at_fpr(scores[:-1], labels[:-1], 0.001))  # 999 < 1000


def test_tpr_at_fpr_matches_sklearn_curve():
    scores, labels = tied_data(7, n=2000)
    sk_fpr, sk_tpr, _ = sk_roc_curve(labels, scores, drop_intermediate=False)
    expected = sk_tpr[sk_fpr <= 0.01].max()
    assert metrics.tpr_at_fpr(scores, labels, 0.01) == pytest.approx(expected)


def test_errors():
    with pytest.raises(ValueError, match="NaN"):
        metrics.roc_auc([0.1, math.nan], [1, 0])
    with pytest.raises(ValueError, match="member"):
        metrics.roc_auc([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="labels"):
        metrics.roc_auc([0.1, 0.2], [1, 2])


def test_bootstrap_ci_deterministic_and_brackets():
    scores, labels = tied_data(3, n=400)
    a = metrics.bootstrap_auc_ci(scores, labels, Bootstrap(n=200, seed=1))
    b = metrics.bootstrap_auc_ci(scores, labels, Bootstrap(n=200, seed=1))
    assert a == b
    assert a[0] < metrics.roc_auc(scores, labels) < a[1]
    assert a != metrics.bootstrap_auc_ci(scores, labels, Bootstrap(n=200, seed=2))


def test_summarize_attacks():
    scores, labels = tied_data(4, n=300)
    ids = [f"x{i}" for i in range(300)]
    frame = pd.concat(
        [
            pd.DataFrame({"id": ids, "attack": "loss", "score": scores, "label": labels}),
            pd.DataFrame({"id": ids, "attack": "neg", "score": -scores, "label": labels}),
        ]
    )
    out = metrics.summarize_attacks(frame, fprs=(0.01, 0.001), bootstrap=Bootstrap(n=50, seed=0))
    assert list(out.columns) == [
        "attack",
        "auc",
        "auc_ci_low",
        "auc_ci_high",
        "tpr_at_fpr_0.01",
        "tpr_at_fpr_0.01_ci_low",
        "tpr_at_fpr_0.01_ci_high",
        "tpr_at_fpr_0.001",
        "tpr_at_fpr_0.001_ci_low",
        "tpr_at_fpr_0.001_ci_high",
        "n_members",
        "n_nonmembers",
        "n_short",
    ]
    assert out["tpr_at_fpr_0.001_ci_low"].isna().all()  # unresolvable TPR: its CI is NaN too
    assert (out["tpr_at_fpr_0.01_ci_low"] <= out["tpr_at_fpr_0.01"]).all()
    assert (out["tpr_at_fpr_0.01"] <= out["tpr_at_fpr_0.01_ci_high"]).all()
    assert out.n_short.isna().all()  # no "short" column given
    assert out.attack.tolist() == ["loss", "neg"]
    auc = roc_auc_score(labels, scores)
    assert out.auc.tolist() == pytest.approx([auc, 1 - auc])  # the "neg" attack stays below 0.5
    assert out["tpr_at_fpr_0.001"].isna().all()  # ~150 non-members < 1000
    assert (labels == 0).sum() >= 100 and out["tpr_at_fpr_0.01"].notna().all()
    assert out.n_members.tolist() == [int(labels.sum())] * 2
    assert out.n_nonmembers.tolist() == [int((labels == 0).sum())] * 2
    no_ci = metrics.summarize_attacks(frame)
    assert no_ci.auc_ci_low.isna().all()


def test_summarize_refuses_different_examples_per_attack():
    frame = pd.DataFrame(
        {
            "id": ["a", "b", "a", "c"],
            "attack": ["loss", "loss", "zlib", "zlib"],
            "score": [1, 2, 1, 2],
            "label": [1, 0, 1, 0],
        }
    )
    with pytest.raises(ValueError, match="different examples"):
        metrics.summarize_attacks(frame)


# ------------------------------------------------------------------------------ bootstrap, TPR CIs, ROC
def _naive_replicates(scores, labels, fprs, n_boot, seed):
    """Resample explicitly with the documented draws and recompute every metric from scratch."""
    scores, labels = np.asarray(scores, float), np.asarray(labels)
    members, nonmembers = scores[labels == 1], scores[labels == 0]
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_boot):
        s = np.r_[
            members[rng.integers(0, members.size, members.size)],
            nonmembers[rng.integers(0, nonmembers.size, nonmembers.size)],
        ]
        y = np.r_[np.ones(members.size), np.zeros(nonmembers.size)]
        out.append([roc_auc_score(y, s), *[metrics.tpr_at_fpr(s, y, f) for f in fprs]])
    return np.array(out)


def test_bootstrap_replicates_equal_explicit_resampling():
    scores, labels = tied_data(11, n=400)
    fprs = (0.05, 0.01, 0.001)
    fast = metrics.bootstrap_replicates(scores, labels, fprs, n_boot=30, seed=4)
    naive = _naive_replicates(scores, labels, fprs, 30, 4)
    np.testing.assert_allclose(fast[:, :3], naive[:, :3], atol=1e-12)
    assert np.isnan(fast[:, 3]).all() and np.isnan(naive[:, 3]).all()  # ~200 non-members < 1000


def test_bootstrap_cis_for_auc_and_tprs():
    rng = np.random.default_rng(1)
    labels = np.r_[np.ones(300), np.zeros(1200)].astype(int)
    scores = rng.normal(size=1500) + 0.8 * labels
    cis = metrics.bootstrap_cis(scores, labels, (0.05, 0.01, 0.001), Bootstrap(n=100, seed=0))
    assert set(cis) == {"auc", "tpr_at_fpr_0.05", "tpr_at_fpr_0.01", "tpr_at_fpr_0.001"}
    for key, (low, high) in cis.items():
        point = (
            metrics.roc_auc(scores, labels)
            if key == "auc"
            else metrics.tpr_at_fpr(scores, labels, float(key[11:]))
        )
        assert low <= point <= high, key
    assert cis == metrics.bootstrap_cis(scores, labels, (0.05, 0.01, 0.001), Bootstrap(n=100, seed=0))
    assert metrics.bootstrap_auc_ci(scores, labels, Bootstrap(100, 0)) == cis["auc"]
    small = metrics.bootstrap_cis(scores[:400], labels[:400], (0.01,), Bootstrap(n=20))  # 100 non-members: ok
    assert not math.isnan(small["tpr_at_fpr_0.01"][0])
    tiny = metrics.bootstrap_cis(scores[:399], labels[:399], (0.01,), Bootstrap(n=20))  # 99 non-members: NaN
    assert all(math.isnan(v) for v in tiny["tpr_at_fpr_0.01"])


def test_auc_below_half_stays_below_with_ci():
    rng = np.random.default_rng(2)
    labels = np.r_[np.ones(200), np.zeros(200)].astype(int)
    scores = rng.normal(size=400) - 1.0 * labels  # members score *lower*
    frame = pd.DataFrame({"id": range(400), "attack": "inverted", "score": scores, "label": labels})
    row = metrics.summarize_attacks(frame, fprs=(0.05,), bootstrap=Bootstrap(n=200)).iloc[0]
    assert row.auc == pytest.approx(roc_auc_score(labels, scores))
    assert row.auc < 0.3 and row.auc_ci_high < 0.5


@pytest.mark.parametrize("n", [40, 3000])
def test_roc_points_thinned_vertices(n):
    rng = np.random.default_rng(n)
    labels = rng.integers(0, 2, n)
    scores = rng.normal(size=n) + labels
    full_fpr, full_tpr, _ = sk_roc_curve(labels, scores, drop_intermediate=False)
    points = metrics.roc_points(scores, labels, max_points=100)
    assert list(points.columns) == ["fpr", "tpr", "threshold"]
    assert len(points) <= 100
    assert (points.fpr.iloc[0], points.tpr.iloc[0]) == (0.0, 0.0)
    assert (points.fpr.iloc[-1], points.tpr.iloc[-1]) == (1.0, 1.0)
    assert points.fpr.is_monotonic_increasing and points.tpr.is_monotonic_increasing
    vertices = set(zip(np.round(full_fpr, 12), np.round(full_tpr, 12)))
    assert set(zip(np.round(points.fpr, 12), np.round(points.tpr, 12))) <= vertices
    if n == 40:
        assert len(points) == len(full_fpr)  # small curves are kept whole
    else:
        n0 = int((labels == 0).sum())
        for f in (1 / n0, 2 / n0, 0.001, 0.01, 0.1, 0.5):
            read = points.tpr[points.fpr <= f + 1e-12].max()
            exact = full_tpr[full_fpr <= f + 1e-12].max()
            assert read <= exact  # thinning never overstates a TPR
            if f in (1 / n0, 0.5):  # grid values (geometric grid starts at 1/n0; linear grid holds 0.5)
                assert read == exact
        # the low-FPR end is resolved: several points below 1% FPR for log-log plots
        assert (points.fpr.between(1e-9, 0.01)).sum() >= 10


# ----------------------------------------------------------------------------------- paired bootstrap
def test_paired_bootstrap_identical_methods():
    scores, labels = tied_data(5, n=200)
    out = metrics.paired_bootstrap(scores, scores, labels, Bootstrap(n=100, seed=0))
    assert out["auc_diff"] == 0 and out["auc_diff_ci_low"] == 0 and out["auc_diff_ci_high"] == 0
    assert out["auc_diff_p"] == 1.0
    assert out["auc_a"] == out["auc_b"] == pytest.approx(roc_auc_score(labels, scores))


def test_paired_bootstrap_hand_case_and_replicates():
    # A separates perfectly, B is the reverse: AUC 1 vs 0 on every replicate.
    labels = np.array([1, 1, 1, 0, 0, 0])
    a = np.array([6.0, 5.0, 4.0, 3.0, 2.0, 1.0])
    out = metrics.paired_bootstrap(a, -a, labels, Bootstrap(n=50, seed=0))
    assert (out["auc_a"], out["auc_b"], out["auc_diff"]) == (1.0, 0.0, 1.0)
    assert (out["auc_diff_ci_low"], out["auc_diff_ci_high"]) == (1.0, 1.0)
    assert out["auc_diff_p"] == 0.0
    assert (out["n_members"], out["n_nonmembers"]) == (3, 3)
    # The paired replicates are the differences of the per-method replicates under the same draws.
    scores, labels = tied_data(6, n=300)
    b = scores + np.random.default_rng(0).normal(scale=0.5, size=scores.size)
    out = metrics.paired_bootstrap(scores, b, labels, Bootstrap(n=200, seed=3))
    diffs = (
        metrics.bootstrap_replicates(scores, labels, (), 200, 3)
        - metrics.bootstrap_replicates(b, labels, (), 200, 3)
    )[:, 0]
    assert (out["auc_diff_ci_low"], out["auc_diff_ci_high"]) == pytest.approx(
        tuple(np.quantile(diffs, [0.025, 0.975]))
    )
    assert out["auc_diff_p"] == pytest.approx(min(1, 2 * min((diffs <= 0).mean(), (diffs >= 0).mean())))
    # pairing removes the shared example noise: the CI of the difference is narrower than the
    # two marginal CIs would suggest
    ci_a = metrics.bootstrap_auc_ci(scores, labels, Bootstrap(200, 3))
    assert out["auc_diff_ci_high"] - out["auc_diff_ci_low"] < 2 * (ci_a[1] - ci_a[0])


def test_paired_differences_tables():
    ids = ["a", "b", "c", "d"]
    left = pd.DataFrame(
        {
            "id": ids * 2,
            "attack": ["loss"] * 4 + ["mope"] * 4,
            "score": [4, 3, 2, 1, 1, 2, 3, 4],
            "label": [1, 1, 0, 0] * 2,
        }
    )
    right = pd.DataFrame(
        {"id": ids[::-1], "attack": "loss", "score": [1.0, 2.0, 3.0, 4.0][::-1], "label": [0, 0, 1, 1]}
    )
    out = metrics.paired_differences(left, right, Bootstrap(n=20), fprs=(0.5,))
    assert out.attack.tolist() == ["loss"]  # mope only on one side: skipped
    assert out.auc_a.item() == 1.0 and out.auc_b.item() == 0.0 and out.auc_diff.item() == 1.0
    assert "tpr_at_fpr_0.5_diff" in out.columns
    with pytest.raises(ValueError, match="different examples"):
        metrics.paired_differences(left, right.iloc[:3], Bootstrap(n=5))
    with pytest.raises(ValueError, match="labels disagree"):
        metrics.paired_differences(left, right.assign(label=[1, 0, 1, 0]), Bootstrap(n=5))


# ------------------------------------------------------------------------------------------ categories
def test_summarize_by_category_hand_case():
    frame = pd.DataFrame(
        {
            "id": list("abcdefgh"),
            "attack": "loss",
            "category": ["x"] * 4 + ["y"] * 2 + ["z"] * 2,
            "score": [0.9, 0.1, 0.5, 0.2, 0.7, 0.3, 0.6, 0.4],
            "label": [1, 1, 0, 0, 1, 0, 1, 1],
            "short": [True, False, False, False, False, False, True, True],
        }
    )
    both = pd.concat([frame, frame.assign(attack="neg", score=-frame.score)], ignore_index=True)
    out = metrics.summarize_by_category(both, fprs=(0.5,), bootstrap=Bootstrap(n=20))
    assert out[["attack", "category"]].values.tolist() == [
        ["loss", "x"],
        ["loss", "y"],
        ["loss", "z"],
        ["neg", "x"],
        ["neg", "y"],
        ["neg", "z"],
    ]
    x = out.iloc[0]
    assert x.auc == pytest.approx(roc_auc_score([1, 1, 0, 0], [0.9, 0.1, 0.5, 0.2])) == 0.5
    assert (x.n_members, x.n_nonmembers, x.n_short) == (2, 2, 1)
    assert x["tpr_at_fpr_0.5"] == 0.5  # 2 non-members >= 1/0.5
    assert out.iloc[1].auc == 1.0 and out.iloc[4].auc == 0.0  # the neg attack stays at 0
    z = out.iloc[2]  # members only: kept with NaN metrics and its counts
    assert math.isnan(z.auc) and math.isnan(z.auc_ci_low)
    assert (z.n_members, z.n_nonmembers, z.n_short) == (2, 0, 2)
    assert list(out.columns[:5]) == ["attack", "category", "auc", "auc_ci_low", "auc_ci_high"]


# --------------------------------------------------------------------------------------- seed pooling
def test_pool_seeds():
    table = pd.DataFrame(
        {
            "model": ["kd", "kd", "kd", "nokd"],
            "attack": "loss",
            "seed": [0, 1, 2, 0],
            "auc": [0.6, 0.7, 0.8, 0.5],
            "tpr": [0.1, np.nan, 0.2, 0.0],
        }
    )
    out = metrics.pool_seeds(table, ["model", "attack"], ["auc", "tpr"])
    assert out.columns.tolist() == [
        "model",
        "attack",
        "seed",
        "n_seeds",
        "auc",
        "auc_std",
        "auc_min",
        "auc_max",
        "tpr",
        "tpr_std",
        "tpr_min",
        "tpr_max",
    ]
    assert out.seed.tolist() == ["0", "1", "2", "pooled", "0", "pooled"]
    kd = out[(out.model == "kd") & (out.seed == "pooled")].iloc[0]
    assert kd.n_seeds == 3
    assert kd.auc == pytest.approx(0.7) and kd.auc_std == pytest.approx(0.1)
    assert (kd.auc_min, kd.auc_max) == (0.6, 0.8)
    assert math.isnan(kd.tpr)  # a NaN seed is not silently skipped
    nokd = out[(out.model == "nokd") & (out.seed == "pooled")].iloc[0]
    assert nokd.auc == 0.5 and math.isnan(nokd.auc_std)  # one seed: no spread
    per_seed = out[out.seed == "1"].iloc[0]
    assert per_seed.auc == 0.7 and math.isnan(per_seed.auc_std)
    only = metrics.pool_seeds(table, ["model", "attack"], ["auc"], include_seeds=False)
    assert only.seed.tolist() == ["pooled", "pooled"]
    with pytest.raises(ValueError, match="twice"):
        metrics.pool_seeds(pd.concat([table, table]), ["model", "attack"], ["auc"])


def test_comparison_pairs():
    def m(model, role, method, base, seed=0, family="gpt2"):
        return {"family": family, "seed": seed, "model": model, "role": role, "method": method, "base": base}

    models = [
        m("teacher", "teacher", "teacher", "big"),
        m("nokd-small", "student", "nokd", "small"),
        m("nokd-mid", "student", "nokd", "mid"),
        m("kd-small", "student", "kd", "small"),
        m("kd-tiny", "student", "kd", "tiny"),
        m("teacher", "teacher", "teacher", "big", seed=1),
        m("kd-small", "student", "kd", "small", seed=1),
    ]
    pairs = [(a["model"], a["seed"], b["model"], kind) for a, b, kind in metrics.comparison_pairs(models)]
    assert pairs == [
        ("nokd-small", 0, "teacher", "teacher"),
        ("nokd-mid", 0, "teacher", "teacher"),
        ("kd-small", 0, "teacher", "teacher"),
        ("kd-small", 0, "nokd-small", "nokd"),
        ("kd-tiny", 0, "teacher", "teacher"),
        ("kd-tiny", 0, "nokd-small", "nokd"),
        ("kd-tiny", 0, "nokd-mid", "nokd"),
        ("kd-small", 1, "teacher", "teacher"),  # seed 1 has no No-KD student
    ]


def test_aggregate_script(tmp_path):
    import runpy
    import types
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    rng = np.random.default_rng(0)
    ids = [f"e{i}" for i in range(80)]
    labels = np.r_[np.ones(40), np.zeros(40)].astype(int)
    specs, inputs = [], {"metrics": [], "memorization": [], "per_category": [], "per_example": []}
    for seed in (0, 1):
        for model, role, method, strength in (
            ("teacher", "teacher", "teacher", 2.0),
            ("nokd-small", "student", "nokd", 0.0),
            ("kd-small", "student", "kd", 0.7),
        ):
            specs.append(
                {
                    "family": "gpt2",
                    "seed": seed,
                    "model": model,
                    "role": role,
                    "method": method,
                    "base": "small",
                }
            )
            frames = []
            for attack in ("loss", "zlib"):
                score = rng.normal(size=80) + strength * labels
                frames.append(
                    pd.DataFrame(
                        {
                            "id": ids,
                            "label": labels,
                            "category": np.where(np.arange(80) % 2, "a", "b"),
                            "attack": attack,
                            "score": score,
                            "short": False,
                        }
                    )
                )
            per_example = pd.concat(frames, ignore_index=True)
            stem = tmp_path / f"{seed}_{model}"
            per_example.to_parquet(f"{stem}.parquet")
            metrics.summarize_attacks(per_example, fprs=(0.05,), bootstrap=Bootstrap(n=10)).to_csv(
                f"{stem}.csv", index=False
            )
            metrics.summarize_by_category(per_example, fprs=(0.05,)).to_csv(f"{stem}.cat.csv", index=False)
            pd.DataFrame(
                {"label": labels, "match_rate": rng.random(80), "exact_k": rng.random(80) < 0.1}
            ).to_parquet(f"{stem}.mem.parquet")
            inputs["metrics"].append(f"{stem}.csv")
            inputs["memorization"].append(f"{stem}.mem.parquet")
            inputs["per_category"].append(f"{stem}.cat.csv")
            inputs["per_example"].append(f"{stem}.parquet")
    from kdprivacy.reporting.tables import AGGREGATED

    outputs = {k: str(tmp_path / f"{k}.csv") for k in AGGREGATED}  # every table the rule declares
    smk = types.SimpleNamespace(
        scriptdir=str(repo / "scripts"),
        params=types.SimpleNamespace(models=specs, cfg={"n_bootstrap": 50, "bootstrap_seed": 0, "best_attack_split_seed": 3},
            code="test",
        ),
        input=types.SimpleNamespace(**inputs, items=lambda: inputs.items()),
        output=types.SimpleNamespace(**outputs, items=lambda: outputs.items()),
        log=[],
        threads=1,
        rule="aggregate",
    )
    runpy.run_path(
        str(repo / "scripts" / "aggregate.py"), init_globals={"snakemake": smk}, run_name="__main__"
    )
    mia = pd.read_csv(outputs["mia"])
    assert len(mia) == 6 * 2 and {"n_short", "tpr_at_fpr_0.05_ci_low"} <= set(mia.columns)
    pooled = pd.read_csv(outputs["mia_pooled"])
    assert len(pooled) == 3 * 2 and (pooled.seed == "pooled").all() and (pooled.n_seeds == 2).all()
    row = pooled[(pooled.model == "kd-small") & (pooled.attack == "loss")].iloc[0]
    per_seed = mia[(mia.model == "kd-small") & (mia.attack == "loss")].auc
    assert row.auc == pytest.approx(per_seed.mean(), abs=1e-6) and row.auc_std == pytest.approx(
        per_seed.std(), abs=1e-5
    )
    category = pd.read_csv(outputs["mia_category"])
    assert len(category) == 6 * 2 * 2 and set(category.category) == {"a", "b"}
    paired = pd.read_csv(outputs["mia_paired"])
    # per seed: nokd-small vs teacher, kd-small vs teacher, kd-small vs nokd-small; 2 attacks each
    assert len(paired) == 2 * 3 * 2
    assert set(zip(paired.model, paired.comparator, paired.comparison)) == {
        ("nokd-small", "teacher", "teacher"),
        ("kd-small", "teacher", "teacher"),
        ("kd-small", "nokd-small", "nokd"),
    }
    assert (paired.auc_diff - (paired.auc_model - paired.auc_comparator)).abs().max() < 1e-5
    teacher_gap = paired[paired.comparator == "teacher"]
    assert (teacher_gap.auc_diff < 0).all() and (teacher_gap.auc_diff_ci_high < 0).all()
    assert paired.auc_diff_p.between(0, 1).all()
    paired_pooled = pd.read_csv(outputs["mia_paired_pooled"])
    assert len(paired_pooled) == 3 * 2 and (paired_pooled.n_seeds == 2).all()
    assert {"auc_diff", "auc_diff_std", "auc_diff_min", "auc_diff_max"} <= set(paired_pooled.columns)
    split = pd.read_csv(outputs["mia_split"])  # per model, seed and attack: AUC on each half
    assert len(split) == 6 * 2 and (split.n_members_selection + split.n_members_report == 40).all()
    assert (split.auc_all - mia.auc).abs().max() < 1e-6  # all examples: the mia.csv AUC
    best = pd.read_csv(outputs["mia_best_attack"])  # per model pooled over seeds: held-out best attack
    assert len(best) == 3 and (best.n_seeds == 2).all() and (best.n_attacks == 2).all()
    assert (best.split_seed == 3).all() and set(best.best_attack) <= {"loss", "zlib"}
    for r in best.itertuples():
        rows = split[(split.model == r.model) & (split.attack == r.best_attack)]
        assert r.auc == pytest.approx(rows.auc_report.mean()) and r.ci_low <= r.auc <= r.ci_high
    assert best.set_index("model").auc["teacher"] > 0.8
