"""Token-level distillation divergences between a teacher ``p`` and a student ``q``.

Every objective has the signature ``fn(student_logits [B,T,V], teacher_logits [B,T,V], mask [B,T], *,
temperature=1.0, ...)`` and returns the **mean divergence per masked position**: the per-position
divergence summed over positions with ``mask != 0`` divided by their number (0, with a gradient path, when
the mask is empty). Both logits are divided by ``temperature`` before the softmax; there is no ``T**2``
factor. Callers pass already-shifted logits and the shifted response mask
(:func:`kdprivacy.encoding.shift_for_causal_lm`).

These are *true* divergences (the teacher entropy is included), never a cross-entropy reported as "KL"
(pitfalls.md). Everything is computed in log space: log-softmax for each distribution and ``logsumexp``
for mixtures, so a probability that underflows to 0 contributes exactly 0 instead of NaN/inf. Teacher
logits are detached: gradients flow to the student only.

Conventions (p = teacher, q = student, per position, summed over the vocabulary):
- ``fkl``  forward KL  KL(p ‖ q) = Σ p log(p/q)
- ``rkl``  reverse KL  KL(q ‖ p) = Σ q log(q/p)
- ``jsd``  generalized JSD(β): m = β p + (1−β) q;  β KL(p ‖ m) + (1−β) KL(q ‖ m). This is the mixture and
  weighting of TRL's ``GKDTrainer.generalized_jsd_loss`` (GKD paper, Agarwal et al. 2024, Eq. 1). As in
  TRL, the ends are special-cased: β = 0 returns forward KL(p ‖ q) and β = 1 reverse KL(q ‖ p) (the formula
  itself is 0 there and would train nothing; near the ends JSD(β) ≈ β·KL(p‖q) and ≈ (1−β)·KL(q‖p), so
  these are the ends of the normalized JSD). Interior β uses the formula unchanged.
- ``tvd``  total variation 0.5 Σ |p − q|
- ``sfkl`` skewed forward KL(α) = KL(p ‖ α p + (1−α) q)      (DistiLLM; α = 0 gives ``fkl``)
- ``srkl`` skewed reverse KL(α) = KL(q ‖ (1−α) p + α q)      (DistiLLM; α = 0 gives ``rkl``)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from kdprivacy.kd import OBJECTIVE_HPARAMS

DEFAULT_BETA = 0.5  # GKD/TRL default
DEFAULT_ALPHA = 0.1  # DistiLLM skew (study.md)


def _log_probs(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    logp = F.log_softmax(logits / temperature, dim=-1)
    # A -inf logit (masked vocabulary entry) would give -inf log-prob and 0 * inf = NaN below; a huge finite
    # floor keeps exp() == 0 while every difference stays finite.
    return logp.clamp_min(torch.finfo(logp.dtype).min / 4)


def _kl(log_a: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """KL(a ‖ b) per position from log-probabilities, summed over the last (vocabulary) axis."""
    return (log_a.exp() * (log_a - log_b)).sum(-1)


def _log_mix(log_a: torch.Tensor, log_b: torch.Tensor, weight_a: float) -> torch.Tensor:
    """log(w·a + (1−w)·b) via logsumexp; exact at w ∈ {0, 1}."""
    if weight_a <= 0.0:
        return log_b
    if weight_a >= 1.0:
        return log_a
    return torch.logaddexp(log_a + math.log(weight_a), log_b + math.log1p(-weight_a))


def _masked_mean(per_position: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum over masked positions / number of masked positions; an empty mask gives 0 (no NaN)."""
    if per_position.shape != mask.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} != logits positions {tuple(per_position.shape)}")
    weight = (mask != 0).to(per_position.dtype)
    # where() (not multiply) so a non-finite value at an unmasked position cannot leak in as NaN.
    total = torch.where(weight > 0, per_position, torch.zeros_like(per_position)).sum()
    return total / weight.sum().clamp_min(1.0)


def _prepare(student_logits, teacher_logits, temperature):
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher logits {tuple(teacher_logits.shape)} "
            "differ; teacher and student must share a tokenizer/vocabulary"
        )
    return _log_probs(student_logits, temperature), _log_probs(teacher_logits.detach(), temperature)


def _check_unit(name: str, value: float) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return value


def forward_kl(student_logits, teacher_logits, mask, *, temperature: float = 1.0) -> torch.Tensor:
    """KL(p_T ‖ q_S) per masked position, averaged."""
    log_q, log_p = _prepare(student_logits, teacher_logits, temperature)
    return _masked_mean(_kl(log_p, log_q), mask)


