"""Per-block privacy risk: where in the network membership lives, one table for every per-block signal.

Signals (:data:`kdprivacy.mia.registry.BLOCK_SIGNALS`, config ``blocks.signals``): ``lens_loss`` and
``lens_min_k_pp`` (the loss and Min-K%++ attacks on the logit lens of each block's output) and ``probe`` (a
cross-validated linear membership probe on each block's pooled output; a labelled-data, upper-bound attacker)
read every block from one hidden-state pass (:func:`hidden_state_signals`, :mod:`kdprivacy.mia.probes`);
``mope`` (the paper's Fig. 7) perturbs one block at a time (:func:`block_mope`). Blocks are aligned across
models of different depth by :func:`relative_depth` ``(block + 1) / n_blocks``.

MoPe per block: for each block ``l`` (:func:`kdprivacy.mia.perturb.find_blocks`: GPT-2, OPT, LLaMA and any
HF decoder whose layers sit in one ``nn.ModuleList``) and each ``sigma``: ``K`` seeded perturbations
``theta_l + N(0, sigma^2)`` of **only** block ``l``'s parameters (:func:`kdprivacy.mia.perturb.block_params`),
each applied through forward hooks, the stored weights never written (:func:`kdprivacy.mia.perturb.perturbed`);
the score of an example is ``(1/K) sum_k [NLL_perturbed_k - NLL_original]`` (mean response-token NLL;
higher = member, as whole-model MoPe). ``NLL_original`` is computed once for all blocks and sigmas. One ROC
AUC per ``(signal, block, sigma)``, with a stratified bootstrap CI (:func:`kdprivacy.mia.metrics.bootstrap_auc_ci`).

Noise seeds: perturbation ``k`` uses :func:`kdprivacy.mia.perturb.perturbation_seed` ``(seed, k)`` for every
block and sigma (common random numbers): blocks of one architecture get the same standard-normal draws,
scaled by sigma, so differences between blocks and sigmas are not differences between noise draws.

A score that is not finite (e.g. a sigma so large that the NLL overflows) makes that row's AUC NaN, counted
in ``n_invalid``; it is never dropped silently.

Per-block table (:data:`BLOCK_COLUMNS`): ``signal``, ``block`` (index), ``block_name`` (module path),
``n_blocks``, ``relative_depth``, ``sigma`` and ``k`` (MoPe's noise scale and draws; NaN for the other
signals), ``n_params`` (the block's parameters), ``auc, auc_ci_low, auc_ci_high``, ``member_score_mean,
nonmember_score_mean``, ``n_members, n_nonmembers, n_invalid``, ``access`` (what the attacker needs).
Per-example table (:data:`BLOCK_EXAMPLE_COLUMNS`): ``signal, block, sigma, id, label, score``.

Do blocks differ? (:func:`block_spread`, table :data:`SPREAD_COLUMNS`, one row per signal and sigma.) Comparing the
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

from kdprivacy.encoding import Encoded
from kdprivacy.mia import metrics, perturb, scoring
from kdprivacy.mia.registry import BLOCK_SIGNALS
from kdprivacy.stats import Bootstrap

log = logging.getLogger(__name__)

BLOCK_COLUMNS = [
    "signal", "block", "block_name", "n_blocks", "relative_depth", "sigma", "k", "n_params", "auc", "auc_ci_low",
    "auc_ci_high", "member_score_mean", "nonmember_score_mean", "n_members", "n_nonmembers", "n_invalid", "access",
]
BLOCK_EXAMPLE_COLUMNS = ["signal", "block", "sigma", "id", "label", "score"]
SPREAD_COLUMNS = [
    "signal", "sigma", "n_blocks", "n_pairs", "highest_block", "lowest_block", "spread", "critical_value",
    "p_value", "level", "n_bootstrap", "n_members", "n_nonmembers",
]


def relative_depth(index: int, n_blocks: int) -> float:
    """Depth after block ``index`` (0-based) of ``n_blocks``: ``(index + 1) / n_blocks``; 1 = the last block
    of every model, so teacher and student blocks line up at matched depth."""
    return (int(index) + 1) / int(n_blocks)


def _check_labels(labels, n_items: int) -> np.ndarray:
    y = np.asarray(labels).ravel()
    if y.size != n_items:
        raise ValueError(f"{n_items} items but {y.size} labels")
    if not np.isin(y, (0, 1)).all() or y.min() == y.max():
        raise ValueError("labels must be 0/1 with at least one member and one non-member")
    return y


def block_n_params(model) -> list[int]:
    """Parameters of each decoder block (shared tensors once), in block order."""
    named = dict(model.named_parameters())
    return [int(sum(named[name].numel() for name in perturb.block_params(model, i)))
            for i in range(len(perturb.find_blocks(model)))]


def signal_tables(signal: str, block: int, block_name: str, n_blocks: int, n_params: int, score, y, ids,
                  bootstrap: Bootstrap, sigma: float = math.nan, k: float = math.nan) -> tuple[dict, pd.DataFrame]:
    """One per-block row (:data:`BLOCK_COLUMNS`) and the per-example rows of one signal's ``score`` at one
    block (and sigma); a non-finite score makes the AUC NaN, counted in ``n_invalid``."""
    score = np.asarray(score, dtype=np.float64)
    valid = np.isfinite(score)
    n_invalid = int((~valid).sum())
    if n_invalid:
        log.warning("%s, block %d%s: %d non-finite score(s); AUC reported as NaN", signal, block,
                    "" if math.isnan(sigma) else f", sigma {sigma:g}", n_invalid)
        auc = low = high = math.nan
    else:
        auc = metrics.roc_auc(score, y)
        low, high = metrics.bootstrap_auc_ci(score, y, bootstrap) if bootstrap.n > 0 else (math.nan, math.nan)
    row = {
        "signal": signal, "block": int(block), "block_name": block_name, "n_blocks": int(n_blocks),
        "relative_depth": relative_depth(block, n_blocks), "sigma": float(sigma), "k": float(k),
        "n_params": int(n_params), "auc": auc, "auc_ci_low": low, "auc_ci_high": high,
        "member_score_mean": float(np.mean(score[y == 1])), "nonmember_score_mean": float(np.mean(score[y == 0])),
        "n_members": int((y == 1).sum()), "n_nonmembers": int((y == 0).sum()), "n_invalid": n_invalid,
        "access": BLOCK_SIGNALS[signal].access,
    }
    log.info("%s, block %d (%s)%s: AUC %.4f", signal, block, block_name,
             "" if math.isnan(sigma) else f", sigma {sigma:g}", auc)
    examples = pd.DataFrame({"signal": signal, "block": int(block), "sigma": float(sigma), "id": list(ids),
                             "label": y, "score": score})
    return row, examples


def stack(rows: Sequence[dict], examples: Sequence[pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(per_block, per_example)`` tables from :func:`signal_tables` results."""
    per_block = pd.DataFrame(list(rows), columns=BLOCK_COLUMNS)
    per_example = (pd.concat(list(examples), ignore_index=True) if examples
                   else pd.DataFrame(columns=BLOCK_EXAMPLE_COLUMNS))
    return per_block, per_example[BLOCK_EXAMPLE_COLUMNS]


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
    """``(per_block, per_example)`` tables of signal ``mope`` (see the module docstring); ``blocks`` = indices
    (default all); ``precision``: compute precision of every pass (:func:`kdprivacy.mia.scoring.score_examples`)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    sigmas = [float(s) for s in sigmas]
    if not sigmas or any(not s > 0 for s in sigmas):
        raise ValueError(f"sigmas must be a non-empty list of positive numbers, got {sigmas}")
    y = _check_labels(labels, len(items))
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
    n_params = block_n_params(model)
    rows, examples = [], []
    for index in indices:
        params = perturb.block_params(model, index)
        for sigma in sigmas:
            total = np.zeros(len(items), dtype=np.float64)
            for draw in range(k):
                with perturb.perturbed(model, sigma, perturb.perturbation_seed(seed, draw), params):
                    total += scoring.mean_nll(model, items, scoring_pass) - base
            row, frame = signal_tables("mope", index, found[index][0], len(found), n_params[index], total / k,
                                       y, ids, bootstrap, sigma=sigma, k=k)
            rows.append(row)
            examples.append(frame)
    return stack(rows, examples)


def hidden_state_signals(
    model,
    items: Sequence[Encoded],
    labels,
    signals: Sequence[str] = ("lens_loss", "lens_min_k_pp", "probe"),
    batch_size: int = 32,
    pad_id: int = 0,
    bootstrap: Bootstrap = Bootstrap(),
    probe: dict | None = None,
    min_k: float = 0.2,
    min_k_count: str = "ceil",
    population: Sequence[Encoded] = (),
    position_chunk: int = 512,
    precision: str = "fp32",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(per_block, per_example)`` tables of the hidden-state signals (``lens_loss``, ``lens_min_k_pp``,
    ``probe``; :mod:`kdprivacy.mia.probes`) at every block, from one forward pass of ``items`` (and one of
    ``population`` when given: the probe's extra negatives). ``probe``: ``folds``, ``c``, ``seed``."""
    from kdprivacy.mia import probes

    unknown = [s for s in signals if s not in BLOCK_SIGNALS or not BLOCK_SIGNALS[s].hidden_states]
    if unknown or not signals:
        raise ValueError(f"hidden-state signals must be a non-empty subset of "
                         f"{[n for n, s in BLOCK_SIGNALS.items() if s.hidden_states]}, got {list(signals)}")
    y = _check_labels(labels, len(items))
    probe = {"folds": 5, "c": 1.0, "seed": 0, **(probe or {})}
    scoring_pass = scoring.ScoringPass(batch_size, pad_id, position_chunk, precision=precision)
    lens = any(s in probes.LENS_SIGNALS for s in signals)
    read = probes.hidden_state_pass(model, items, scoring_pass, lens=lens, pooled="probe" in signals,
                                    min_k=min_k, min_k_count=min_k_count)
    extra = None
    if "probe" in signals and population:
        extra = probes.hidden_state_pass(model, list(population), scoring_pass, lens=False).features
        log.info("probe: %d population examples as extra negatives of every training fold", len(population))
    n_blocks, ids, n_params = len(read.block_names), [item.id for item in items], block_n_params(model)
    rows, examples = [], []
    for signal in signals:
        for index, name in enumerate(read.block_names):
            if signal == "probe":
                score = probes.cv_probe(read.features[index], y, probe["folds"], probe["c"], probe["seed"],
                                        None if extra is None else extra[index])
            else:
                score = read.lens[signal][index]
            row, frame = signal_tables(signal, index, name, n_blocks, n_params[index], score, y, ids, bootstrap)
            rows.append(row)
            examples.append(frame)
    return stack(rows, examples)


