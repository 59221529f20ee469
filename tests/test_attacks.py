import math
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kdprivacy.mia import attacks
from kdprivacy.stats import Bootstrap


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
        {
            "id": ["e"],
            "n_tokens": [0],
            "token_logprobs": [np.zeros(0, np.float32)],
            "token_mu": [np.zeros(0, np.float32)],
            "token_sigma": [np.zeros(0, np.float32)],
        }
    )
    out = attacks.compute_attacks(frame, {"e": "text"}, ["loss", "min_k", "min_k_pp", "zlib"])
    assert len(out) == 4
    assert out.score.map(math.isnan).all()


def test_inconsistent_n_tokens_rejected():
    frame = table()
    frame.loc[0, "n_tokens"] = 4
    with pytest.raises(ValueError, match="n_tokens"):
        attacks.compute_attacks(frame, TEXTS, ["loss"])


# ------------------------------------------------------------------------------------------------------
# Tiny models with *different tokenizers*: every attack against an independent float64 computation.
# ------------------------------------------------------------------------------------------------------
import torch  # noqa: E402
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    OPTConfig,
    OPTForCausalLM,
)  # noqa: E402

from kdprivacy import data, encoding, models  # noqa: E402
from kdprivacy.data.synthetic import generate_synthetic  # noqa: E402
from kdprivacy.mia import scoring  # noqa: E402

MAX_LEN, MAX_PROMPT = 96, 48


@pytest.fixture(scope="module")
def frames():
    raw = generate_synthetic(60, seed=3)
    raw.insert(0, "id", [f"x{i:03d}" for i in range(len(raw))])
    return raw.iloc[:14].reset_index(drop=True), raw.iloc[14:24].reset_index(drop=True), raw


@pytest.fixture(scope="module")
def tokenizers(frames):
    corpus = (frames[2]["instruction"] + " " + frames[2]["response"]).tolist()
    tok_a = models.train_tokenizer(corpus, vocab_size=300)
    tok_b = models.train_tokenizer(corpus[::-1][:30], vocab_size=280)  # another vocabulary
    assert not models.same_vocabulary(tok_a, tok_b)
    return tok_a, tok_b


def _tiny(kind, tok, seed):
    torch.manual_seed(seed)
    v = len(tok)
    if kind == "gpt2":
        m = GPT2LMHeadModel(GPT2Config(vocab_size=v, n_layer=2, n_embd=32, n_head=2, n_positions=128))
    elif kind == "opt":
        m = OPTForCausalLM(
            OPTConfig(
                vocab_size=v,
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=2,
                ffn_dim=64,
                max_position_embeddings=128,
                word_embed_proj_dim=32,
            )
        )
    else:
        m = LlamaForCausalLM(
            LlamaConfig(
                vocab_size=v,
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=2,
                num_key_value_heads=2,
                intermediate_size=64,
                max_position_embeddings=128,
            )
        )
    return m.eval()


@pytest.fixture(scope="module")
def setup(frames, tokenizers):
    tok_a, tok_b = tokenizers
    spec = {"target": ("gpt2", tok_a, 0), "ext": ("opt", tok_b, 1), "pre": ("llama", tok_a, 2)}
    out = {}
    for name, (kind, tok, seed) in spec.items():
        model = _tiny(kind, tok, seed)
        tables = []
        for frame in frames[:2]:
            items = encoding.encode_frame(tok, frame, MAX_LEN, MAX_PROMPT)
            tables.append(
                (items, scoring.score_examples(model, items, scoring.ScoringPass(4, tok.pad_token_id)))
            )
        out[name] = (model, tok, tables)
    return out


