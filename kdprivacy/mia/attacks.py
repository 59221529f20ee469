"""Membership-inference attack scores from the per-token statistics of :mod:`kdprivacy.mia.scoring`, and the
attack registry :data:`ATTACKS` every other part of the workflow reads the attack list from.

Sign convention (fixed once, for every attack): **higher score = more likely a member**. Metrics use the
scores as they are; an AUC below 0.5 is reported as is, never flipped (pitfalls.md).

Notation for one example with response tokens ``t = 1..n`` under a model ``M``: ``l_t = log p_M(x_t | x_<t)``
(``token_logprobs``), ``mu_t``/``sigma_t`` the mean/std of ``log p_M(.)`` under the model's next-token
distribution, ``NLL_M = -(1/n) sum_t l_t`` the mean token negative log-likelihood over *that model's own*
response tokens (a reference model with another tokenizer has another ``n``), ``m = ceil(k * n)`` (k a
fraction, e.g. 0.2). ``T`` is the target model.

================  ======================================================================================
attack            score (higher = member)
================  ======================================================================================
loss              ``-NLL_T = mean_t l_t``
min_k             mean of the ``m`` smallest ``l_t`` (log-probabilities, not probabilities)
min_k_pp          mean of the ``m`` smallest ``z_t = (l_t - mu_t) / max(sigma_t, SIGMA_EPS)``
zlib              ``-NLL_T / len(zlib.compress(text.encode("utf-8")))`` with ``text`` the sample's response
                  text (the ground-truth sample, never a model generation); the length is in bytes and
                  always > 0, so the division keeps "higher = member".
ref_<name>        ``NLL_ref - NLL_T`` with ``ref`` the reference score table called ``<name>``: e.g.
                  ``ref_external`` (an independent pretrained LM; paper: StableLM-3B), ``ref_pretrained``
                  (the teacher's pretrained base before SFT), ``ref_nokd`` (the No-KD student: what remains
                  is what the teacher transferred; :func:`nokd_reference` picks it, never the target
                  itself). A member is easier for the target than for the reference, so its score is
                  larger. A reference that scores exactly as the target (the target itself) is refused.
mope              ``mean_k (NLL_{T + eps_k} - NLL_T)``, ``eps_k ~ N(0, sigma^2)`` on the weights (MoPe, Li et
                  al. 2023; table from :func:`kdprivacy.mia.perturb.mope_scores`). Members sit in sharper
                  minima: the loss rises more under perturbation, so the score (an NLL *increase*) is
                  larger for members -- used as is.
rmia              RMIA (Zarifzadeh et al. 2024), offline, see below; in ``[0, 1]``, ties broken by LR.
lira              online LiRA (Carlini et al. 2022) against shadow pipelines trained with and without each
                  candidate (:mod:`kdprivacy.mia.shadows`); ``lira_offline``: OUT shadows only
rmia_shadow       RMIA with the shadow models as references (online: IN and OUT shadows)
================  ======================================================================================

RMIA, precisely. ``Pr(x | M) = exp(-NLL_M(x))``, the per-token geometric-mean probability of the response
(the sequence probability itself underflows and is not comparable across lengths). With reference models
``R_1..R_r`` (all OUT models for the members: the pretrained base, the No-KD student, an external LM)::

    Pr_out(x) = (1/r) sum_j Pr(x | R_j)
    Pr(x)     = (1 + a)/2 * Pr_out(x) + (1 - a)/2          # offline scaling; a = 1 (default): Pr_out
    LR(x)     = Pr(x | T) / Pr(x)
    rmia(x)   = (1/|Z|) #{ z in Z : LR(x) / LR(z) > gamma }   # gamma = 1 by default

``Z`` is the population sample: public/dev examples (:func:`kdprivacy.mia.scoring.population_set`), never a
member or non-member, scored by the target and by every reference model; ``Pr(z)`` uses the same formula
(as in privacytrustlab/ml_privacy_meter). Computed in log space: ``log LR(x) = -NLL_T(x) -
log Pr(x)`` with a log-mean-exp over the references; the comparison is strict (``>``), so ties with a
population example do not count.

Ties. The fraction takes at most ``|Z| + 1`` values, so with a population of hundreds the top of the score
is one tied block of many examples, and a TPR at a low FPR inside that block is 0 whatever the attack can
tell (the demo's teacher: AUC 0.93, TPR at 1% FPR 0). :func:`rmia_score` therefore returns
``(count + t(x)) / (|Z| + 1)`` where ``count`` is the number of dominated ``z`` and ``t(x)`` in ``(0, 1)``
is the rank of ``log LR(x)`` among the scored examples over ``n + 1``: it orders examples with the same
count by their likelihood ratio and never reorders two examples whose counts differ (the count is a
non-decreasing function of ``LR(x)``, so the tie-break agrees with it). :func:`rmia_from_ratios` is the
untied fraction, equal to Privacy Meter's.

``ceil(k * n)`` is computed as ``ceil(round(k * n, 9))`` so that float noise (``0.2 * 15 =
3.0000000000000004``) does not add a token; it is at least 1 whenever ``n >= 1`` and ``k > 0``.
An example with ``n == 0`` scored tokens (under the target or a reference it needs) gets a NaN score (it is
kept, never dropped; the metrics refuse NaN scores loudly). Encoding guarantees ``n >= 1``. With
``short_tokens`` set, :func:`compute_attacks` adds a boolean ``short`` column: fewer than ``short_tokens``
scored tokens under any model the attack reads (the target, and the references for ``ref_*``/``rmia``).

Every table an attack reads besides the target's must hold exactly the target's example ids (in any
order); a mismatch is an error, never an inner join.

Extension point: an attack is a function ``(scores, context) -> np.ndarray`` here, returning one score per
row of ``scores``, and one :class:`~kdprivacy.mia.registry.AttackSpec` line in
:data:`kdprivacy.mia.registry.ATTACKS` (re-exported here) naming it, the extra inputs it reads (they travel
in :class:`AttackContext`; the workflow's ``attack_metrics`` rule asks for them), its name in the paper's
tables and whether it is calibrated with reference models. Importing this module does not import torch.
"""

