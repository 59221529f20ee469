"""Blind baseline: ~0.5 on a random split, clearly above 0.5 on a shifted split; out-of-fold and seeded."""

import numpy as np
import pandas as pd
import pytest

from kdprivacy import data
from kdprivacy.config import Split
from kdprivacy.data.manifest import build_manifest
from kdprivacy.data.synthetic import generate_synthetic
from kdprivacy.mia import blind, metrics, scoring
from kdprivacy.stats import Bootstrap

SPLIT = Split(seed=0, nonmember=300, dev=20, private=300, public=40)


@pytest.fixture(scope="module")
def manifest():
    return build_manifest(generate_synthetic(800, seed=5), SPLIT)


def test_random_split_is_near_chance(manifest):
    evaluation = scoring.evaluation_set(manifest, None, None, seed=0)
    scores = blind.blind_scores(evaluation, folds=5, seed=0)
    assert scores["id"].tolist() == evaluation["id"].tolist()
    assert scores["score"].notna().all() and set(scores["fold"]) == set(range(5))
    auc = metrics.roc_auc(scores.score, scores.label)
    low, high = metrics.bootstrap_auc_ci(scores.score, scores.label, Bootstrap(n=200, seed=0))
    assert abs(auc - 0.5) < 0.07, auc
    assert low < 0.5 < high
    again = blind.blind_scores(evaluation, folds=5, seed=0)
    pd.testing.assert_frame_equal(scores, again)  # seeded, deterministic


def test_shifted_split_is_detected(manifest):
    # members only from some categories, non-members only from the others: a distribution shift
    risky = {"brainstorming", "creative_writing", "general_qa", "open_qa"}
    evaluation = scoring.evaluation_set(manifest, None, None, seed=0)
    keep = (evaluation.label == 1) == evaluation.category.isin(risky)
    shifted = evaluation[keep].reset_index(drop=True)
    for features in ("tfidf", "hashing"):
        scores = blind.blind_scores(shifted, folds=5, seed=1, features=features)
        auc = metrics.roc_auc(scores.score, scores.label)
        assert auc > 0.9, (features, auc)
        assert (blind.fold_aucs(scores) > 0.8).all()


def test_texts_and_errors(manifest):
    frame = pd.DataFrame(
        {
            "id": ["a", "b"],
            "label": [1, 0],
            "instruction": ["x", "y"],
            "context": ["", None],
            "response": ["r1", "r2"],
        }
    )
    assert blind.example_texts(frame) == ["x\n\nr1", "y\n\nr2"]
    assert blind.example_texts(frame, ["response"]) == ["r1", "r2"]
    with pytest.raises(ValueError, match="lacks field"):
        blind.example_texts(frame, ["category"])
    with pytest.raises(ValueError, match="folds"):
        blind.blind_scores(frame, folds=2)
    with pytest.raises(ValueError, match="unknown blind features"):
        evaluation = scoring.evaluation_set(manifest, 20, 20, seed=0)
        blind.blind_scores(evaluation, folds=2, features="bert")


def test_out_of_fold_scores_never_see_their_example():
    # duplicated texts with opposite labels inside one fold would be memorized in-sample; out of fold,
    # a unique marker word carries no signal: its example is scored by a model that never saw it
    rng = np.random.default_rng(0)
    n = 60
    frame = pd.DataFrame(
        {
            "id": [f"i{i}" for i in range(n)],
            "label": np.r_[np.ones(n // 2), np.zeros(n // 2)].astype(int),
            "instruction": [f"marker{i} common words here" for i in range(n)],
            "context": "",
            "response": ["same answer"] * n,
        }
    )
    frame = frame.sample(frac=1.0, random_state=int(rng.integers(1000))).reset_index(drop=True)
    scores = blind.blind_scores(frame, folds=3, seed=0)
    assert abs(metrics.roc_auc(scores.score, scores.label) - 0.5) < 0.25


def test_blind_baseline_script(tmp_path, manifest):
    import runpy
    import types
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    path = tmp_path / "manifest.parquet"
    manifest.to_parquet(path, index=False)
    cfg = {
        "max_members": 100,
        "max_nonmembers": 120,
        "sample_seed": 0,
        "folds": 4,
        "seed": 0,
        "features": "hashing",
        "ngram_max": 2,
        "C": 1.0,
        "fprs": [0.05, 0.01],
        "n_bootstrap": 20,
        "bootstrap_seed": 0,
    }
    inputs = {"manifest": str(path)}
    outputs = {
        "scores": str(tmp_path / "blind.parquet"),
        "metrics": str(tmp_path / "blind.csv"),
        "per_category": str(tmp_path / "blind_cat.csv"),
    }
    smk = types.SimpleNamespace(
        scriptdir=str(repo / "scripts"),
        params=types.SimpleNamespace(cfg=cfg, code="test"),
        input=types.SimpleNamespace(**inputs, items=lambda: inputs.items()),
        output=types.SimpleNamespace(**outputs, items=lambda: outputs.items()),
        log=[],
        threads=1,
        rule="blind",
    )
    runpy.run_path(
        str(repo / "scripts" / "blind_baseline.py"), init_globals={"snakemake": smk}, run_name="__main__"
    )
    scores = pd.read_parquet(outputs["scores"])
    assert scores.columns.tolist() == ["id", "label", "category", "fold", "attack", "score"]
    assert len(scores) == 220 and scores.label.sum() == 100
    summary = pd.read_csv(outputs["metrics"])
    assert summary.attack.tolist() == ["blind"] and summary.n_nonmembers.item() == 120
    assert summary.auc_ci_low.item() < summary.auc.item() < summary.auc_ci_high.item()
    assert {"fold_auc_mean", "fold_auc_min", "fold_auc_max"} <= set(summary.columns)
    per_category = pd.read_csv(outputs["per_category"])
    assert per_category.n_members.sum() == 100
