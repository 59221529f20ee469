"""Blind baseline: tell members from non-members from the *text alone*, never querying a model.

A bag-of-words classifier (TF-IDF or hashed word n-grams + logistic regression, scikit-learn) is trained to
predict member vs non-member. Every example gets an **out-of-fold** score from seeded stratified K-fold
cross-validation: the classifier that scores an example never saw it, and the TF-IDF vocabulary/weights
are fitted on the training folds only. The score is the classifier's log-odds of "member" (higher =
member, like every attack).

Interpretation (conventions.md, "known trap"): on a random member/non-member split nothing in the text
separates the pools, so the blind AUC sits near 0.5; an AUC clearly above 0.5 means the split itself is
shifted (e.g. members drawn from other categories or periods than non-members), and any model-based
attack's AUC is then partly that shift, not leakage. Out-of-fold scores of different folds come from
different classifiers, so the pooled AUC is slightly pessimistic; :func:`fold_aucs` gives per-fold AUCs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

DEFAULT_FIELDS = ("instruction", "context", "response")
FEATURES = ("tfidf", "hashing")


def example_texts(frame: pd.DataFrame, fields: Sequence[str] = DEFAULT_FIELDS) -> list[str]:
    """One text per row: the chosen fields joined by newlines (missing values as "")."""
    missing = [f for f in fields if f not in frame.columns]
    if missing:
        raise ValueError(f"blind baseline: frame lacks field(s) {missing}")
    if not fields:
        raise ValueError("blind baseline needs at least one text field")
    parts = [frame[f].fillna("").astype(str).tolist() for f in fields]
    return ["\n".join(values) for values in zip(*parts)]


def _pipeline(features: str, ngram_max: int, n_features: int, c: float, seed: int):
    from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer, TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    if features == "tfidf":
        vectorizer = TfidfVectorizer(ngram_range=(1, ngram_max), sublinear_tf=True, lowercase=True)
        steps = [vectorizer]
    elif features == "hashing":
        steps = [
            HashingVectorizer(
                ngram_range=(1, ngram_max), n_features=n_features, alternate_sign=False, norm=None
            ),
            TfidfTransformer(sublinear_tf=True),
        ]
    else:
        raise ValueError(f"unknown blind features {features!r}; choose one of {list(FEATURES)}")
    classifier = LogisticRegression(C=c, max_iter=2000, class_weight="balanced", random_state=seed)
    return make_pipeline(*steps, classifier)


def blind_scores(
    frame: pd.DataFrame,
    folds: int = 5,
    seed: int = 0,
    fields: Sequence[str] = DEFAULT_FIELDS,
    features: str = "tfidf",
    ngram_max: int = 2,
    n_features: int = 2**18,
    c: float = 1.0,
) -> pd.DataFrame:
    """``id, label, fold, score``: out-of-fold member log-odds for every row of ``frame``.

    ``frame`` needs ``id``, ``label`` (1 member, 0 non-member) and the text ``fields``; rows keep their
    order. Folds: ``StratifiedKFold(folds, shuffle=True, random_state=seed)``.
    """
    from sklearn.model_selection import StratifiedKFold

    for column in ("id", "label"):
        if column not in frame.columns:
            raise ValueError(f"blind baseline: frame lacks column {column!r}")
    if frame["id"].duplicated().any():
        raise ValueError("blind baseline: ids are not unique")
    labels = frame["label"].to_numpy()
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 (non-member) or 1 (member)")
    labels = labels.astype(np.int64)
    smallest = int(min((labels == 1).sum(), (labels == 0).sum()))
    if folds < 2 or folds > smallest:
        raise ValueError(f"folds must be in [2, {smallest}] (the smaller class size), got {folds}")
    if ngram_max < 1:
        raise ValueError("ngram_max must be >= 1")
    texts = np.array(example_texts(frame, fields), dtype=object)
    scores = np.full(len(frame), np.nan)
    fold_of = np.full(len(frame), -1, dtype=np.int64)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fold, (train, test) in enumerate(splitter.split(texts, labels)):
        model = _pipeline(features, ngram_max, n_features, c, seed)
        model.fit(texts[train], labels[train])
        scores[test] = model.decision_function(texts[test])
        fold_of[test] = fold
    return pd.DataFrame({"id": frame["id"].to_numpy(), "label": labels, "fold": fold_of, "score": scores})


def fold_aucs(scores: pd.DataFrame) -> pd.Series:
    """ROC AUC of each fold's out-of-fold scores (index: fold)."""
    from kdprivacy.mia.metrics import roc_auc

    return scores.groupby("fold", sort=True).apply(
        lambda part: roc_auc(part["score"], part["label"]), include_groups=False
    )
