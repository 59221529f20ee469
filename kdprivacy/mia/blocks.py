"""Per-block privacy risk (the paper's Fig. 7): MoPe with noise on one decoder block at a time.

For each block ``l`` (:func:`kdprivacy.mia.perturb.find_blocks`: GPT-2, OPT, LLaMA and any HF decoder whose
layers sit in one ``nn.ModuleList``) and each ``sigma``: ``K`` seeded perturbations
``theta_l + N(0, sigma^2)`` of **only** block ``l``'s parameters (:func:`kdprivacy.mia.perturb.block_params`),
each applied through forward hooks, the stored weights never written (:func:`kdprivacy.mia.perturb.perturbed`);
the score of an example is ``(1/K) sum_k [NLL_perturbed_k - NLL_original]`` (mean response-token NLL;
higher = member, as whole-model MoPe). ``NLL_original`` is computed once for all blocks and sigmas. One ROC AUC per
``(block, sigma)``, with a stratified bootstrap CI (:func:`kdprivacy.mia.metrics.bootstrap_auc_ci`).

Noise seeds: perturbation ``k`` uses :func:`kdprivacy.mia.perturb.perturbation_seed` ``(seed, k)`` for every
block and sigma (common random numbers): blocks of one architecture get the same standard-normal draws,
scaled by sigma, so differences between blocks and sigmas are not differences between noise draws.

A score that is not finite (e.g. a sigma so large that the NLL overflows) makes that row's AUC NaN, counted
in ``n_invalid``; it is never dropped silently.

Per-block table (:data:`BLOCK_COLUMNS`): ``block`` (index), ``block_name`` (module path), ``sigma``, ``k``,
``n_params`` (parameters perturbed), ``auc, auc_ci_low, auc_ci_high``, ``member_score_mean,
nonmember_score_mean``, ``n_members, n_nonmembers, n_invalid``. Per-example table
(:data:`BLOCK_EXAMPLE_COLUMNS`): ``block, sigma, id, label, score``.

Do blocks differ? (:func:`block_spread`, table :data:`SPREAD_COLUMNS`, one row per sigma.) Comparing the
intervals of the highest and the lowest block picks the two extremes first: with 36 blocks and no true
difference that rule calls a difference most of the time. The test here is simultaneous over all
``L(L-1)/2`` block pairs: the statistic is the spread ``T = max_l AUC_l - min_l AUC_l``; its null
distribution is the stratified bootstrap of the *centered* spread ``T*_b = max_l (AUC*_bl - AUC_l) -
min_l (AUC*_bl - AUC_l)`` where replicate ``b`` resamples the same examples for every block (the draws of
:func:`kdprivacy.mia.metrics.bootstrap_replicates`, which depend only on the labels and the seed), so the
correlation between blocks is kept. ``p = (1 + #{T*_b >= T}) / (B + 1)``; ``critical_value`` is the
``level`` quantile of ``T*`` (blocks differ at ``1 - level`` when ``T`` exceeds it).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from kdprivacy.mia import metrics, perturb, scoring
from kdprivacy.encoding import Encoded
from kdprivacy.stats import Bootstrap

log = logging.getLogger(__name__)

BLOCK_COLUMNS = [
    "block", "block_name", "sigma", "k", "n_params", "auc", "auc_ci_low", "auc_ci_high", "member_score_mean",
    "nonmember_score_mean", "n_members", "n_nonmembers", "n_invalid",
]
BLOCK_EXAMPLE_COLUMNS = ["block", "sigma", "id", "label", "score"]
SPREAD_COLUMNS = [
    "sigma", "n_blocks", "n_pairs", "highest_block", "lowest_block", "spread", "critical_value", "p_value",
    "level", "n_bootstrap", "n_members", "n_nonmembers",
]


def block_mope(
    model,
    items: Sequence[Encoded],
    labels,
    k: int = 10,
    sigmas: Sequence[float] = (0.01,),
    seed: int = 0,
    batch_size: int = 32,
    pad_id: int = 0,
    bootstrap: Bootstrap = Bootstrap(),
    blocks: Sequence[int] | None = None,
    position_chunk: int = 512,
    precision: str = "fp32",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(per_block, per_example)`` tables (see the module docstring); ``blocks`` = indices (default all);
    ``precision``: compute precision of every pass (:func:`kdprivacy.mia.scoring.score_examples`)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    sigmas = [float(s) for s in sigmas]
    if not sigmas or any(not s > 0 for s in sigmas):
        raise ValueError(f"sigmas must be a non-empty list of positive numbers, got {sigmas}")
    y = np.asarray(labels).ravel()
    if y.size != len(items):
        raise ValueError(f"{len(items)} items but {y.size} labels")
    if not np.isin(y, (0, 1)).all() or y.min() == y.max():
        raise ValueError("labels must be 0/1 with at least one member and one non-member")
    found = perturb.find_blocks(model)
    indices = list(range(len(found))) if blocks is None else [int(b) for b in blocks]
    for index in indices:
        if not 0 <= index < len(found):
            raise IndexError(f"block {index} out of range: the model has {len(found)} blocks")
    log.info("per-block MoPe: %d of %d blocks (%s...), sigmas %s, K=%d, %d examples", len(indices),
             len(found), found[0][0], sigmas, k, len(items))

    scoring_pass = scoring.ScoringPass(batch_size, pad_id, position_chunk, precision=precision)
    base = scoring.mean_nll(model, items, scoring_pass)
    ids = [item.id for item in items]
    named = dict(model.named_parameters())
    block_rows, example_frames = [], []
    for index in indices:
        params = perturb.block_params(model, index)
        n_params = int(sum(named[name].numel() for name in params))
        for sigma in sigmas:
            total = np.zeros(len(items), dtype=np.float64)
            for draw in range(k):
                with perturb.perturbed(model, sigma, perturb.perturbation_seed(seed, draw), params):
                    total += scoring.mean_nll(model, items, scoring_pass) - base
            score = total / k
            valid = np.isfinite(score)
            n_invalid = int((~valid).sum())
            if n_invalid:
                log.warning("block %d, sigma %g: %d non-finite score(s); AUC reported as NaN", index, sigma,
                            n_invalid)
                auc = low = high = math.nan
            else:
                auc = metrics.roc_auc(score, y)
                low, high = (metrics.bootstrap_auc_ci(score, y, bootstrap)
                             if bootstrap.n > 0 else (math.nan, math.nan))
            block_rows.append({
                "block": index,
                "block_name": found[index][0],
                "sigma": sigma,
                "k": k,
                "n_params": n_params,
                "auc": auc,
                "auc_ci_low": low,
                "auc_ci_high": high,
                "member_score_mean": float(np.mean(score[y == 1])),
                "nonmember_score_mean": float(np.mean(score[y == 0])),
                "n_members": int((y == 1).sum()),
                "n_nonmembers": int((y == 0).sum()),
                "n_invalid": n_invalid,
            })
            log.info("block %d (%s), sigma %g: AUC %.4f", index, found[index][0], sigma, auc)
            example_frames.append(pd.DataFrame({"block": index, "sigma": sigma, "id": ids, "label": y,
                                                "score": score}))
    per_block = pd.DataFrame(block_rows, columns=BLOCK_COLUMNS)
    per_example = (pd.concat(example_frames, ignore_index=True) if example_frames
                   else pd.DataFrame(columns=BLOCK_EXAMPLE_COLUMNS))
    return per_block, per_example[BLOCK_EXAMPLE_COLUMNS]


def block_spread(per_example: pd.DataFrame, bootstrap: Bootstrap = Bootstrap()) -> pd.DataFrame:
    """The simultaneous test that per-block AUCs differ (module docstring), one row per sigma of
    ``per_example`` (:data:`BLOCK_EXAMPLE_COLUMNS`). ``p_value``/``critical_value`` are NaN when it cannot be
    tested: fewer than two blocks, ``bootstrap.n == 0``, or a non-finite score (``spread`` NaN too)."""
    missing = [c for c in BLOCK_EXAMPLE_COLUMNS if c not in per_example.columns]
    if missing:
        raise ValueError(f"per-example block table lacks columns {missing}")
    rows = []
    for sigma, group in per_example.groupby("sigma", sort=True):
        scores = group.pivot(index="id", columns="block", values="score").sort_index(axis=1)
        labels = group.drop_duplicates("id").set_index("id")["label"].reindex(scores.index)
        if (group.groupby("block")["id"].nunique() != len(scores)).any():
            raise ValueError(f"sigma {sigma:g}: the blocks did not score the same examples")
        y = labels.to_numpy(int)
        matrix = scores.to_numpy(np.float64)
        n_blocks = matrix.shape[1]
        row = {
            "sigma": float(sigma), "n_blocks": n_blocks, "n_pairs": n_blocks * (n_blocks - 1) // 2,
            "highest_block": math.nan, "lowest_block": math.nan, "spread": math.nan,
            "critical_value": math.nan, "p_value": math.nan, "level": bootstrap.level,
            "n_bootstrap": bootstrap.n, "n_members": int((y == 1).sum()), "n_nonmembers": int((y == 0).sum()),
        }
        if np.isfinite(matrix).all():
            aucs = np.array([metrics.roc_auc(matrix[:, j], y) for j in range(n_blocks)])
            blocks_ = scores.columns.to_numpy()
            row.update(highest_block=int(blocks_[aucs.argmax()]), lowest_block=int(blocks_[aucs.argmin()]),
                       spread=float(aucs.max() - aucs.min()))
            if n_blocks >= 2 and bootstrap.n > 0:
                reps = np.column_stack([
                    metrics.bootstrap_replicates(matrix[:, j], y, (), bootstrap.n, bootstrap.seed)[:, 0]
                    for j in range(n_blocks)
                ])
                centered = reps - aucs
                null = centered.max(axis=1) - centered.min(axis=1)
                row.update(critical_value=float(np.quantile(null, bootstrap.level)),
                           p_value=float((1 + np.sum(null >= row["spread"] - 1e-12)) / (bootstrap.n + 1)))
        rows.append(row)
    return pd.DataFrame(rows, columns=SPREAD_COLUMNS)