def _reference_stats(model, item):
    """float64, unbatched, full-vocab log_softmax: (logprobs, mu, sigma) of the response tokens."""
    m64 = model.double() if next(model.parameters()).dtype != torch.float64 else model
    ids = torch.tensor([list(item.prompt_ids + item.response_ids)])
    with torch.no_grad():
        logp = torch.log_softmax(m64(input_ids=ids).logits[0].double(), dim=-1)
    model.float()
    start = len(item.prompt_ids)
    lp = np.array([float(logp[t - 1, ids[0, t]]) for t in range(start, ids.shape[1])])
    p = logp[start - 1 : ids.shape[1] - 1].exp()
    mu = (p * logp[start - 1 : ids.shape[1] - 1]).sum(-1).numpy()
    var = (p * (logp[start - 1 : ids.shape[1] - 1] - torch.tensor(mu)[:, None]) ** 2).sum(-1).numpy()
    return lp, mu, np.sqrt(var)


def _lowest_mean(values, k):
    m = max(1, math.ceil(k * len(values) - 1e-9))
    return float(np.mean(np.sort(values)[:m]))


def test_every_attack_matches_float64_reference(setup, frames):
    members = frames[0]
    texts = dict(zip(members.id, members.response))
    target_model, _, target_tables = setup["target"]
    items, target = target_tables[0]
    refs = {name: setup[name][2][0][1] for name in ("ext", "pre")}
    pops = {name: setup[name][2][1][1] for name in ("ext", "pre")}
    # the external reference tokenizes the same texts differently: its own token counts
    assert refs["ext"]["id"].tolist() == target["id"].tolist()
    assert refs["ext"]["n_tokens"].tolist() != target["n_tokens"].tolist()
    shuffled = {k: v.sample(frac=1.0, random_state=0) for k, v in refs.items()}  # alignment is by id
    names = ["loss", "min_k", "min_k_pp", "zlib", "ref_ext", "ref_pre", "rmia"]
    rmia_cfg = {"a": 0.6, "gamma": 1.02}
    out = attacks.compute_attacks(
        target,
        texts,
        names,
        min_k=0.2,
        references=shuffled,
        population=target_tables[1][1],
        reference_populations=pops,
        rmia=rmia_cfg,
    )

    def nll64(model, item_list):
        return np.array([-_reference_stats(model, it)[0].mean() for it in item_list])

    expected = {name: [] for name in names}
    for item in items:
        lp, mu, sigma = _reference_stats(target_model, item)
        expected["loss"].append(lp.mean())
        expected["min_k"].append(_lowest_mean(lp, 0.2))
        expected["min_k_pp"].append(_lowest_mean((lp - mu) / np.maximum(sigma, attacks.SIGMA_EPS), 0.2))
        expected["zlib"].append(lp.mean() / len(zlib.compress(texts[item.id].encode("utf-8"))))
    nll_t = nll64(target_model, items)
    ref_nll = {}
    for name in ("ext", "pre"):
        model, _, tables = setup[name]
        ref_nll[name] = (nll64(model, tables[0][0]), nll64(model, tables[1][0]))
        expected[f"ref_{name}"] = ref_nll[name][0] - nll_t
    # RMIA by brute force in probability space
    nll_tz = nll64(target_model, target_tables[1][0])
    a, gamma = rmia_cfg["a"], rmia_cfg["gamma"]

    def lr(p_target, p_refs):
        return p_target / ((1 + a) / 2 * np.mean(p_refs) + (1 - a) / 2)

    lr_x = [lr(np.exp(-nll_t[i]), [np.exp(-ref_nll[r][0][i]) for r in ref_nll]) for i in range(len(items))]
    lr_z = [lr(np.exp(-nll_tz[j]), [np.exp(-ref_nll[r][1][j]) for r in ref_nll]) for j in range(len(nll_tz))]
    # the dominated count, ties ordered by the rank of LR(x) (average ranks), over |Z| + 1
    rank = [sum(y < x for y in lr_x) + (1 + sum(y == x for y in lr_x)) / 2 for x in lr_x]
    expected["rmia"] = [
        (sum(x / z > gamma for z in lr_z) + r / (len(lr_x) + 1)) / (len(lr_z) + 1) for x, r in zip(lr_x, rank)
    ]
    for name in names:
        np.testing.assert_allclose(
            scores_of_list(out, name), expected[name], rtol=2e-5, atol=2e-5, err_msg=name
        )
    assert 0 < np.ptp(expected["rmia"])  # a non-degenerate case


