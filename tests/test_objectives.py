"""KD divergences against an independent float64 NumPy/SciPy reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import softmax
from scipy.stats import entropy

from kdprivacy.kd import objectives
from kdprivacy.kd.objectives import OBJECTIVES, get_objective

B, T, V = 3, 5, 11


def _random(seed: int = 0, scale: float = 3.0):
    rng = np.random.default_rng(seed)
    student = rng.normal(0, scale, (B, T, V))
    teacher = rng.normal(0, scale, (B, T, V))
    mask = np.ones((B, T))
    mask[0, 3:] = 0  # right padding
    mask[2, :2] = 0  # prompt positions
    return student, teacher, mask


def _kl(a, b):
    return entropy(a, b, axis=-1)  # scipy: sum a log(a/b)


def _reference(name, student, teacher, mask, temperature=1.0, beta=0.5, alpha=0.1):
    q = softmax(student / temperature, axis=-1)
    p = softmax(teacher / temperature, axis=-1)
    if name == "fkl":
        d = _kl(p, q)
    elif name == "rkl":
        d = _kl(q, p)
    elif name == "jsd":
        m = beta * p + (1 - beta) * q
        d = beta * _kl(p, m) + (1 - beta) * _kl(q, m)
    elif name == "tvd":
        d = 0.5 * np.abs(p - q).sum(-1)
    elif name == "sfkl":
        d = _kl(p, alpha * p + (1 - alpha) * q)
    elif name == "srkl":
        d = _kl(q, (1 - alpha) * p + alpha * q)
    else:
        raise AssertionError(name)
    return float((d * mask).sum() / mask.sum())


def _t(x, dtype=torch.float32, grad=False):
    return torch.tensor(x, dtype=dtype, requires_grad=grad)


HP = {"fkl": {}, "rkl": {}, "jsd": {"beta": 0.3}, "tvd": {}, "sfkl": {"alpha": 0.2}, "srkl": {"alpha": 0.2}}


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
@pytest.mark.parametrize("temperature", [1.0, 2.0, 0.5])
def test_matches_float64_reference(name, temperature):
    s, t, m = _random(1)
    got = get_objective(name, temperature=temperature, **HP[name])(_t(s, torch.float64), _t(t, torch.float64), _t(m))
    want = _reference(name, s, t, m, temperature, **HP[name])
    assert got.item() == pytest.approx(want, rel=1e-9, abs=1e-12)
    # float32 inputs too
    got32 = get_objective(name, temperature=temperature, **HP[name])(_t(s), _t(t), _t(m))
    assert got32.item() == pytest.approx(want, rel=1e-4, abs=1e-6)


def test_temperature_changes_value_consistently():
    s, t, m = _random(2)
    # temperature T on logits x equals temperature 1 on logits x / T
    a = objectives.forward_kl(_t(s), _t(t), _t(m), temperature=4.0)
    b = objectives.forward_kl(_t(s / 4), _t(t / 4), _t(m))
    assert a.item() == pytest.approx(b.item(), rel=1e-5)
    assert a.item() < objectives.forward_kl(_t(s), _t(t), _t(m)).item()  # softer distributions, closer
    with pytest.raises(ValueError):
        objectives.forward_kl(_t(s), _t(t), _t(m), temperature=0.0)


def test_padding_positions_are_ignored():
    s, t, m = _random(3)
    s2, t2 = s.copy(), t.copy()
    s2[m == 0] = 1e3 * np.random.default_rng(0).normal(size=(int((m == 0).sum()), V))
    t2[m == 0] = 0.0
    for name in OBJECTIVES:
        fn = get_objective(name)
        assert fn(_t(s), _t(t), _t(m)).item() == pytest.approx(fn(_t(s2), _t(t2), _t(m)).item(), rel=1e-6)


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_identical_distributions_give_zero(name):
    s, _, m = _random(4)
    # shifted logits: same distribution
    got = get_objective(name, **HP[name])(_t(s), _t(s + 7.0), _t(m))
    assert abs(got.item()) < 1e-6


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_non_negative(name):
    for seed in range(5):
        s, t, m = _random(10 + seed, scale=5.0)
        assert get_objective(name, **HP[name])(_t(s), _t(t), _t(m)).item() >= 0.0


def test_empty_mask_gives_zero_not_nan():
    s, t, _ = _random(5)
    student = _t(s, grad=True)
    for name in OBJECTIVES:
        value = get_objective(name)(student, _t(t), torch.zeros(B, T))
        assert value.item() == 0.0
        value.backward()
        assert torch.isfinite(student.grad).all()
        student.grad = None


def test_jsd_limits_and_small_beta():
    s, t, m = _random(6)
    args = (_t(s, torch.float64), _t(t, torch.float64), _t(m))
    fkl = objectives.forward_kl(*args).item()
    rkl = objectives.reverse_kl(*args).item()
    # JSD(beta) ~ beta * KL(p||q) as beta -> 0 and ~ (1 - beta) * KL(q||p) as beta -> 1
    eps = 1e-8
    assert objectives.generalized_jsd(*args, beta=eps).item() / eps == pytest.approx(fkl, rel=1e-3)
    assert objectives.generalized_jsd(*args, beta=1 - eps).item() / eps == pytest.approx(rkl, rel=1e-3)
    # symmetric JSD (beta = 0.5) is bounded by log 2 and symmetric in p, q
    half = objectives.generalized_jsd(*args, beta=0.5).item()
    swapped = objectives.generalized_jsd(args[1], args[0], args[2], beta=0.5).item()
    assert 0 < half <= np.log(2) and half == pytest.approx(swapped, rel=1e-10)
    with pytest.raises(ValueError):
        objectives.generalized_jsd(*args, beta=1.5)


def _closed_form(s, t, m, fn):
    """Mean over masked positions of fn(p, q) per position, p = teacher, q = student softmax (numpy, float64)."""
    def softmax(x):
        e = np.exp(x - x.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)
    p, q = softmax(np.asarray(t, np.float64)), softmax(np.asarray(s, np.float64))
    values = fn(p, q)
    keep = np.asarray(m) != 0
    return values[keep].sum() / keep.sum()


def test_jsd_endpoints_are_trl_forward_and_reverse_kl():
    """TRL's generalized_jsd_loss: beta = 0 is KL(teacher || student), beta = 1 is KL(student || teacher)
    (not the formula's 0, which trains nothing); interior beta is TRL's mixture m = beta p + (1 - beta) q."""
    s, t, m = _random(6)
    args = (_t(s, torch.float64), _t(t, torch.float64), _t(m))
    kl = lambda a, b: (a * np.log(a / b)).sum(-1)  # noqa: E731
    fkl = _closed_form(s, t, m, lambda p, q: kl(p, q))
    rkl = _closed_form(s, t, m, lambda p, q: kl(q, p))
    assert fkl > 0.01 and rkl > 0.01
    assert objectives.generalized_jsd(*args, beta=0.0).item() == pytest.approx(fkl, rel=1e-10)
    assert objectives.generalized_jsd(*args, beta=1.0).item() == pytest.approx(rkl, rel=1e-10)
    for beta in (0.1, 0.5, 0.9):
        def jsd(p, q, beta=beta):
            mix = beta * p + (1 - beta) * q
            return beta * kl(p, mix) + (1 - beta) * kl(q, mix)
        assert objectives.generalized_jsd(*args, beta=beta).item() == pytest.approx(
            _closed_form(s, t, m, jsd), rel=1e-10)


def test_skew_zero_is_plain_kl_and_skew_one_is_zero():
    s, t, m = _random(7)
    args = (_t(s, torch.float64), _t(t, torch.float64), _t(m))
    assert objectives.skewed_forward_kl(*args, alpha=0.0).item() == pytest.approx(objectives.forward_kl(*args).item())
    assert objectives.skewed_reverse_kl(*args, alpha=0.0).item() == pytest.approx(objectives.reverse_kl(*args).item())
    assert objectives.skewed_forward_kl(*args, alpha=1.0).item() == pytest.approx(0.0, abs=1e-12)
    assert objectives.skewed_reverse_kl(*args, alpha=1.0).item() == pytest.approx(0.0, abs=1e-12)
    # skewing toward the first argument shrinks the divergence
    assert objectives.skewed_forward_kl(*args, alpha=0.1).item() < objectives.forward_kl(*args).item()


def test_extreme_logits_large_vocab_no_nan():
    gen = torch.Generator().manual_seed(0)
    vocab = 50_000
    student = (torch.randn(2, 3, vocab, generator=gen) * 1e4).requires_grad_(True)
    teacher = torch.randn(2, 3, vocab, generator=gen) * 1e4
    mask = torch.tensor([[1, 1, 0], [0, 1, 1]])
    for name in OBJECTIVES:
        value = get_objective(name, **HP[name])(student, teacher, mask)
        assert torch.isfinite(value), name
        assert value.item() >= 0.0
        value.backward()
        assert torch.isfinite(student.grad).all(), name
        student.grad = None
    # -inf logits (masked vocabulary) do not produce NaN either
    neg = teacher.clone()
    neg[..., :10] = float("-inf")
    for name in OBJECTIVES:
        assert torch.isfinite(get_objective(name, **HP[name])(student, neg, mask)), name


def test_gradients_reach_student_only():
    s, t, m = _random(8)
    student, teacher = _t(s, grad=True), _t(t, grad=True)
    for name in OBJECTIVES:
        get_objective(name, **HP[name])(student, teacher, _t(m)).backward()
        assert student.grad is not None and student.grad.abs().sum() > 0
        assert teacher.grad is None
        student.grad = None


def test_gradient_matches_finite_difference():
    s, t, m = _random(9)
    student = _t(s, torch.float64, grad=True)
    objectives.reverse_kl(student, _t(t, torch.float64), _t(m)).backward()
    idx = (1, 2, 4)
    h = 1e-6
    plus, minus = s.copy(), s.copy()
    plus[idx] += h
    minus[idx] -= h
    numeric = (_reference("rkl", plus, t, m) - _reference("rkl", minus, t, m)) / (2 * h)
    assert student.grad[idx].item() == pytest.approx(numeric, rel=1e-5, abs=1e-9)


def test_registry_and_errors():
    assert set(OBJECTIVES) == {"fkl", "rkl", "jsd", "tvd", "sfkl", "srkl"}
    # one list of names (kdprivacy.kd, torch-free) for the functions, the config schema and the figures
    from kdprivacy import config
    from kdprivacy.kd import OBJECTIVE_NAMES, REVERSE_OBJECTIVES

    assert tuple(OBJECTIVES) == OBJECTIVE_NAMES == config.OBJECTIVES == tuple(objectives.HPARAMS)
    assert set(REVERSE_OBJECTIVES) <= set(OBJECTIVE_NAMES)
    assert config.json_schema()["$defs"]["KD"]["properties"]["objective"]["enum"] == list(OBJECTIVE_NAMES)
    with pytest.raises(ValueError, match="fkl"):
        get_objective("kl")
    with pytest.raises(ValueError, match="beta"):
        get_objective("fkl", beta=0.5)
    s, t, m = _random(0)
    with pytest.raises(ValueError, match="vocabulary"):
        objectives.forward_kl(_t(s), _t(t[..., :-1]), _t(m))
