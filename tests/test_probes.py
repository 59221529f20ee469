"""Per-block probes (kdprivacy.mia.probes): the logit lens from one hidden-state pass and the linear probe."""

import numpy as np
import pytest
import torch
from test_blocks import ARCHS, EOS, N_LAYER, PAD, VOCAB, build, make_items
from transformers import OPTConfig, OPTForCausalLM

from kdprivacy.encoding import Encoded
from kdprivacy.mia import attacks, blocks, metrics, probes, scoring
from kdprivacy.stats import NO_BOOTSTRAP, Bootstrap

CONTEXT = attacks.AttackContext(texts={}, min_k=0.3)


def opt_with_projection():
    """OPT whose embedding width differs from the hidden width: the output path has project_out."""
    torch.manual_seed(1)
    ids = {"vocab_size": VOCAB, "pad_token_id": PAD, "eos_token_id": EOS, "bos_token_id": EOS}
    return OPTForCausalLM(OPTConfig(num_hidden_layers=N_LAYER, hidden_size=16, num_attention_heads=2, ffn_dim=32,
                                    max_position_embeddings=64, word_embed_proj_dim=8, **ids)).eval()


MODELS = {**{arch: (lambda arch=arch: build(arch)) for arch in ARCHS}, "opt-project": opt_with_projection}
PATHS = {"gpt2": ["LayerNorm"], "opt": ["LayerNorm"], "llama": ["LlamaRMSNorm"],
         "opt-project": ["LayerNorm", "Linear"]}


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("batch_size, chunk", [(5, 7), (24, 512)])
def test_lens_at_the_last_block_is_the_models_own_loss_score(name, batch_size, chunk):
    model = MODELS[name]()
    items, _ = make_items(24)
    scoring_pass = scoring.ScoringPass(batch_size, PAD, position_chunk=chunk)
    assert [type(m).__name__ for m in probes.output_path(model, items[0], PAD)] == PATHS[name]
    read = probes.hidden_state_pass(model, items, scoring_pass, min_k=CONTEXT.min_k)
    ordinary = scoring.score_examples(model, items, scoring_pass)
    assert read.lens["lens_loss"].shape == (N_LAYER, 24) and len(read.block_names) == N_LAYER
    np.testing.assert_array_equal(read.lens["lens_loss"][-1], attacks.loss_score(ordinary, CONTEXT))
    np.testing.assert_array_equal(read.lens["lens_min_k_pp"][-1], attacks.min_k_pp_score(ordinary, CONTEXT))
    # earlier blocks read something else (the lens of an intermediate state is not the output distribution)
    assert not np.allclose(read.lens["lens_loss"][0], read.lens["lens_loss"][-1])


@pytest.mark.parametrize("name", list(MODELS))
def test_pooled_states_are_the_block_outputs(name):
    """The probe's features: the mean over response tokens of each block's output, as HF's hidden_states
    report them (the last entry there is after the final norm, so it is compared up to the last-but-one)."""
    model = MODELS[name]()
    items, _ = make_items(6)
    read = probes.hidden_state_pass(model, items, scoring.ScoringPass(4, PAD), lens=False)
    assert read.lens == {} and len(read.features) == N_LAYER
    for row, item in enumerate(items):
        ids = torch.tensor([item.prompt_ids + item.response_ids])
        with torch.no_grad():
            states = model(input_ids=ids, output_hidden_states=True).hidden_states
        for block in range(N_LAYER - 1):
            expected = states[block + 1][0, len(item.prompt_ids):].mean(0).numpy()
            np.testing.assert_allclose(read.features[block][row], expected, rtol=1e-5, atol=1e-6)


def test_an_output_path_that_is_not_a_chain_of_modules_is_refused():
    """A functional step between the last block and the head (here: a scaling pre-hook on the head, as a
    soft-cap or a scale written in forward() would be) cannot be reproduced by the lens: refused by name."""
    model = build("gpt2")
    model.lm_head.register_forward_pre_hook(lambda module, args: (args[0] * 2.0,))
    items, _ = make_items(4)
    with pytest.raises(ValueError, match="GPT2LMHeadModel.*not a chain of modules"):
        probes.hidden_state_pass(model, items, scoring.ScoringPass(4, PAD))
    probes.hidden_state_pass(model, items, scoring.ScoringPass(4, PAD), lens=False)  # the probe needs no lens


def test_an_example_without_response_tokens_is_nan_and_counted():
    model = build("llama")
    items, labels = make_items(12)
    items[3] = Encoded(items[3].id, items[3].prompt_ids, ())
    per_block, per_example = blocks.hidden_state_signals(model, items, labels, batch_size=4, pad_id=PAD,
                                                         bootstrap=NO_BOOTSTRAP, probe={"folds": 2})
    assert (per_block["n_invalid"] == 1).all() and per_block["auc"].isna().all()
    assert per_example[per_example["id"] == items[3].id]["score"].isna().all()
    assert per_example[per_example["id"] != items[3].id]["score"].notna().all()