def scores_of_list(frame, attack):
    return frame.loc[frame.attack == attack, "score"].to_numpy()


def test_reference_ids_must_match(setup, frames):
    _, _, tables = setup["target"]
    target = tables[0][1]
    ref = setup["ext"][2][0][1]
    texts = dict(zip(frames[0].id, frames[0].response))
    with pytest.raises(ValueError, match="different examples.*1 missing"):
        attacks.compute_attacks(target, texts, ["ref_ext"], references={"ext": ref.iloc[1:]})
    extra = pd.concat([ref, setup["ext"][2][1][1].iloc[:1]], ignore_index=True)
    with pytest.raises(ValueError, match="1 extra"):
        attacks.compute_attacks(target, texts, ["ref_ext"], references={"ext": extra})
    with pytest.raises(ValueError, match="reference score table named 'nokd'"):
        attacks.compute_attacks(target, texts, ["ref_nokd"], references={"ext": ref})
    with pytest.raises(ValueError, match="population"):
        attacks.compute_attacks(target, texts, ["rmia"], references={"ext": ref})
    # the population must not contain evaluated examples
    with pytest.raises(ValueError, match="also evaluated"):
        attacks.compute_attacks(
            target,
            texts,
            ["rmia"],
            references={"ext": ref},
            population=target,
            reference_populations={"ext": ref},
        )


def test_ref_attack_hand_values_and_auc_below_half():
    target = pd.DataFrame(
        {
            "id": ["m1", "m2", "n1", "n2"],
            "n_tokens": [2, 1, 1, 3],
            "token_logprobs": [
                np.array([-1.0, -3.0]),
                np.array([-1.0]),
                np.array([-0.5]),
                np.array([-0.1, -0.2, -0.3]),
            ],
            "token_mu": [np.zeros(2), np.zeros(1), np.zeros(1), np.zeros(3)],
            "token_sigma": [np.ones(2), np.ones(1), np.ones(1), np.ones(3)],
        }
    )
    ref = pd.DataFrame(
        {
            "id": ["n2", "n1", "m2", "m1"],
            "n_tokens": [1, 1, 1, 1],
            "token_logprobs": [np.array([-5.0]), np.array([-4.0]), np.array([-0.5]), np.array([-1.0])],
        }
    )
    out = attacks.compute_attacks(target, {}, ["ref_x"], references={"x": ref}, short_tokens=2)
    s = dict(zip(out.id, out.score))
    assert s == pytest.approx({"m1": 1.0 - 2.0, "m2": 0.5 - 1.0, "n1": 4.0 - 0.5, "n2": 5.0 - 0.2})
    # short: fewer than 2 tokens under the target *or* the reference (the reference has 1 token each)
    assert out["short"].all()
    from kdprivacy.mia import metrics

    labels = [1, 1, 0, 0]
    auc = metrics.roc_auc(out.score, labels)
    assert auc == 0.0  # members score lower: reported as is, never flipped
    summary = metrics.summarize_attacks(out.assign(label=labels), fprs=(0.5,), bootstrap=Bootstrap(n=20))
    assert summary.auc.item() == 0.0 and summary.auc_ci_high.item() <= 0.5
    assert summary.n_short.item() == 4


def test_short_flag_target_only_attacks():
    frame = table()  # n_tokens 5, 2, 1
    out = attacks.compute_attacks(frame, TEXTS, ["loss", "min_k"], short_tokens=2)
    assert out["short"].tolist() == [False, False, True] * 2
    assert "short" not in attacks.compute_attacks(frame, TEXTS, ["loss"]).columns