from __future__ import annotations

import math
import zlib
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from kdprivacy.mia.registry import (  # noqa: F401 - the registry, re-exported where the attacks live
    ATTACK_NAMES,
    ATTACKS,
    FOCUS_ATTACKS,
    NEEDS,
    NO_NOKD_REFERENCE,
    PAPER_ATTACKS,
    REF_PREFIX,
    REFERENCE_ATTACKS,
    REFERENCE_NAMES,
    AttackSpec,
    needs,
    nokd_reference,
    reference_attack,
    untestable_attacks,
)

SIGMA_EPS = 1e-6
"""Floor for ``sigma_t`` in Min-K%++: a (near-)deterministic next-token distribution has sigma ~ 0."""

REQUIRED_COLUMNS = ("id", "n_tokens", "token_logprobs", "token_mu", "token_sigma")
REFERENCE_COLUMNS = ("id", "n_tokens", "token_logprobs")


@dataclass(frozen=True)
class RMIASettings:
    """``a``: offline scaling in ``[0, 1]`` (1 = plain average of the references); ``gamma > 0``: the
    likelihood-ratio threshold; ``references``: names of the reference tables to use (None = all given)."""

    a: float = 1.0
    gamma: float = 1.0
    references: tuple[str, ...] | None = None

    def __post_init__(self):
        if not 0 <= self.a <= 1:
            raise ValueError(f"rmia a must be in [0, 1], got {self.a}")
        if not self.gamma > 0:
            raise ValueError(f"rmia gamma must be > 0, got {self.gamma}")