def test_hidden_state_signal_tables():
    model = build("opt")
    items, labels = make_items(20)
    per_block, per_example = blocks.hidden_state_signals(model, items, labels, batch_size=8, pad_id=PAD,
                                                         bootstrap=Bootstrap(n=20), probe={"folds": 2})
    assert list(per_block.columns) == blocks.BLOCK_COLUMNS
    assert per_block["signal"].tolist() == [s for s in ("lens_loss", "lens_min_k_pp", "probe") for _ in range(3)]
    assert per_block["relative_depth"].tolist()[:3] == [1 / 3, 2 / 3, 1.0]
    assert per_block["sigma"].isna().all() and per_block["k"].isna().all()
    assert per_block.loc[per_block.signal == "probe", "access"].str.contains("upper-bound").all()
    assert (per_block["auc_ci_low"] <= per_block["auc"]).all() and (per_block["auc"] <= per_block["auc_ci_high"]).all()
    assert len(per_example) == 9 * 20
    # each row's AUC is the AUC of its per-example scores
    for _, row in per_block.iterrows():
        mine = per_example[(per_example.signal == row.signal) & (per_example.block == row.block)]
        assert metrics.roc_auc(mine.score.to_numpy(), mine.label.to_numpy()) == pytest.approx(row.auc)
    with pytest.raises(ValueError, match="hidden-state signals"):
        blocks.hidden_state_signals(model, items, labels, signals=["mope"], pad_id=PAD)


# ------------------------------------------------------------------------------------------ linear probe
def test_fit_logistic_is_scikit_learns_objective():
    sklearn = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5))
    y = (x[:, 0] + 0.5 * rng.normal(size=60) > 0).astype(int)
    weights = probes._balanced(np.r_[y[:50], np.zeros(10, int)])
    y = np.r_[y[:50], np.zeros(10, int)]
    for c in (0.1, 1.0, 10.0):
        w, b = probes.fit_logistic(x, y, c, weights)
        ref = sklearn.LogisticRegression(C=c, tol=1e-12, max_iter=10000).fit(x, y, sample_weight=weights)
        np.testing.assert_allclose(w, ref.coef_[0], rtol=1e-4, atol=1e-6)
        assert b == pytest.approx(ref.intercept_[0], rel=1e-4, abs=1e-6)


def test_stratified_folds():
    y = np.array([1] * 13 + [0] * 7)
    fold = probes.stratified_folds(y, 3, seed=0)
    for k in range(3):
        assert sum((fold == k) & (y == 1)) in (4, 5) and sum((fold == k) & (y == 0)) in (2, 3)
    np.testing.assert_array_equal(fold, probes.stratified_folds(y, 3, seed=0))
    assert not np.array_equal(fold, probes.stratified_folds(y, 3, seed=1))
    with pytest.raises(ValueError, match="class 0 has 7"):
        probes.stratified_folds(y, 8, seed=0)
    with pytest.raises(ValueError, match="folds must be >= 2"):
        probes.stratified_folds(y, 1, seed=0)


def test_the_probe_never_sees_its_own_folds_labels():
    """Pure-noise features with more dimensions than examples: fitted and scored on the same examples a
    probe separates them perfectly (AUC ~1: what a leak would show); out of fold it is at chance, and with
    the labels permuted it stays at chance."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 200))
    y = np.array([1, 0] * 40)
    w, b = probes.fit_logistic((x - x.mean(0)) / x.std(0), y, 1.0)
    assert metrics.roc_auc((x - x.mean(0)) / x.std(0) @ w + b, y) > 0.99  # the in-sample control
    assert abs(metrics.roc_auc(probes.cv_probe(x, y, folds=5), y) - 0.5) < 0.15
    # a real signal is found, and it vanishes under label permutation
    x[:, :10] += 1.0 * y[:, None]
    assert metrics.roc_auc(probes.cv_probe(x, y, folds=5), y) > 0.75
    permuted = [metrics.roc_auc(probes.cv_probe(x, p, folds=5, seed=i), p)
                for i, p in enumerate(rng.permutation(y) for _ in range(12))]
    assert abs(np.mean(permuted) - 0.5) < 0.06


def test_extra_negatives_train_but_are_never_scored():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(30, 4)), np.array([1, 0] * 15)
    x[:, 1] += y
    extra = rng.normal(size=(40, 4))
    plain, more = probes.cv_probe(x, y, folds=3), probes.cv_probe(x, y, folds=3, extra_negatives=extra)
    assert plain.shape == more.shape == (30,) and not np.allclose(plain, more)
    with pytest.raises(ValueError, match="extra negatives"):
        probes.cv_probe(x, y, folds=3, extra_negatives=extra[:, :3])
    x[4] = np.nan
    scores = probes.cv_probe(x, y, folds=3)
    assert np.isnan(scores[4]) and np.isfinite(np.delete(scores, 4)).all()