def test_mope_attack_reads_table_by_id():
    frame = table()
    mope = pd.DataFrame({"id": ["c", "a", "b"], "mope": [3.0, 1.0, 2.0]})
    out = attacks.compute_attacks(frame, TEXTS, ["mope"], mope=mope)
    assert out.score.tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="MoPe table scores different examples"):
        attacks.compute_attacks(frame, TEXTS, ["mope"], mope=mope.iloc[:2])
    with pytest.raises(ValueError, match="needs a MoPe table"):
        attacks.compute_attacks(frame, TEXTS, ["mope"])


def test_rmia_ratio_details():
    # a = 1: LR = p_T / mean_ref p_ref; gamma compares strictly.
    nll_t = np.array([1.0, 2.0])
    refs = np.array([[1.0, 3.0], [2.0, 2.0]])
    log_lr = attacks.rmia_log_ratio(nll_t, refs, a=1.0)
    expected = np.log(np.exp(-nll_t) / np.exp(-refs).mean(axis=1))
    np.testing.assert_allclose(log_lr, expected)
    # a = 0: Pr(x) = (Pr_out + 1) / 2
    np.testing.assert_allclose(
        attacks.rmia_log_ratio(nll_t, refs, a=0.0),
        np.log(np.exp(-nll_t) / ((np.exp(-refs).mean(axis=1) + 1) / 2)),
    )
    z = np.log(np.array([0.5, 1.0, 2.0]))
    x = np.log(np.array([1.0, 3.0, 0.1]))
    assert attacks.rmia_from_ratios(x, z, gamma=1.0).tolist() == pytest.approx(
        [1 / 3, 1.0, 0.0]
    )  # tie: not >
    assert attacks.rmia_from_ratios(x, z, gamma=1.9).tolist() == pytest.approx([1 / 3, 2 / 3, 0.0])
    assert math.isnan(attacks.rmia_from_ratios(np.array([np.nan]), z)[0])
    with pytest.raises(ValueError):
        attacks.RMIASettings(a=1.5)


# ------------------------------------------------------------------------------------ the attack registry
def test_registry_entries_are_complete():
    """Every attack of the registry: a score function, needs the workflow knows, a config entry, a paper name
    that exists in the paper's table (or None), and a test in this file."""
    import inspect
    import typing
    from importlib import resources

    from kdprivacy import config

    paper = pd.read_csv(resources.files("kdprivacy.resources") / "paper_results.csv")
    paper_attacks = set(paper.loc[paper.metric == "mia_auc", "attack"])
    (literal,) = typing.get_args(config.Attacks.model_fields["names"].annotation)
    assert typing.get_args(literal) == attacks.ATTACK_NAMES  # the config schema reads the registry
    # the tests above this section (a ref_<name> attack is tested through any reference name: ref_ext, ref_pre)
    source = inspect.getsource(inspect.getmodule(test_registry_entries_are_complete)).split("the attack registry")[0]
    source += (Path(__file__).parent / "test_shadows.py").read_text()  # the shadow attacks' own tests
    for name, spec in attacks.ATTACKS.items():
        assert spec.name == name and callable(spec.fn)
        assert set(spec.needs) <= set(attacks.NEEDS)
        assert spec.paper_name is None or spec.paper_name in paper_attacks, name
        calibrated = spec.reference is not None or {"references", "shadows"} & set(spec.needs)
        assert spec.reference_based == bool(calibrated), name
        assert attacks.resolve(name) is spec.fn
        tested = f'"{name}"' in source or (spec.reference is not None and '"ref_ext"' in source)
        assert tested, f"attack {name} has no test in tests/test_attacks.py (or test_shadows.py)"
    assert config.Attacks(names=list(attacks.ATTACK_NAMES), external_reference={"name_or_path": "gpt2"},
                          shadows={"n": 4}).names


