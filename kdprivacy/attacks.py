"""Membership-inference attack scores from the per-token statistics of :mod:`kdprivacy.scoring`.

Sign convention (fixed once, for every attack): **higher score = more likely a member**. Metrics use the
scores as they are; an AUC below 0.5 is reported as is, never flipped (pitfalls.md).

Notation for one example with response tokens ``t = 1..n``: ``l_t = log p(x_t | x_<t)`` (``token_logprobs``),
``mu_t``/``sigma_t`` the mean/std of ``log p(.)`` under the model's next-token distribution, ``NLL = -(1/n)
sum_t l_t`` the mean token negative log-likelihood, ``m = ceil(k * n)`` (k a fraction, e.g. 0.2).

==========  ============================================================================================
attack      score
==========  ============================================================================================
loss        ``-NLL = mean_t l_t``
min_k       mean of the ``m`` smallest ``l_t`` (log-probabilities, not probabilities)
min_k_pp    mean of the ``m`` smallest ``z_t = (l_t - mu_t) / max(sigma_t, SIGMA_EPS)``
zlib        ``-NLL / len(zlib.compress(text.encode("utf-8")))`` with ``text`` the sample's response text
            (the ground-truth sample, never a model generation); the length is in bytes and always > 0,
            so the division keeps "higher = member".
==========  ============================================================================================

``ceil(k * n)`` is computed as ``ceil(round(k * n, 9))`` so that float noise (``0.2 * 15 =
3.0000000000000004``) does not add a token; it is at least 1 whenever ``n >= 1`` and ``k > 0``.
An example with ``n == 0`` scored tokens gets a NaN score for every attack (it is kept, never dropped;
the metrics refuse NaN scores loudly). Encoding guarantees ``n >= 1``.

Extension point: an attack is an entry of :data:`ATTACKS`, a function ``(scores, context) -> np.ndarray``
returning one score per row of ``scores``. Attacks needing more than the target model's token statistics
(reference-model attacks: ``NLL_ref - NLL_target``; MoPe: perturbed-model NLLs) add the extra score table
they need as a field of :class:`AttackContext`, read it aligned by ``id`` in their function, and register
themselves in ``ATTACKS``; :func:`compute_attacks` needs no change.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

SIGMA_EPS = 1e-6
"""Floor for ``sigma_t`` in Min-K%++: a (near-)deterministic next-token distribution has sigma ~ 0."""

REQUIRED_COLUMNS = ("id", "n_tokens", "token_logprobs", "token_mu", "token_sigma")


@dataclass(frozen=True)
class AttackContext:
    """Everything an attack may read besides the target model's score table."""

    texts: Mapping[str, str]
    min_k: float = 0.2


def n_lowest(n: int, k: float) -> int:
    """``ceil(k * n)`` robust to float noise (see module docstring)."""
    return math.ceil(round(k * n, 9))


def _per_example(scores: pd.DataFrame, column: str) -> list[np.ndarray]:
    return [np.asarray(values, dtype=np.float64) for values in scores[column]]


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else math.nan


def _mean_lowest(values: np.ndarray, k: float) -> float:
    if values.size == 0:
        return math.nan
    m = n_lowest(values.size, k)
    return float(np.sort(values)[:m].mean())


def loss_score(scores: pd.DataFrame, context: AttackContext) -> np.ndarray:
    """``-NLL``: mean token log-probability."""
    return np.array([_mean(lp) for lp in _per_example(scores, "token_logprobs")])


def min_k_score(scores: pd.DataFrame, context: AttackContext) -> np.ndarray:
    """Min-K%: mean of the ``ceil(k n)`` lowest token log-probabilities."""
    return np.array([_mean_lowest(lp, context.min_k) for lp in _per_example(scores, "token_logprobs")])


def min_k_pp_score(scores: pd.DataFrame, context: AttackContext) -> np.ndarray:
    """Min-K%++: mean of the ``ceil(k n)`` lowest ``(l_t - mu_t) / max(sigma_t, SIGMA_EPS)``."""
    out = []
    for lp, mu, sigma in zip(
        _per_example(scores, "token_logprobs"),
        _per_example(scores, "token_mu"),
        _per_example(scores, "token_sigma"),
    ):
        if not lp.size == mu.size == sigma.size:
            raise ValueError("token_logprobs, token_mu and token_sigma differ in length")
        out.append(_mean_lowest((lp - mu) / np.maximum(sigma, SIGMA_EPS), context.min_k))
    return np.array(out)


def zlib_length(text: str) -> int:
    """Bytes of the zlib-compressed utf-8 text (default level); > 0 even for the empty string."""
    return len(zlib.compress(text.encode("utf-8")))


def zlib_score(scores: pd.DataFrame, context: AttackContext) -> np.ndarray:
    """``-NLL / zlib_length(response text)``."""
    missing = [i for i in scores["id"] if i not in context.texts]
    if missing:
        raise ValueError(
            f"zlib needs the sample text of every example; missing {len(missing)}, e.g. {missing[:3]}"
        )
    lengths = np.array([zlib_length(context.texts[i]) for i in scores["id"]], dtype=np.float64)
    return loss_score(scores, context) / lengths


Attack = Callable[[pd.DataFrame, AttackContext], np.ndarray]

ATTACKS: dict[str, Attack] = {
    "loss": loss_score,
    "min_k": min_k_score,
    "min_k_pp": min_k_pp_score,
    "zlib": zlib_score,
}


def compute_attacks(
    scores: pd.DataFrame, texts: Mapping[str, str], attacks: Sequence[str], min_k: float = 0.2
) -> pd.DataFrame:
    """Long table ``id, attack, score``: every requested attack scores every row of ``scores``.

    Rows are grouped by attack (in the requested order), ids in the order of ``scores``.
    """
    unknown = [name for name in attacks if name not in ATTACKS]
    if unknown:
        raise ValueError(f"unknown attack(s) {unknown}; known: {sorted(ATTACKS)}")
    if len(set(attacks)) != len(attacks):
        raise ValueError(f"attacks listed twice: {list(attacks)}")
    missing = [c for c in REQUIRED_COLUMNS if c not in scores.columns]
    if missing:
        raise ValueError(f"score table lacks columns {missing}")
    if scores["id"].duplicated().any():
        raise ValueError("score table ids are not unique")
    lengths = np.array([len(values) for values in scores["token_logprobs"]], dtype=np.int64)
    if not np.array_equal(lengths, scores["n_tokens"].to_numpy(dtype=np.int64)):
        raise ValueError("n_tokens disagrees with the length of token_logprobs")
    if not 0 < min_k <= 1:
        raise ValueError(f"min_k must be in (0, 1], got {min_k}")
    context = AttackContext(texts=texts, min_k=min_k)
    ids = scores["id"].tolist()
    frames = []
    for name in attacks:
        values = np.asarray(ATTACKS[name](scores, context), dtype=np.float64)
        if values.shape != (len(ids),):
            raise RuntimeError(f"attack {name} returned shape {values.shape}, expected ({len(ids)},)")
        frames.append(pd.DataFrame({"id": ids, "attack": name, "score": values}))
    if not frames:
        return pd.DataFrame({"id": pd.Series(dtype=object), "attack": pd.Series(dtype=object),
                             "score": pd.Series(dtype=np.float64)})
    return pd.concat(frames, ignore_index=True)