@dataclass(frozen=True)
class AttackContext:
    """Everything an attack may read besides the target model's score table."""

    texts: Mapping[str, str]
    min_k: float = 0.2
    min_k_count: str = "ceil"
    references: Mapping[str, pd.DataFrame] = field(default_factory=dict)
    population: pd.DataFrame | None = None
    reference_populations: Mapping[str, pd.DataFrame] = field(default_factory=dict)
    mope: pd.DataFrame | None = None
    rmia: RMIASettings = RMIASettings()
    shadows: Any = None  # kdprivacy.mia.shadows.ShadowTables (LiRA, RMIA-shadow)


MIN_K_COUNTS = ("ceil", "floor")


def n_lowest(n: int, k: float, count: str = "ceil") -> int:
    """``ceil(k * n)`` robust to float noise (see module docstring); ``count="floor"``: ``floor(k * n)`` as
    MIMIR (``int(len(probs) * k)``), but at least 1 token where ``n >= 1`` (MIMIR's mean of no token is NaN)."""
    if count == "ceil":
        return math.ceil(round(k * n, 9))
    if count == "floor":
        return max(1, math.floor(round(k * n, 9))) if n >= 1 else 0
    raise ValueError(f"min_k_count must be one of {MIN_K_COUNTS}, got {count!r}")


def _per_example(scores: pd.DataFrame, column: str) -> list[np.ndarray]:
    return [np.asarray(values, dtype=np.float64) for values in scores[column]]


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else math.nan


def _mean_lowest(values: np.ndarray, k: float, count: str = "ceil") -> float:
    if values.size == 0:
        return math.nan
    m = n_lowest(values.size, k, count)
    return float(np.sort(values)[:m].mean())


def mean_nll(scores: pd.DataFrame) -> np.ndarray:
    """Per-row mean token NLL (float64) over the table's own response tokens; NaN for 0 tokens."""
    return np.array([-_mean(lp) for lp in _per_example(scores, "token_logprobs")])


def _check_table(table: pd.DataFrame, what: str, columns=REFERENCE_COLUMNS) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{what} lacks columns {missing}")
    if table["id"].duplicated().any():
        raise ValueError(f"{what}: ids are not unique")
    lengths = np.array([len(values) for values in table["token_logprobs"]], dtype=np.int64)
    if not np.array_equal(lengths, table["n_tokens"].to_numpy(dtype=np.int64)):
        raise ValueError(f"{what}: n_tokens disagrees with the length of token_logprobs")


def aligned(table: pd.DataFrame, ids: Sequence[str], what: str) -> pd.DataFrame:
    """``table`` reordered to ``ids``; its ids must be exactly ``ids`` (no extra, none missing)."""
    if table["id"].duplicated().any():
        raise ValueError(f"{what}: ids are not unique")
    have, want = set(table["id"]), set(ids)
    if have != want:
        missing, extra = sorted(want - have), sorted(have - want)
        raise ValueError(
            f"{what} scores different examples than the target: {len(missing)} missing (e.g. {missing[:3]}), "
            f"{len(extra)} extra (e.g. {extra[:3]})"
        )
    return table.set_index("id").loc[list(ids)].reset_index()


# ------------------------------------------------------------------------------------ target-only attacks
def loss_score(scores: pd.DataFrame, context: AttackContext) -> np.ndarray:
    """``-NLL``: mean token log-probability."""
    return -mean_nll(scores)


def min_k_score(scores: pd.DataFrame, context: AttackContext) -> np.ndarray:
    """Min-K%: mean of the ``ceil(k n)`` lowest token log-probabilities."""
    return np.array([_mean_lowest(lp, context.min_k, context.min_k_count) for lp in _per_example(scores, "token_logprobs")])


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
        out.append(_mean_lowest((lp - mu) / np.maximum(sigma, SIGMA_EPS), context.min_k, context.min_k_count))
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


