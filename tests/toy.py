"""Tiny word-list datasets and tokenizers shared by the training-side tests (imported as ``toy``).

Each test module keeps its own pool sizes and lengths; the generator is one function so that the data of
every module is built the same way (same RNG call order as the per-module copies it replaced).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

import pandas as pd

from kdprivacy import models

WORDS = "river stone apple quiet lamp orbit violet seven marble cloud tiger paper honey window maple".split()


def manifest(
    pool_sizes: Mapping[str, int],
    seed: int = 0,
    response_words: tuple[int, int] = (5, 8),
    categories: Sequence[str] = ("open_qa",),
    context: bool = True,
) -> pd.DataFrame:
    """A manifest-shaped frame: ``id`` ``<pool>-NNN``, word-list instructions, optional one-line contexts and
    responses of ``response_words`` (inclusive range) words."""
    rng = random.Random(seed)
    rows = []
    for pool, n in pool_sizes.items():
        for i in range(n):
            row = {"id": f"{pool}-{i:03d}", "pool": pool}
            row["category"] = rng.choice(list(categories)) if len(categories) > 1 else categories[0]
            row["instruction"] = f"List words about the {rng.choice(WORDS)}."
            row["context"] = rng.choice(["", f"The {rng.choice(WORDS)} is near."]) if context else ""
            row["response"] = " ".join(rng.choice(WORDS) for _ in range(rng.randint(*response_words))) + "."
            rows.append(row)
    return pd.DataFrame(rows)


def select(frame: pd.DataFrame, *pools: str) -> pd.DataFrame:
    return frame[frame.pool.isin(pools)].reset_index(drop=True)


def tokenizer(frame: pd.DataFrame, vocab_size: int, pools: Sequence[str] | None = ("public", "pretrain")):
    """A byte-level BPE tokenizer trained on ``instruction context response`` of the rows of ``pools``, or on
    ``instruction response`` of every row when ``pools`` is None."""
    if pools is None:
        texts = [f"{r.instruction} {r.response}" for r in frame.itertuples()]
    else:
        texts = [f"{r.instruction} {r.context} {r.response}" for r in select(frame, *pools).itertuples()]
    return models.train_tokenizer(texts, vocab_size=vocab_size)


def write_manifest(tmp_path_factory, frame: pd.DataFrame):
    """``frame`` as a module-scoped ``manifest.parquet`` (for the ``*_from_cfg`` entry points)."""
    path = tmp_path_factory.mktemp("data") / "manifest.parquet"
    frame.to_parquet(path, index=False)
    return path


def model(name, method, base, role="student", ablation=None, value=None, family="gpt2", seed=0) -> dict:
    """The key columns of one model row of the result tables."""
    return dict(family=family, seed=seed, model=name, role=role, method=method, base=base,
                ablation=ablation, ablation_value=value)


def mia_rows(spec) -> pd.DataFrame:
    """``spec``: list of (model dict, attack, auc, half-width of the CI)."""
    return pd.DataFrame(
        [{**m, "attack": a, "auc": auc, "auc_ci_low": auc - h, "auc_ci_high": auc + h} for m, a, auc, h in spec]
    )