def test_registry_carries_what_findings_and_the_paper_comparison_read():
    # the lists the findings (reference-calibrated attacks) and the paper comparison (our -> paper name) used
    assert attacks.ATTACK_NAMES == (
        "loss", "min_k", "min_k_pp", "zlib", "ref_external", "ref_pretrained", "ref_nokd", "mope", "rmia",
        "lira", "lira_offline", "rmia_shadow",
    )
    assert attacks.REFERENCE_ATTACKS == (
        "ref_external", "ref_pretrained", "ref_nokd", "rmia", "lira", "lira_offline", "rmia_shadow"
    )
    assert attacks.PAPER_ATTACKS == {
        "loss": "loss", "min_k": "min_k", "min_k_pp": "min_k_pp", "zlib": "zlib", "ref_external": "ref_external",
        "ref_pretrained": "ref_pretrained", "mope": "mope",
    }
    assert attacks.REFERENCE_NAMES == ("external", "pretrained", "nokd")
    assert attacks.FOCUS_ATTACKS == ("ref_pretrained", "ref_external", "loss")  # the figures' focus attack
    assert set(attacks.FOCUS_ATTACKS) <= set(attacks.ATTACK_NAMES)
    assert attacks.needs(["loss", "rmia"]) == {"references", "population"}
    assert attacks.needs(["zlib", "mope", "ref_nokd"]) == {"texts", "mope", "reference"}
    with pytest.raises(ValueError, match="unknown needs"):
        attacks.AttackSpec("x", attacks.loss_score, None, needs=("gpu",))


def test_registry_imports_without_torch():
    import subprocess
    import sys

    code = "import sys, kdprivacy.mia, kdprivacy.mia.attacks, kdprivacy.config; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_an_added_attack_is_computed_like_the_others(monkeypatch):
    """Extension point: one AttackSpec line in ATTACKS and compute_attacks scores it."""
    spec = attacks.AttackSpec("n_tokens", lambda scores, context: scores["n_tokens"].to_numpy(float), None)
    monkeypatch.setitem(attacks.ATTACKS, spec.name, spec)
    table = pd.DataFrame({
        "id": ["a", "b"], "n_tokens": [2, 1], "token_logprobs": [np.array([-1.0, -2.0]), np.array([-0.5])],
        "token_mu": [np.zeros(2), np.zeros(1)], "token_sigma": [np.ones(2), np.ones(1)],
    })
    out = attacks.compute_attacks(table, {"a": "x", "b": "y"}, ["loss", "n_tokens"])
    assert out.loc[out.attack == "n_tokens", "score"].tolist() == [2.0, 1.0]


# ----------------------------------------------------------- issue #15.1: never the target as its own reference
def test_nokd_reference_rule_never_the_target():
    nokd = [("nokd-small", "small"), ("nokd-big", "big")]
    # any other model: the same-base No-KD student (else the first), same seed -- unchanged
    assert attacks.nokd_reference(nokd, "kd-small", "small", 0, [0]) == ("nokd-small", 0)
    assert attacks.nokd_reference(nokd, "teacher", "teacher", 3, [3]) == ("nokd-small", 3)
    # the No-KD student itself: the next seed's (cyclic); one seed: None (NA), never itself
    assert attacks.nokd_reference(nokd, "nokd-small", "small", 0, [0]) is None
    assert attacks.nokd_reference(nokd, "nokd-small", "small", 0, [0, 1]) == ("nokd-small", 1)
    assert attacks.nokd_reference(nokd, "nokd-small", "small", 1, [0, 1]) == ("nokd-small", 0)
    assert attacks.nokd_reference(nokd, "nokd-big", "big", 7, [3, 7, 9]) == ("nokd-big", 9)