# --------------------------------------------------------------------------------- reference attacks
def _reference(context: AttackContext, name: str, ids: Sequence[str]) -> pd.DataFrame:
    if name not in context.references:
        raise ValueError(
            f"attack {REF_PREFIX}{name} needs a reference score table named {name!r}; "
            f"given: {sorted(context.references)}"
        )
    return aligned(context.references[name], ids, f"reference {name!r}")


def same_scores(target: pd.DataFrame, reference: pd.DataFrame) -> bool:
    """Whether ``reference`` (aligned to ``target``'s ids) holds exactly the target's token log-probabilities:
    the target model used as its own reference (``NLL_T - NLL_T = 0`` for every example)."""
    if len(target) != len(reference) or list(target["id"]) != list(reference["id"]):
        return False
    return all(
        a.shape == b.shape and np.array_equal(a, b)
        for a, b in zip(_per_example(target, "token_logprobs"), _per_example(reference, "token_logprobs"))
    )


def _not_self(scores: pd.DataFrame, ref: pd.DataFrame, name: str, attack: str) -> None:
    if same_scores(scores, ref):
        raise ValueError(
            f"attack {attack}: reference {name!r} scores exactly as the target (the target is its own "
            "reference); a reference must be another model (see nokd_reference)"
        )


def ref_score(scores: pd.DataFrame, context: AttackContext, name: str) -> np.ndarray:
    """``NLL_ref - NLL_target`` per example (each over its own model's response tokens). Refuses a reference
    whose scores are the target's own (a self-comparison is 0 for every example, not a test)."""
    ref = _reference(context, name, scores["id"].tolist())
    _not_self(scores, ref, name, f"{REF_PREFIX}{name}")
    return mean_nll(ref) - mean_nll(scores)


def mope_score(scores: pd.DataFrame, context: AttackContext) -> np.ndarray:
    """The MoPe table's ``mope`` column (mean NLL increase under weight noise), aligned by id."""
    if context.mope is None:
        raise ValueError("attack mope needs a MoPe table (kdprivacy.mia.perturb.mope_scores)")
    for column in ("id", "mope"):
        if column not in context.mope.columns:
            raise ValueError(f"MoPe table lacks column {column!r}")
    return aligned(context.mope, scores["id"].tolist(), "MoPe table")["mope"].to_numpy(dtype=np.float64)