def block_spread(per_example: pd.DataFrame, bootstrap: Bootstrap = Bootstrap()) -> pd.DataFrame:
    """The simultaneous test that per-block AUCs differ (module docstring), one row per signal and sigma of
    ``per_example`` (:data:`BLOCK_EXAMPLE_COLUMNS`). ``p_value``/``critical_value`` are NaN when it cannot be
    tested: fewer than two blocks, ``bootstrap.n == 0``, or a non-finite score (``spread`` NaN too)."""
    missing = [c for c in BLOCK_EXAMPLE_COLUMNS if c not in per_example.columns]
    if missing:
        raise ValueError(f"per-example block table lacks columns {missing}")
    rows = []
    order = {name: i for i, name in enumerate(BLOCK_SIGNALS)}
    groups = sorted(per_example.groupby(["signal", "sigma"], sort=True, dropna=False),
                    key=lambda kv: order.get(kv[0][0], len(order)))  # registry order, then sigma (stable)
    for (signal, sigma), group in groups:
        scores = group.pivot(index="id", columns="block", values="score").sort_index(axis=1)
        labels = group.drop_duplicates("id").set_index("id")["label"].reindex(scores.index)
        if (group.groupby("block")["id"].nunique() != len(scores)).any():
            raise ValueError(f"{signal}, sigma {sigma:g}: the blocks did not score the same examples")
        y = labels.to_numpy(int)
        matrix = scores.to_numpy(np.float64)
        n_blocks = matrix.shape[1]
        row = {
            "signal": signal, "sigma": float(sigma), "n_blocks": n_blocks, "n_pairs": n_blocks * (n_blocks - 1) // 2,
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