def test_ref_and_rmia_refuse_the_target_as_reference():
    target = table()
    population = table().assign(id=["p", "q", "r"])
    other = table().assign(token_logprobs=[v - 1.0 for v in table().token_logprobs])
    other_pop = other.assign(id=["p", "q", "r"])
    with pytest.raises(ValueError, match="its own reference"):
        attacks.compute_attacks(target, TEXTS, ["ref_nokd"], references={"nokd": table()})
    with pytest.raises(ValueError, match="its own reference"):
        attacks.compute_attacks(
            target, TEXTS, ["rmia"], references={"ext": other, "nokd": table()}, population=population,
            reference_populations={"ext": other_pop, "nokd": population},
        )
    out = attacks.compute_attacks(
        target, TEXTS, ["ref_ext", "rmia"], references={"ext": other}, population=population,
        reference_populations={"ext": other_pop},
    )
    assert scores_of(out, "ref_ext") == pytest.approx({"a": 1.0, "b": 1.0, "c": 1.0})


def test_untestable_nokd_reference_is_na_and_dropped_from_rmia():
    na, refs = attacks.untestable_attacks(
        ["loss", "ref_nokd", "ref_external", "rmia"], {"nokd": attacks.NO_NOKD_REFERENCE}, None,
        ["external", "pretrained"],
    )
    assert na == {"ref_nokd": attacks.NO_NOKD_REFERENCE} and refs is None  # RMIA: the remaining references
    na, refs = attacks.untestable_attacks(
        ["ref_nokd", "rmia"], {"nokd": attacks.NO_NOKD_REFERENCE}, ["nokd", "external"], ["external"]
    )
    assert set(na) == {"ref_nokd"} and refs == ("external",)
    na, refs = attacks.untestable_attacks(["ref_nokd", "rmia"], {"nokd": "x"}, ["nokd"], [])
    assert set(na) == {"ref_nokd", "rmia"} and refs == ()
    assert attacks.untestable_attacks(["ref_nokd", "rmia"], {}, None, ["nokd"]) == ({}, None)


def _run_attack_metrics(tmp_path, cfg, inputs):
    import runpy
    import types
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    outputs = {k: str(tmp_path / f"attacks.{k}") for k in ("per_example", "metrics", "per_category", "roc")}
    smk = types.SimpleNamespace(
        scriptdir=str(repo / "scripts"), params=types.SimpleNamespace(cfg=cfg, code="test-code"),
        input=types.SimpleNamespace(**inputs, items=lambda: inputs.items()),
        output=types.SimpleNamespace(**outputs, items=lambda: outputs.items()), log=[], threads=1, rule="test",
    )
    runpy.run_path(str(repo / "scripts" / "attack_metrics.py"), init_globals={"snakemake": smk}, run_name="__main__")
    return {k: (pd.read_parquet(v) if k == "per_example" else pd.read_csv(v)) for k, v in outputs.items()}


def _scores(ids, rng, shift=0.0, labels=None):
    n = len(ids)
    lps = [rng.normal(-2.0 + shift, 1.0, size=4) for _ in range(n)]
    frame = pd.DataFrame({"id": ids, "n_tokens": 4, "token_logprobs": lps,
                          "token_mu": [np.zeros(4)] * n, "token_sigma": [np.ones(4)] * n})
    if labels is not None:
        frame["label"] = labels
        frame["category"] = ["x" if i % 2 else "y" for i in range(n)]
    return frame


