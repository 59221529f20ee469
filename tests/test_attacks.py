import math
import zlib

import numpy as np
import pandas as pd
import pytest

from kdprivacy import attacks


def table():
    return pd.DataFrame(
        {
            "id": ["a", "b", "c"],
            "n_tokens": [5, 2, 1],
            "token_logprobs": [
                np.array([-1.0, -4.0, -0.5, -2.0, -3.0], dtype=np.float32),
                np.array([-0.25, -0.75], dtype=np.float32),
                np.array([-6.0], dtype=np.float32),
            ],
            "token_mu": [
                np.array([-1.0, -1.0, -1.0, -1.0, -1.0], dtype=np.float32),
                np.array([-0.5, -0.5], dtype=np.float32),
                np.array([-2.0], dtype=np.float32),
            ],
            "token_sigma": [
                np.array([1.0, 2.0, 0.5, 1.0, 0.0], dtype=np.float32),
                np.array([0.5, 0.25], dtype=np.float32),
                np.array([2.0], dtype=np.float32),
            ],
        }
    )


TEXTS = {"a": "The quick brown fox.", "b": "", "c": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}


def scores_of(frame, attack):
    part = frame[frame.attack == attack]
    return dict(zip(part.id, part.score))


def test_hand_computed_scores():
    out = attacks.compute_attacks(table(), TEXTS, ["loss", "min_k", "min_k_pp", "zlib"], min_k=0.2)
    assert list(out.columns) == ["id", "attack", "score"]
    assert len(out) == 12
    loss = scores_of(out, "loss")
    assert loss["a"] == pytest.approx(-10.5 / 5)
    assert loss["b"] == pytest.approx(-0.5)
    assert loss["c"] == pytest.approx(-6.0)
    # Min-K% (k=0.2): ceil(0.2*5)=1 lowest log-prob of a; ceil(0.4)=1 for b; ceil(0.2)=1 for c.
    mink = scores_of(out, "min_k")
    assert mink == pytest.approx({"a": -4.0, "b": -0.75, "c": -6.0})
    # Min-K%++: z = (lp - mu)/max(sigma, eps). a: [0, -1.5, 1, -1, -2/eps] -> lowest is -2e6.
    pp = scores_of(out, "min_k_pp")
    assert pp["a"] == pytest.approx(-2.0 / attacks.SIGMA_EPS)
    assert pp["b"] == pytest.approx(min(0.25 / 0.5, -0.25 / 0.25))
    assert pp["c"] == pytest.approx(-2.0)
    z = scores_of(out, "zlib")
    for key in "abc":
        assert z[key] == pytest.approx(loss[key] / len(zlib.compress(TEXTS[key].encode("utf-8"))))


def test_min_k_uses_log_probs_and_ceil():
    frame = table()
    out = attacks.compute_attacks(frame, TEXTS, ["min_k"], min_k=0.5)
    # a: ceil(2.5)=3 lowest log-probs -4, -3, -2 -> -3 (log space, not probabilities)
    assert scores_of(out, "min_k")["a"] == pytest.approx(-3.0)
    assert scores_of(out, "min_k")["b"] == pytest.approx(-0.75)  # ceil(0.5*2) = 1 lowest
    # Probability space would give mean(exp(-4), exp(-3), exp(-2)) > 0; log space is negative.
    assert scores_of(out, "min_k")["a"] != pytest.approx(np.mean(np.exp([-4.0, -3.0, -2.0])))
    assert attacks.n_lowest(15, 0.2) == 3  # 0.2*15 = 3.0000000000000004 must not become 4
    assert attacks.n_lowest(5, 0.2) == 1
    assert attacks.n_lowest(1, 0.2) == 1


def test_higher_is_member():
    frame = table()
    out = attacks.compute_attacks(frame, TEXTS, ["loss"])
    s = scores_of(out, "loss")
    assert s["b"] > s["a"] > s["c"]  # b has the highest likelihood


def test_order_and_unknown_attack():
    out = attacks.compute_attacks(table(), TEXTS, ["zlib", "loss"])
    assert out.attack.tolist() == ["zlib"] * 3 + ["loss"] * 3
    assert out.id.tolist() == ["a", "b", "c"] * 2
    with pytest.raises(ValueError, match="known:.*loss"):
        attacks.compute_attacks(table(), TEXTS, ["loss", "ref"])


def test_zlib_needs_every_text():
    with pytest.raises(ValueError, match="missing 1"):
        attacks.compute_attacks(table(), {"a": "x", "b": "y"}, ["zlib"])


def test_zero_tokens_give_nan_not_dropped():
    frame = pd.DataFrame(
        {"id": ["e"], "n_tokens": [0], "token_logprobs": [np.zeros(0, np.float32)],
         "token_mu": [np.zeros(0, np.float32)], "token_sigma": [np.zeros(0, np.float32)]}
    )
    out = attacks.compute_attacks(frame, {"e": "text"}, ["loss", "min_k", "min_k_pp", "zlib"])
    assert len(out) == 4
    assert out.score.map(math.isnan).all()


def test_inconsistent_n_tokens_rejected():
    frame = table()
    frame.loc[0, "n_tokens"] = 4
    with pytest.raises(ValueError, match="n_tokens"):
        attacks.compute_attacks(frame, TEXTS, ["loss"])