def reverse_kl(student_logits, teacher_logits, mask, *, temperature: float = 1.0) -> torch.Tensor:
    """KL(q_S ‖ p_T) per masked position, averaged."""
    log_q, log_p = _prepare(student_logits, teacher_logits, temperature)
    return _masked_mean(_kl(log_q, log_p), mask)


def generalized_jsd(
    student_logits, teacher_logits, mask, *, beta: float = DEFAULT_BETA, temperature: float = 1.0
) -> torch.Tensor:
    """β KL(p ‖ m) + (1−β) KL(q ‖ m), m = β p + (1−β) q (TRL GKD convention); as TRL, β = 0 gives forward
    KL(p ‖ q) and β = 1 reverse KL(q ‖ p) instead of the formula's 0."""
    beta = _check_unit("beta", beta)
    log_q, log_p = _prepare(student_logits, teacher_logits, temperature)
    if beta == 0.0:
        return _masked_mean(_kl(log_p, log_q), mask)
    if beta == 1.0:
        return _masked_mean(_kl(log_q, log_p), mask)
    log_m = _log_mix(log_p, log_q, beta)
    per_position = beta * _kl(log_p, log_m) + (1.0 - beta) * _kl(log_q, log_m)
    return _masked_mean(per_position, mask)


def tvd(student_logits, teacher_logits, mask, *, temperature: float = 1.0) -> torch.Tensor:
    """Total variation distance 0.5 Σ |p − q| per masked position, averaged."""
    log_q, log_p = _prepare(student_logits, teacher_logits, temperature)
    return _masked_mean(0.5 * (log_p.exp() - log_q.exp()).abs().sum(-1), mask)


def skewed_forward_kl(
    student_logits, teacher_logits, mask, *, alpha: float = DEFAULT_ALPHA, temperature: float = 1.0
) -> torch.Tensor:
    """KL(p ‖ α p + (1−α) q) (DistiLLM's skewed forward KL; α = 0 is forward KL)."""
    return _skewed_kl(student_logits, teacher_logits, mask, alpha, temperature, reverse=False)


def skewed_reverse_kl(
    student_logits, teacher_logits, mask, *, alpha: float = DEFAULT_ALPHA, temperature: float = 1.0
) -> torch.Tensor:
    """KL(q ‖ (1−α) p + α q) (DistiLLM's skewed reverse KL; α = 0 is reverse KL)."""
    return _skewed_kl(student_logits, teacher_logits, mask, alpha, temperature, reverse=True)


def _skewed_kl(student_logits, teacher_logits, mask, alpha: float, temperature: float, reverse: bool):
    """KL(a ‖ α a + (1−α) b) per masked position, averaged; (a, b) = (p, q), or (q, p) when ``reverse``."""
    alpha = _check_unit("alpha", alpha)
    log_q, log_p = _prepare(student_logits, teacher_logits, temperature)
    a, b = (log_q, log_p) if reverse else (log_p, log_q)
    return _masked_mean(_kl(a, _log_mix(a, b, alpha)), mask)


OBJECTIVES: dict[str, Callable[..., torch.Tensor]] = {
    "fkl": forward_kl,
    "rkl": reverse_kl,
    "jsd": generalized_jsd,
    "tvd": tvd,
    "sfkl": skewed_forward_kl,
    "srkl": skewed_reverse_kl,
}

# Hyperparameters each objective accepts besides ``temperature``: the registry's (tests check that it names
# exactly the functions above, in their order).
HPARAMS: dict[str, tuple[str, ...]] = OBJECTIVE_HPARAMS


def get_objective(name: str, **hparams) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """``fn(student_logits, teacher_logits, mask)`` with ``temperature`` and the objective's own
    hyperparameters bound. Unknown names or hyperparameters the objective does not take raise ValueError."""
    if name not in OBJECTIVES:
        raise ValueError(f"unknown KD objective {name!r}; choose one of {sorted(OBJECTIVES)}")
    allowed = ("temperature", *HPARAMS[name])
    unexpected = sorted(set(hparams) - set(allowed))
    if unexpected:
        raise ValueError(f"objective {name!r} takes {list(allowed)}, not {unexpected}")
    fn = OBJECTIVES[name]

    def objective(student_logits, teacher_logits, mask):
        return fn(student_logits, teacher_logits, mask, **hparams)

    objective.__name__ = f"{name}({', '.join(f'{k}={v}' for k, v in sorted(hparams.items()))})"
    objective.spec = (name, dict(hparams))  # what kdprivacy.kd.fused reads to pick a closed-form gradient
    return objective