def _log_mean_exp(values: np.ndarray, axis: int) -> np.ndarray:
    top = np.max(values, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    out = np.log(np.mean(np.exp(values - top), axis=axis)) + np.squeeze(top, axis=axis)
    return out


def rmia_log_ratio(target_nll: np.ndarray, reference_nlls: np.ndarray, a: float = 1.0) -> np.ndarray:
    """``log LR = log Pr(x|T) - log Pr(x)`` (module docstring); ``reference_nlls`` is ``[n, r]``."""
    target_nll = np.asarray(target_nll, dtype=np.float64)
    reference_nlls = np.asarray(reference_nlls, dtype=np.float64).reshape(target_nll.size, -1)
    if reference_nlls.shape[1] < 1:
        raise ValueError("rmia needs at least one reference model")
    if not 0 <= a <= 1:
        raise ValueError(f"rmia a must be in [0, 1], got {a}")
    log_out = _log_mean_exp(-reference_nlls, axis=1)
    with np.errstate(divide="ignore"):
        log_px = np.logaddexp(np.log((1 + a) / 2) + log_out, np.log((1 - a) / 2))
    return -target_nll - log_px


def _dominated(log_lr_x: np.ndarray, log_lr_z: np.ndarray, gamma: float) -> tuple[np.ndarray, int]:
    """``(#{z : LR(x) / LR(z) > gamma}`` per x (NaN where ``log_lr_x`` is NaN), ``|Z|)``."""
    log_lr_z = np.sort(np.asarray(log_lr_z, dtype=np.float64))
    if log_lr_z.size == 0:
        raise ValueError("rmia needs a non-empty population")
    if np.isnan(log_lr_z).any():
        raise ValueError(f"{int(np.isnan(log_lr_z).sum())} population example(s) have no scored token")
    # LR(x)/LR(z) > gamma  <=>  log LR(z) < log LR(x) - log gamma; count of sorted z strictly below.
    counts = np.searchsorted(log_lr_z, log_lr_x - math.log(gamma), side="left").astype(np.float64)
    counts[np.isnan(log_lr_x)] = np.nan
    return counts, log_lr_z.size


def rmia_from_ratios(log_lr_x: np.ndarray, log_lr_z: np.ndarray, gamma: float = 1.0) -> np.ndarray:
    """Fraction of population ``z`` with ``LR(x) / LR(z) > gamma`` (NaN where ``log_lr_x`` is NaN)."""
    counts, n_z = _dominated(np.asarray(log_lr_x, dtype=np.float64), log_lr_z, gamma)
    return counts / n_z


def _rmia_names(context: AttackContext) -> list[str]:
    names = list(context.rmia.references) if context.rmia.references is not None else list(context.references)
    if not names:
        raise ValueError("attack rmia needs at least one reference score table")
    return names


def rmia_score(scores: pd.DataFrame, context: AttackContext) -> np.ndarray:
    """RMIA (module docstring) from the target/reference tables on the examples and on the population."""
    if context.population is None:
        raise ValueError("attack rmia needs the target's population score table")
    ids = scores["id"].tolist()
    population = context.population
    _check_table(population, "target population table")
    z_ids = population["id"].tolist()
    overlap = set(z_ids) & set(ids)
    if overlap:
        raise ValueError(f"{len(overlap)} population example(s) are also evaluated members/non-members")
    names = _rmia_names(context)
    ref_x, ref_z = [], []
    for name in names:
        ref = _reference(context, name, ids)
        _not_self(scores, ref, name, "rmia")  # the target never counts among its own references
        ref_x.append(mean_nll(ref))
        if name not in context.reference_populations:
            raise ValueError(f"attack rmia needs the population score table of reference {name!r}")
        table = context.reference_populations[name]
        _check_table(table, f"population table of reference {name!r}")
        ref_z.append(mean_nll(aligned(table, z_ids, f"population table of reference {name!r}")))
    a, gamma = context.rmia.a, context.rmia.gamma
    log_lr_x = rmia_log_ratio(mean_nll(scores), np.stack(ref_x, axis=1), a)
    log_lr_z = rmia_log_ratio(mean_nll(population), np.stack(ref_z, axis=1), a)
    return rmia_tie_broken(log_lr_x, log_lr_z, gamma)


def rmia_tie_broken(log_lr_x: np.ndarray, log_lr_z: np.ndarray, gamma: float = 1.0) -> np.ndarray:
    """``(count + t(x)) / (|Z| + 1)``: the dominated count of :func:`rmia_from_ratios` with ties ordered by the
    rank of ``log LR(x)`` (module docstring, "Ties"); NaN where ``log_lr_x`` is NaN."""
    log_lr_x = np.asarray(log_lr_x, dtype=np.float64)
    counts, n_z = _dominated(log_lr_x, log_lr_z, gamma)
    ranks = pd.Series(log_lr_x).rank(method="average").to_numpy()  # 1..n, NaN stays NaN
    return (counts + ranks / (int((~np.isnan(log_lr_x)).sum()) + 1)) / (n_z + 1)


Attack = Callable[[pd.DataFrame, AttackContext], np.ndarray]


def resolve(name: str) -> Attack:
    """The attack function of ``name``: an entry of :data:`ATTACKS` or ``ref_<any reference name>``."""
    if name in ATTACKS:
        return ATTACKS[name].fn
    if name.startswith(REF_PREFIX) and len(name) > len(REF_PREFIX):
        return functools.partial(ref_score, name=name[len(REF_PREFIX) :])
    raise ValueError(f"unknown attack {name!r}; known: {sorted(ATTACKS)} and ref_<reference name>")


def _short(scores: pd.DataFrame, context: AttackContext, name: str, short_tokens: int) -> np.ndarray:
    ids = scores["id"].tolist()
    short = scores["n_tokens"].to_numpy(dtype=np.int64) < short_tokens
    if name.startswith(REF_PREFIX):
        refs = [name[len(REF_PREFIX) :]]
    elif name in ATTACKS and "references" in ATTACKS[name].needs:
        refs = _rmia_names(context)
    else:
        refs = []
    for ref in refs:
        short |= _reference(context, ref, ids)["n_tokens"].to_numpy(dtype=np.int64) < short_tokens
    return short


def compute_attacks(
    scores: pd.DataFrame,
    texts: Mapping[str, str],
    attacks: Sequence[str],
    min_k: float = 0.2,
    min_k_count: str = "ceil",
    references: Mapping[str, pd.DataFrame] | None = None,
    population: pd.DataFrame | None = None,
    reference_populations: Mapping[str, pd.DataFrame] | None = None,
    mope: pd.DataFrame | None = None,
    rmia: RMIASettings | Mapping | None = None,
    short_tokens: int | None = None,
    shadows=None,
) -> pd.DataFrame:
    """Long table ``id, attack, score`` (+ ``short`` when ``short_tokens`` is set).

    Every requested attack scores every row of ``scores``; rows are grouped by attack (in the requested
    order), ids in the order of ``scores``. ``references`` maps a name to a reference model's score table
    (attack ``ref_<name>``; also RMIA's references); ``population``/``reference_populations`` are the
    target's and the references' score tables on the population sample (RMIA); ``mope`` is a table ``id,
    mope``; ``rmia`` an :class:`RMIASettings`, the config's ``attacks.rmia`` section or a mapping of its fields;
    ``shadows`` a :class:`kdprivacy.mia.shadows.ShadowTables` (the shadow attacks).
    """
    if len(set(attacks)) != len(attacks):
        raise ValueError(f"attacks listed twice: {list(attacks)}")
    functions = [resolve(name) for name in attacks]
    _check_table(scores, "score table", REQUIRED_COLUMNS)
    if not 0 < min_k <= 1:
        raise ValueError(f"min_k must be in (0, 1], got {min_k}")
    n_lowest(1, min_k, min_k_count)  # an unknown count rule fails here, before any attack runs
    references = dict(references or {})
    for name, table in references.items():
        _check_table(table, f"reference {name!r}")
    if rmia is None:
        rmia = RMIASettings()
    elif not isinstance(rmia, RMIASettings):  # a mapping, or the config's RMIA section
        rmia = dict(rmia) if isinstance(rmia, Mapping) else {k: getattr(rmia, k) for k in ("a", "gamma", "references")}
        if rmia.get("references") is not None:
            rmia["references"] = tuple(rmia["references"])
        rmia = RMIASettings(**rmia)
    context = AttackContext(
        texts=texts,
        min_k=min_k,
        min_k_count=min_k_count,
        references=references,
        population=population,
        reference_populations=dict(reference_populations or {}),
        mope=mope,
        rmia=rmia,
        shadows=shadows,
    )
    ids = scores["id"].tolist()
    frames = []
    for name, function in zip(attacks, functions):
        values = np.asarray(function(scores, context), dtype=np.float64)
        if values.shape != (len(ids),):
            raise RuntimeError(f"attack {name} returned shape {values.shape}, expected ({len(ids)},)")
        frame = pd.DataFrame({"id": ids, "attack": name, "score": values})
        if short_tokens is not None:
            frame["short"] = _short(scores, context, name, int(short_tokens))
        frames.append(frame)
    if not frames:
        columns = {
            "id": pd.Series(dtype=object),
            "attack": pd.Series(dtype=object),
            "score": pd.Series(dtype=np.float64),
        }
        if short_tokens is not None:
            columns["short"] = pd.Series(dtype=bool)
        return pd.DataFrame(columns)
    return pd.concat(frames, ignore_index=True)
