"""Shadow-calibrated attacks (kdprivacy.mia.shadows): the IN/OUT assignment, LiRA online/offline and RMIA with
shadow references, checked against closed forms and on a toy where membership is planted: smoothed bigram
language models trained on their IN examples (a real model that memorises what it saw: a member's bigrams
become likely), with examples of very different difficulty so that the plain loss attack is confounded."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from kdprivacy.mia import metrics, shadows
from kdprivacy.mia.attacks import rmia_log_ratio, rmia_tie_broken

VOCAB = 400
LENGTH = 24


def _corpus(rng, n, temperature):
    """``n`` token sequences; ``temperature`` per sequence: low = common tokens (easy), high = rare (hard)."""
    ranks = np.arange(1, VOCAB + 1)
    out = []
    for t in np.broadcast_to(temperature, (n,)):
        p = ranks ** (-1.0 / t)
        out.append(rng.choice(VOCAB, size=LENGTH, p=p / p.sum()))
    return out


class Bigram:
    """Interpolated bigram LM, ``P(b|a) = lam c(a,b)/c(a) + (1 - lam) P_uni(b)`` (add-one unigram)."""

    def __init__(self, sequences, lam=0.7):
        self.big = np.zeros((VOCAB, VOCAB))
        uni = np.ones(VOCAB)
        for s in sequences:
            np.add.at(self.big, (s[:-1], s[1:]), 1)
            np.add.at(uni, s, 1)
        self.uni = uni / uni.sum()
        self.lam = lam

    def nll(self, sequences):
        out = []
        for s in sequences:
            a, b = s[:-1], s[1:]
            row = self.big[a].sum(axis=1)
            cond = np.divide(self.big[a, b], row, out=np.zeros(len(a)), where=row > 0)
            p = np.where(row > 0, self.lam * cond + (1 - self.lam) * self.uni[b], self.uni[b])
            out.append(-np.log(p).mean())
        return np.array(out)


@pytest.fixture(scope="module")
def planted():
    """400 candidates (half members of the target), a public corpus, 16 shadows on complementary halves."""
    rng = np.random.default_rng(0)
    n = 400
    candidates = _corpus(rng, n, rng.uniform(0.4, 3.0, size=n))
    public = _corpus(rng, 1500, 1.0)
    members = rng.permutation(n) < n // 2
    target = Bigram(public + [c for c, m in zip(candidates, members) if m])
    keep = shadows.assign(n, 16, seed=1)
    shadow_nll = np.stack(
        [Bigram(public + [c for c, k in zip(candidates, keep[:, j]) if k]).nll(candidates) for j in range(16)],
        axis=1,
    )
    population = _corpus(rng, 300, rng.uniform(0.4, 3.0, size=300))
    pop_shadow = np.stack(
        [Bigram(public + [c for c, k in zip(candidates, keep[:, j]) if k]).nll(population) for j in range(16)],
        axis=1,
    )
    return dict(
        candidates=candidates,
        public=public,
        members=members.astype(int),
        target_nll=target.nll(candidates),
        keep=keep,
        shadow_nll=shadow_nll,
        population=population,
        pop_target=target.nll(population),
        pop_shadow=pop_shadow,
    )


# -- assignment --


def test_assignment_is_balanced_for_every_shadow_and_every_example():
    keep = shadows.assign(201, 8, seed=3)
    assert keep.shape == (201, 8)
    assert set(keep.sum(axis=0)) <= {100, 101}  # every shadow: a half of the 201 candidates
    assert (keep.sum(axis=1) == 4).all()  # every candidate: IN for exactly 4 of the 8 shadows
    shadows.check_balance(keep)
    odd = shadows.assign(50, 5, seed=3)  # an odd last shadow draws its own half
    assert (odd.sum(axis=0) == 25).all() and set(odd.sum(axis=1)) <= {2, 3}
    shadows.check_balance(odd)


def test_assignment_is_seeded_and_random():
    a, b = shadows.assign(100, 8, seed=7), shadows.assign(100, 8, seed=7)
    assert np.array_equal(a, b)
    c = shadows.assign(100, 8, seed=8)
    assert not np.array_equal(a, c)
    # the pairs are complementary, but different pairs are not copies of each other
    assert np.array_equal(a[:, 0], ~a[:, 1]) and not np.array_equal(a[:, 0], a[:, 2])
    # across many seeds, each candidate's first-shadow membership is a fair coin
    first = np.stack([shadows.assign(100, 2, seed=s)[:, 0] for s in range(200)])
    assert abs(first.mean() - 0.5) < 0.02


def test_check_balance_names_the_problem():
    keep = shadows.assign(40, 4, seed=0)
    bad = keep.copy()
    bad[:, 0] = True
    with pytest.raises(ValueError, match=r"shadow\(s\) \[0\] do not hold half"):
        shadows.check_balance(bad)
    # every shadow holds half, but candidates 0-1 are IN both shadows and 2-3 in neither
    lopsided = np.array([[1, 1], [1, 1], [0, 0], [0, 0]], dtype=bool)
    with pytest.raises(ValueError, match=r"4 candidate\(s\) are not IN for half of the 2 shadows"):
        shadows.check_balance(lopsided)
    with pytest.raises(ValueError, match="at least 2 shadows"):
        shadows.assign(10, 1, seed=0)


def test_assignment_table_round_trips_in_any_row_order():
    ids = [f"ex{i}" for i in range(12)]
    keep = shadows.assign(12, 4, seed=5)
    table = shadows.assignment_table(ids, keep)
    assert list(table.columns) == ["example_id", "shadow", "in"] and len(table) == 48
    shuffled = table.sample(frac=1.0, random_state=0)
    assert np.array_equal(shadows.keep_from_table(shuffled, ids), keep)
    assert np.array_equal(shadows.keep_from_table(table, ids[::-1]), keep[::-1])
    with pytest.raises(ValueError, match="no shadow assignment"):
        shadows.keep_from_table(table, ids + ["new"])
    with pytest.raises(ValueError, match="ids"):
        shadows.assignment_table(ids[:-1], keep)


# -- closed forms and degenerate cases --


def test_logit_confidence_closed_form_and_clipping():
    nll = np.array([0.1, 0.6931471805599453, 2.0, 50.0, 0.0])
    p = np.exp(-nll[:3])
    assert np.allclose(shadows.logit_confidence(nll[:3]), np.log(p / (1 - p)))
    assert abs(shadows.logit_confidence([math.log(2)])[0]) < 1e-12  # p = 1/2 -> 0
    phi = shadows.logit_confidence(nll)
    assert np.isfinite(phi).all()
    assert phi[3] == pytest.approx(math.log(shadows.P_EPS), abs=1e-6)  # p clipped at P_EPS
    assert phi[4] == pytest.approx(-math.log(shadows.P_EPS), abs=1e-3)  # p clipped at 1 - P_EPS
    with pytest.raises(ValueError, match="NaN"):
        shadows.logit_confidence([np.nan])


def test_lira_online_and_offline_equal_the_gaussian_formulas():
    rng = np.random.default_rng(2)
    n, m = 30, 80
    keep = shadows.assign(n, m, seed=0)
    shadow_nll = rng.uniform(0.5, 3.0, size=(n, m))
    target = rng.uniform(0.5, 3.0, size=n)
    phi_s, phi_t = shadows.logit_confidence(shadow_nll), shadows.logit_confidence(target)
    online = shadows.lira_online(target, shadow_nll, keep, variance="per_example")
    offline = shadows.lira_offline(target, shadow_nll, keep, variance="per_example")
    for i in range(n):
        ins, outs = phi_s[i, keep[i]], phi_s[i, ~keep[i]]
        want = sps.norm.logpdf(phi_t[i], ins.mean(), ins.std(ddof=1)) - sps.norm.logpdf(
            phi_t[i], outs.mean(), outs.std(ddof=1)
        )
        assert online[i] == pytest.approx(want, rel=1e-10, abs=1e-10)
        assert offline[i] == pytest.approx(sps.norm.logcdf(phi_t[i], outs.mean(), outs.std(ddof=1)), rel=1e-10)
    # 40 IN and 40 OUT per example >= PER_EXAMPLE_MIN: auto picks per-example fits
    assert np.array_equal(shadows.lira_online(target, shadow_nll, keep), online)
    # global: one pooled deviation per role, from each example's deviations from its own mean
    glob = shadows.lira_online(target, shadow_nll, keep, variance="global")
    dev = np.concatenate(
        [phi_s[i, mask[i]] - phi_s[i, mask[i]].mean() for mask in (keep, ~keep) for i in range(n)]
    )
    sd = math.sqrt((dev**2).sum() / (dev.size - 2 * n))  # one mean per example and role
    for i in (0, 3, n - 1):
        want = sps.norm.logpdf(phi_t[i], phi_s[i, keep[i]].mean(), sd) - sps.norm.logpdf(
            phi_t[i], phi_s[i, ~keep[i]].mean(), sd
        )
        assert glob[i] == pytest.approx(want, rel=1e-10)
    off = shadows.lira_offline(target, shadow_nll, keep, variance="global")
    dev_out = np.concatenate([phi_s[i, ~keep[i]] - phi_s[i, ~keep[i]].mean() for i in range(n)])
    sd_out = math.sqrt((dev_out**2).sum() / (dev_out.size - n))
    assert off[3] == pytest.approx(sps.norm.logcdf(phi_t[3], phi_s[3, ~keep[3]].mean(), sd_out), rel=1e-10)


def test_lira_degenerate_cases():
    keep = shadows.assign(20, 4, seed=0)
    same = np.full((20, 4), 1.3)
    target = np.full(20, 1.3)
    # IN and OUT shadows identical, deviation 0 (floored): the likelihood ratio is exactly 0 for everyone
    assert np.allclose(shadows.lira_online(target, same, keep), 0.0)
    # offline at the OUT mean: log Phi(0) = log 1/2
    assert np.allclose(shadows.lira_offline(target, same, keep), math.log(0.5))
    with pytest.raises(ValueError, match="per-example variance needs >= 2"):
        shadows.lira_online(target, same[:, :2], shadows.assign(20, 2, seed=0), variance="per_example")
    with pytest.raises(ValueError, match="do not match"):
        shadows.lira_online(target[:5], same, keep)
    with pytest.raises(ValueError, match="variance must be one of"):
        shadows.lira_online(target, same, keep, variance="median")
    two = shadows.assign(20, 2, seed=0)  # one IN and one OUT per example: a pooled variance has no dof
    with pytest.raises(ValueError, match="pooled variance needs more"):
        shadows.lira_online(target, same[:, :2], two)


def test_rmia_shadow_reduces_to_the_reference_formula():
    rng = np.random.default_rng(4)
    n, m, nz = 25, 6, 40
    keep = shadows.assign(n, m, seed=1)
    sh, tgt = rng.uniform(1, 3, (n, m)), rng.uniform(1, 3, n)
    pz, pzs = rng.uniform(1, 3, nz), rng.uniform(1, 3, (nz, m))
    online = shadows.rmia_shadow(tgt, sh, keep, pz, pzs, online=True)
    assert np.allclose(online, rmia_tie_broken(rmia_log_ratio(tgt, sh), rmia_log_ratio(pz, pzs)))
    offline = shadows.rmia_shadow(tgt, sh, keep, pz, pzs, online=False, a=0.3)
    for i in range(n):
        outs = sh[i, ~keep[i]]
        want_x = rmia_log_ratio(tgt[i : i + 1], outs[None, :], a=0.3)[0]
        lr_x = np.array(
            [rmia_log_ratio(tgt[k : k + 1], sh[k, ~keep[k]][None, :], a=0.3)[0] for k in range(n)]
        )
        assert lr_x[i] == pytest.approx(want_x)
    assert np.allclose(offline, rmia_tie_broken(lr_x, rmia_log_ratio(pz, pzs, a=0.3)))
    # target identical to every shadow: LR = 1 for x and z alike; strict '>' dominates nothing
    flat = shadows.rmia_shadow(np.full(n, 2.0), np.full((n, m), 2.0), keep, np.full(nz, 2.0), np.full((nz, m), 2.0))
    assert (flat < 1 / (nz + 1)).all()


# -- the planted toy --


def test_planted_membership_lira_beats_the_loss_attack_at_low_fpr(planted):
    y = planted["members"]
    loss = -planted["target_nll"]
    online = shadows.lira_online(planted["target_nll"], planted["shadow_nll"], planted["keep"])
    offline = shadows.lira_offline(planted["target_nll"], planted["shadow_nll"], planted["keep"])
    rmia = shadows.rmia_shadow(
        planted["target_nll"], planted["shadow_nll"], planted["keep"], planted["pop_target"], planted["pop_shadow"]
    )
    tpr = {name: metrics.tpr_at_fpr(s, y, 0.01) for name, s in
           [("loss", loss), ("online", online), ("offline", offline), ("rmia", rmia)]}
    auc = {name: metrics.roc_auc(s, y) for name, s in [("loss", loss), ("online", online), ("rmia", rmia)]}
    # difficulty confounds the raw loss: almost nothing at 1% FPR (AUC ~0.86 here)
    assert tpr["loss"] < 0.15, (auc, tpr)
    # calibrated against shadows trained with and without each example: clearly better at low FPR
    assert tpr["online"] > tpr["loss"] + 0.3, tpr
    assert tpr["offline"] > tpr["loss"] + 0.2, tpr
    assert auc["online"] > auc["loss"] + 0.05 and auc["rmia"] > auc["loss"], auc


def test_lira_is_at_chance_when_the_target_never_saw_the_candidates(planted):
    """The target is trained on public data only; the 'member' labels are a coin flip: nothing to find."""
    target_nll = Bigram(planted["public"]).nll(planted["candidates"])
    y = planted["members"]
    online = shadows.lira_online(target_nll, planted["shadow_nll"], planted["keep"])
    lo, hi = metrics.bootstrap_auc_ci(online, y)
    assert lo < 0.5 < hi and abs(metrics.roc_auc(online, y) - 0.5) < 0.08


def test_lira_is_at_chance_with_shadows_independent_of_the_candidates(planted):
    """Shadows trained on other data than the candidates: their IN/OUT labels mean nothing, so LiRA has no
    contrast to calibrate with, and its AUC is ~0.5 even though the target has real members (with separate
    IN and OUT deviations it was 0.64 here: the module docstring's outlier term)."""
    rng = np.random.default_rng(11)
    keep = planted["keep"]
    others = [Bigram(planted["public"] + _corpus(rng, 200, 1.5)).nll(planted["candidates"]) for _ in range(keep.shape[1])]
    online = shadows.lira_online(planted["target_nll"], np.stack(others, axis=1), keep)
    y = planted["members"]
    lo, hi = metrics.bootstrap_auc_ci(online, y)
    assert lo < 0.5 < hi and abs(metrics.roc_auc(online, y) - 0.5) < 0.08


# -- config and registry --


def _validate_demo(**attacks):
    from pathlib import Path

    import yaml

    from kdprivacy.config import validate_config

    raw = yaml.safe_load((Path(__file__).resolve().parents[1] / "config.yaml").read_text())
    raw["attacks"].update(attacks)
    return validate_config(raw)


@pytest.mark.parametrize(
    ("attacks", "needle"),
    [
        ({"shadows": {"n": 1}}, r"attacks.shadows.n must be 0 \(off\) or >= 2"),
        ({"names": ["loss", "lira"]}, r"need shadow pipelines: set attacks.shadows.n >= 2"),
        ({"names": ["loss", "lira"], "shadows": {"n": 2}}, r"need attacks.shadows.n >= 4 \(got 2\)"),
        ({"names": ["loss", "rmia_shadow"], "shadows": {"n": 2, "models": ["teacher", "nope"]}},
         r"no student \['nope'\] in family 'gpt2'"),
        ({"shadows": {"n": 4, "models": ["teacher", "teacher"]}}, "repeat"),
    ],
)
def test_shadow_config_errors_name_the_problem(attacks, needle):
    from kdprivacy.config import ConfigError

    with pytest.raises(ConfigError, match=needle):
        _validate_demo(**attacks)


def test_shadow_config_accepted_and_off_by_default():
    assert _validate_demo().attacks.shadows.n == 0
    cfg = _validate_demo(names=["loss", "lira", "lira_offline"], shadows={"n": 4, "models": ["teacher", "kd-small"]})
    assert cfg.attacks.shadows.models == ["teacher", "kd-small"] and cfg.attacks.shadows.seed == 1000
    assert _validate_demo(names=["loss", "rmia_shadow"], shadows={"n": 2}).attacks.shadows.n == 2


def test_registry_shadow_attacks_and_untestable_models():
    from kdprivacy.mia.registry import ATTACKS, SHADOW_ATTACKS, needs, untestable_attacks

    assert SHADOW_ATTACKS == ("lira", "lira_offline", "rmia_shadow")
    assert all(ATTACKS[n].reference_based and ATTACKS[n].paper_name is None for n in SHADOW_ATTACKS)
    assert {"shadows", "population"} <= needs(["rmia_shadow"]) and needs(["lira"]) == {"shadows"}
    assert ATTACKS["lira"].fn is shadows.lira_score
    na, _ = untestable_attacks(["loss", "lira", "rmia_shadow"], {"shadows": "no shadows"}, None, [])
    assert na == {"lira": "no shadows", "rmia_shadow": "no shadows"}
    assert untestable_attacks(["loss", "lira"], {}, None, [])[0] == {}


def test_compute_attacks_with_shadow_tables(planted):
    """The registry path: score tables in, per-example LiRA out, equal to the direct function; the target as
    one of its own shadows is refused."""
    import pandas as pd

    from kdprivacy.mia.attacks import compute_attacks

    n = len(planted["target_nll"])
    ids = [f"c{i}" for i in range(n)]

    def table(nll, rows=ids):  # a score table whose mean token NLL is ``nll`` (one token per example)
        return pd.DataFrame({"id": rows, "n_tokens": 1, "token_logprobs": [np.array([-v]) for v in nll],
                             "token_mu": [np.array([0.0])] * len(rows), "token_sigma": [np.array([1.0])] * len(rows)})

    target = table(planted["target_nll"])
    tables = shadows.ShadowTables(shadows.assignment_table(ids, planted["keep"]),
                                  [table(planted["shadow_nll"][:, j]) for j in range(planted["keep"].shape[1])])
    long = compute_attacks(target, {}, ["loss", "lira", "lira_offline"], shadows=tables)
    got = long[long.attack == "lira"]["score"].to_numpy()
    assert np.allclose(got, shadows.lira_online(planted["target_nll"], planted["shadow_nll"], planted["keep"]))
    with pytest.raises(ValueError, match="needs the shadow models"):
        compute_attacks(target, {}, ["lira"])
    selfish = shadows.ShadowTables(tables.assignment, [target, *tables.scores[1:]])
    with pytest.raises(ValueError, match="shadow 0"):
        compute_attacks(target, {}, ["lira"], shadows=selfish)
    curve = shadows.shadow_count_curve(target.assign(label=planted["members"]), tables, [4, 8, 16], [0.01])
    assert curve["n_shadows"].tolist() == [4, 8, 16]
    assert curve["auc"].iloc[-1] > 0.95 and curve["tpr_at_fpr_0.01"].iloc[-1] > 0.5


def test_adding_shadows_keeps_the_existing_ones():
    """A shadow's half depends on (seed, shadow) only: 6 shadows start with the 4 of a 4-shadow run (their
    trained models stay valid), and each column is shadow_half of its index."""
    four, six = shadows.assign(99, 4, seed=2), shadows.assign(99, 6, seed=2)
    assert np.array_equal(six[:, :4], four)
    assert all(np.array_equal(six[:, j], shadows.shadow_half(99, j, 2)) for j in range(6))
    assert not np.array_equal(shadows.shadow_half(99, 0, 2), shadows.shadow_half(99, 2, 2))


def test_shadow_candidates_are_the_scorers_member_and_nonmember_pools():
    from kdprivacy.mia import jobs, scoring

    assert jobs.SHADOW_CANDIDATE_POOLS == (scoring.MEMBER_POOL, scoring.NONMEMBER_POOL)