def test_attack_metrics_job_writes_na_for_an_untestable_nokd_reference(tmp_path):
    rng = np.random.default_rng(0)
    ids = [f"e{i}" for i in range(40)]
    target = _scores(ids, rng, labels=[1] * 20 + [0] * 20)
    ext = _scores(ids, rng, shift=-0.5)
    pop_ids = [f"p{i}" for i in range(30)]
    paths = {}
    for name, frame in {"scores": target, "ref_external": ext, "population": _scores(pop_ids, rng),
                        "population_external": _scores(pop_ids, rng, shift=-0.5)}.items():
        paths[name] = str(tmp_path / f"{name}.parquet")
        frame.to_parquet(paths[name])
    paths["manifest"] = str(tmp_path / "manifest.parquet")
    pd.DataFrame({"id": ids, "response": ["text"] * 40}).to_parquet(paths["manifest"])
    names = ["loss", "ref_external", "ref_nokd", "rmia"]
    cfg = {"names": names, "min_k": 0.2, "min_k_count": "ceil", "fprs": [0.05], "n_bootstrap": 10, "bootstrap_seed": 0,
           "short_tokens": 2, "roc_max_points": 50, "rmia": {"a": 1.0, "gamma": 1.0, "references": None},
           "untestable": {"nokd": attacks.NO_NOKD_REFERENCE}}
    out = _run_attack_metrics(tmp_path, cfg, paths)
    m = out["metrics"].set_index("attack")
    assert list(m.index) == names
    assert math.isnan(m.loc["ref_nokd", "auc"]) and math.isnan(m.loc["ref_nokd", "auc_ci_low"])  # NA, not 0.5
    assert m.loc["ref_nokd", "note"] == attacks.NO_NOKD_REFERENCE
    assert m.loc["ref_nokd", "n_members"] == 20 and m.loc["ref_nokd", "n_nonmembers"] == 20
    assert m.drop(index="ref_nokd")["auc"].notna().all() and m.drop(index="ref_nokd")["note"].isna().all()
    assert "ref_nokd" not in set(out["per_example"].attack) and "ref_nokd" not in set(out["roc"].attack)
    cat = out["per_category"]
    assert cat[cat.attack == "ref_nokd"]["auc"].isna().all() and set(cat[cat.attack == "ref_nokd"].category) == {"x", "y"}
    # RMIA configured with only the No-KD reference: nothing remains, NA too
    cfg2 = {**cfg, "rmia": {"a": 1.0, "gamma": 1.0, "references": ["nokd"]}}
    m2 = _run_attack_metrics(tmp_path, cfg2, paths)["metrics"].set_index("attack")
    assert math.isnan(m2.loc["rmia", "auc"]) and "no reference model other than the target" in m2.loc["rmia", "note"]


def test_min_k_count_floor_as_mimir():
    """n = 10 tokens, k = 0.25: ceil gives 3 tokens, floor 2 (MIMIR: int(10 * 0.25)); n = 3, k = 0.2: floor
    would average no token (MIMIR: NaN), we keep 1."""
    assert [attacks.n_lowest(10, 0.25, c) for c in ("ceil", "floor")] == [3, 2]
    assert [attacks.n_lowest(3, 0.2, c) for c in ("ceil", "floor")] == [1, 1]
    assert attacks.n_lowest(15, 0.2, "floor") == 3  # float noise: 0.2 * 15 = 3.0000000000000004
    assert attacks.n_lowest(0, 0.2, "floor") == 0
    lp = -np.arange(1.0, 11.0)  # log-probs -1 .. -10
    frame = pd.DataFrame({"id": ["a"], "n_tokens": [10], "token_logprobs": [lp], "token_mu": [np.zeros(10)],
                          "token_sigma": [np.ones(10)]})
    ceil = attacks.compute_attacks(frame, {"a": "t"}, ["min_k", "min_k_pp"], min_k=0.25)
    floor = attacks.compute_attacks(frame, {"a": "t"}, ["min_k", "min_k_pp"], min_k=0.25, min_k_count="floor")
    assert scores_of(ceil, "min_k")["a"] == pytest.approx(-9.0)  # mean of -10, -9, -8
    assert scores_of(floor, "min_k")["a"] == pytest.approx(-9.5)  # mean of -10, -9
    assert scores_of(floor, "min_k_pp")["a"] == pytest.approx(-9.5)  # mu 0, sigma 1: z = l
    with pytest.raises(ValueError, match="min_k_count"):
        attacks.compute_attacks(frame, {"a": "t"}, ["min_k"], min_k_count="round")
