import math

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from kdprivacy.mia import scoring
from kdprivacy.mia.scoring import ScoringPass
from kdprivacy.encoding import Encoded

PAD = 0


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_layer=2, n_embd=32, n_head=2, n_positions=64))
    return m.eval()


def make_items(seed=0, n=7):
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        p = int(rng.integers(1, 9))
        r = int(rng.integers(1, 12))
        items.append(
            Encoded(
                f"ex{i}",
                tuple(int(t) for t in rng.integers(1, 50, p)),
                tuple(int(t) for t in rng.integers(1, 50, r)),
            )
        )
    return items


def reference(model, item):
    """Independent float64 computation: full-vocab log_softmax at every position of the unpadded sequence."""
    ids = torch.tensor([list(item.prompt_ids + item.response_ids)])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].double()
    logp_all = torch.log_softmax(logits, dim=-1)
    lp, mus, sigmas = [], [], []
    start = len(item.prompt_ids)
    for t in range(max(start, 1), ids.shape[1]):
        row = logp_all[t - 1]
        p = row.exp()
        mu = float((p * row).sum())
        second = float((p * row * row).sum())
        lp.append(float(row[ids[0, t]]))
        mus.append(mu)
        sigmas.append(math.sqrt(max(second - mu * mu, 0.0)))
    return np.array(lp), np.array(mus), np.array(sigmas)


def test_matches_float64_reference(model):
    items = make_items()
    frame = scoring.score_examples(model, items, ScoringPass(batch_size=3, pad_id=PAD, position_chunk=5))
    assert list(frame.columns) == scoring.SCORE_COLUMNS
    assert frame["id"].tolist() == [it.id for it in items]  # input order preserved
    for item, row in zip(items, frame.itertuples(index=False)):
        lp, mu, sigma = reference(model, item)
        assert row.n_tokens == len(item.response_ids) == len(lp)
        assert row.token_logprobs.dtype == np.float32
        np.testing.assert_allclose(row.token_logprobs, lp, atol=1e-5)
        np.testing.assert_allclose(row.token_mu, mu, atol=1e-5)
        np.testing.assert_allclose(row.token_sigma, sigma, atol=1e-5)


def test_batch_and_padding_invariance(model):
    items = make_items(seed=1, n=6)
    batched = scoring.score_examples(model, items, ScoringPass(batch_size=6, pad_id=PAD))
    for item, row in zip(items, batched.itertuples(index=False)):
        alone = scoring.score_examples(model, [item], ScoringPass(batch_size=1, pad_id=PAD)).iloc[0]
        for column in ("token_logprobs", "token_mu", "token_sigma"):
            np.testing.assert_allclose(getattr(row, column), alone[column], atol=1e-5)


def test_full_logits_path_equals_head_path(model, caplog):
    items = make_items(seed=2, n=5)
    with caplog.at_level("WARNING"):
        auto = scoring.score_examples(model, items, ScoringPass(batch_size=2, pad_id=PAD, position_chunk=3))
    assert "full logits" not in caplog.text  # the memory-bounded LM-head path was used
    full = scoring.score_examples(model, items, ScoringPass(batch_size=2, pad_id=PAD, head_mode="full"))
    for a, f in zip(auto.itertuples(index=False), full.itertuples(index=False)):
        np.testing.assert_allclose(a.token_logprobs, f.token_logprobs, atol=1e-6)
        np.testing.assert_allclose(a.token_sigma, f.token_sigma, atol=1e-6)


def test_head_hook_is_removed(model):
    head = model.get_output_embeddings()
    scoring.score_examples(model, make_items(n=2), ScoringPass(batch_size=2, pad_id=PAD))
    assert not head._forward_pre_hooks
    ids = torch.tensor([[1, 2, 3]])
    assert model(input_ids=ids).logits.shape == (1, 3, 50)


def test_zero_response_tokens_kept(model):
    # A response at position 0 has no predictable first token: kept with n_tokens 0, never dropped.
    items = [Encoded("empty", (), (7,)), Encoded("normal", (3, 4), (5, 6))]
    frame = scoring.score_examples(model, items, ScoringPass(batch_size=2, pad_id=PAD))
    assert frame["id"].tolist() == ["empty", "normal"]
    assert frame["n_tokens"].tolist() == [0, 2]
    assert len(frame.loc[0, "token_logprobs"]) == 0


def test_token_statistics_handles_minus_inf():
    logits = torch.tensor([[0.0, 0.0, -math.inf], [5.0, -math.inf, -math.inf]])
    lp, mu, sigma = scoring.token_statistics(logits, torch.tensor([0, 0]))
    assert torch.isfinite(mu).all() and torch.isfinite(sigma).all()
    np.testing.assert_allclose(lp.numpy(), [math.log(0.5), 0.0], atol=1e-6)
    np.testing.assert_allclose(mu.numpy(), [math.log(0.5), 0.0], atol=1e-6)
    np.testing.assert_allclose(sigma.numpy(), [0.0, 0.0], atol=1e-6)


def manifest(n_private=30, n_nonmember=25):
    rows = [{"id": f"p{i:03d}", "pool": "private", "category": "open_qa"} for i in range(n_private)]
    rows += [{"id": f"n{i:03d}", "pool": "nonmember", "category": "open_qa"} for i in range(n_nonmember)]
    rows += [{"id": f"u{i:03d}", "pool": "public", "category": "open_qa"} for i in range(10)]
    return pd.DataFrame(rows).sample(frac=1.0, random_state=3).reset_index(drop=True)


def test_evaluation_set_deterministic_and_labelled():
    m = manifest()
    a = scoring.evaluation_set(m, 10, 8, seed=5)
    b = scoring.evaluation_set(m.sample(frac=1.0, random_state=9), 10, 8, seed=5)
    pd.testing.assert_frame_equal(a, b)  # independent of manifest row order
    assert (a.label == 1).sum() == 10 and (a.label == 0).sum() == 8
    assert set(a.loc[a.label == 1, "pool"]) == {"private"}
    assert set(a.loc[a.label == 0, "pool"]) == {"nonmember"}
    assert a.loc[a.label == 1, "id"].is_monotonic_increasing
    c = scoring.evaluation_set(m, 10, 8, seed=6)
    assert set(c.id) != set(a.id)
    full = scoring.evaluation_set(m, None, None, seed=0)
    assert len(full) == 55


def test_evaluation_set_needs_both_pools():
    m = manifest(n_nonmember=0)
    with pytest.raises(ValueError, match="both pools"):
        scoring.evaluation_set(m, None, None, seed=0)


class SoftcappedGPT2(GPT2LMHeadModel):
    """Post-processes the LM-head output (like Gemma-2 soft-capping): the hidden-state path is unusable."""

    def forward(self, *args, **kwargs):
        out = super().forward(*args, **kwargs)
        out.logits = 3.0 * torch.tanh(out.logits / 3.0)
        return out


def test_post_processed_logits_fall_back_to_full_logits(model, caplog):
    capped = SoftcappedGPT2(model.config).eval()
    capped.load_state_dict(model.state_dict())
    items = make_items(seed=4, n=4)
    with caplog.at_level("WARNING"):
        frame = scoring.score_examples(capped, items, ScoringPass(batch_size=2, pad_id=PAD))
    assert "full logits" in caplog.text
    for item, row in zip(items, frame.itertuples(index=False)):
        lp, _, sigma = reference(capped, item)
        np.testing.assert_allclose(row.token_logprobs, lp, atol=1e-5)
        np.testing.assert_allclose(row.token_sigma, sigma, atol=1e-5)


# ------------------------------------------------------------------------------- mean NLL, population
def test_mean_nll_matches_reference(model):
    items = make_items(seed=5, n=6) + [Encoded("empty", (), (7,))]
    nll = scoring.mean_nll(model, items, ScoringPass(batch_size=3, pad_id=PAD, position_chunk=4))
    full = scoring.score_examples(model, items, ScoringPass(batch_size=3, pad_id=PAD))
    for item, value, lp in zip(items[:-1], nll, full.token_logprobs):
        ref_lp, _, _ = reference(model, item)
        assert value == pytest.approx(-ref_lp.mean(), abs=1e-5)
        assert value == pytest.approx(-np.mean(lp.astype(np.float64)), abs=1e-6)
    assert math.isnan(nll[-1])  # no scored token: NaN, kept in place


def test_population_set():
    m = manifest()
    m = pd.concat(
        [m, pd.DataFrame([{"id": f"d{i:03d}", "pool": "dev", "category": "open_qa"} for i in range(7)])],
        ignore_index=True,
    )
    pop = scoring.population_set(m, max_examples=5, seed=1)
    assert len(pop) == 5 and set(pop.pool) == {"dev"} and pop.id.is_monotonic_increasing
    pd.testing.assert_frame_equal(
        pop, scoring.population_set(m.sample(frac=1.0, random_state=2), max_examples=5, seed=1)
    )
    both = scoring.population_set(m, ["public", "dev"], None)
    assert len(both) == 17
    for bad in (["dev", "private"], ["nonmember"]):
        with pytest.raises(ValueError, match="neither members nor non-members"):
            scoring.population_set(m, bad)
    with pytest.raises(ValueError, match="unknown population pool"):
        scoring.population_set(m, ["devv"])


def test_short_counts():
    assert scoring.short_counts([0, 1, 4, 5, 30], short_tokens=5) == {
        "n_examples": 5,
        "n_empty": 1,
        "n_short": 3,
    }


# ------------------------------------------------------------------------------------- scripts end to end
import runpy  # noqa: E402
import types  # noqa: E402
from pathlib import Path  # noqa: E402

from kdprivacy import models  # noqa: E402
from kdprivacy.config import Split  # noqa: E402
from kdprivacy.data.manifest import build_manifest  # noqa: E402
from kdprivacy.data.synthetic import generate_synthetic  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def run_script(name, cfg, inputs, outputs, rule="test"):
    smk = types.SimpleNamespace(
        scriptdir=str(REPO / "scripts"),
        params=types.SimpleNamespace(cfg=cfg, code="test-code"),
        input=types.SimpleNamespace(**inputs, items=lambda: inputs.items()),
        output=types.SimpleNamespace(**outputs, items=lambda: outputs.items()),
        log=[],
        threads=1,
        rule=rule,
    )
    runpy.run_path(str(REPO / "scripts" / name), init_globals={"snakemake": smk}, run_name="__main__")


def test_scripts_score_reference_population_mope_attacks(tmp_path):
    split = Split(seed=0, nonmember=12, dev=8, private=12, public=10)
    man = build_manifest(generate_synthetic(60, seed=2), split)
    man_path = tmp_path / "manifest.parquet"
    man.to_parquet(man_path, index=False)
    corpus = (man.instruction + " " + man.response).tolist()
    dirs = {}
    for name, arch, vocab, seed in (
        ("target", "gpt2", 300, 0),
        ("ext", "opt", 270, 1),
        ("pre", "llama", 300, 2),
    ):
        tok = models.train_tokenizer(corpus if name != "ext" else corpus[:30], vocab_size=vocab)
        net = models.build_from_scratch(
            {"arch": arch, "n_layer": 2, "d_model": 32, "n_head": 2}, tok, 128, seed
        )
        dirs[name] = tmp_path / name
        models.save_model(net, tok, dirs[name])
    cfg = {
        "model": None,
        "batch_size": 4,
        "max_members": None,
        "max_nonmembers": 10,
        "sample_seed": 0,
        "max_length": 96,
        "max_prompt_length": 48,
        "short_tokens": 12,
        "population": {"pools": ["dev"], "max_examples": 6, "seed": 0},
        "precision": "fp32",
    }
    for name in dirs:
        run_script(
            "score_model.py",
            cfg,
            {"manifest": str(man_path), "model": str(dirs[name])},
            {
                "scores": str(tmp_path / f"{name}.parquet"),
                "population": str(tmp_path / f"{name}.pop.parquet"),
            },
        )
    target = pd.read_parquet(tmp_path / "target.parquet")
    ext = pd.read_parquet(tmp_path / "ext.parquet")
    assert len(target) == 22 and target.label.sum() == 12  # 12 members, 10 of 12 non-members
    assert target.id.tolist() == ext.id.tolist()  # same examples, whatever the tokenizer
    assert target.n_tokens.tolist() != ext.n_tokens.tolist()
    pop = pd.read_parquet(tmp_path / "target.pop.parquet")
    assert len(pop) == 6 and set(pop.pool) == {"dev"} and not set(pop.id) & set(target.id)
    assert (tmp_path / "target.parquet.provenance.json").is_file()

    mope_cfg = {**cfg, "k": 2, "sigma": 0.01, "seed": 0, "block": None}
    run_script(
        "mope.py",
        mope_cfg,
        {"manifest": str(man_path), "model": str(dirs["target"])},
        {"mope": str(tmp_path / "mope.parquet")},
    )
    mope = pd.read_parquet(tmp_path / "mope.parquet")
    assert mope.id.tolist() == target.id.tolist() and mope.mope.notna().all()
    assert mope.n_tokens.tolist() == target.n_tokens.tolist()
    run_script(
        "mope.py",
        {**mope_cfg, "block": 1},
        {"manifest": str(man_path), "model": str(dirs["target"])},
        {"mope": str(tmp_path / "mope_block1.parquet")},
    )
    assert not np.allclose(pd.read_parquet(tmp_path / "mope_block1.parquet").mope, mope.mope)

    names = ["loss", "min_k", "min_k_pp", "zlib", "ref_ext", "ref_pre", "rmia", "mope"]
    attack_cfg = {
        "names": names,
        "min_k": 0.2,
        "min_k_count": "ceil",
        "fprs": [0.05, 0.01],
        "n_bootstrap": 20,
        "bootstrap_seed": 0,
        "short_tokens": 12,
        "rmia": {"a": 1.0, "gamma": 1.0},
        "roc_max_points": 50,
    }
    inputs = {
        "scores": str(tmp_path / "target.parquet"),
        "manifest": str(man_path),
        "ref_ext": str(tmp_path / "ext.parquet"),
        "ref_pre": str(tmp_path / "pre.parquet"),
        "population": str(tmp_path / "target.pop.parquet"),
        "population_ext": str(tmp_path / "ext.pop.parquet"),
        "population_pre": str(tmp_path / "pre.pop.parquet"),
        "mope": str(tmp_path / "mope.parquet"),
    }
    outputs = {k: str(tmp_path / f"attacks.{k}") for k in ("per_example", "metrics", "per_category", "roc")}
    run_script("attack_metrics.py", attack_cfg, inputs, outputs)
    per_example = pd.read_parquet(outputs["per_example"])
    assert per_example.columns.tolist() == ["id", "label", "category", "n_tokens", "attack", "score", "short"]
    assert len(per_example) == 22 * len(names) and per_example.score.notna().all()
    summary = pd.read_csv(outputs["metrics"])
    assert summary.attack.tolist() == names
    assert (summary.n_members == 12).all() and (summary.n_nonmembers == 10).all()
    # short: < 12 tokens under any model the attack reads -> ref attacks count at least the target's
    counts = dict(zip(summary.attack, summary.n_short))
    assert counts["loss"] == int((target.n_tokens < 12).sum())
    assert counts["ref_ext"] >= counts["loss"] and counts["rmia"] >= counts["ref_ext"]
    assert summary["tpr_at_fpr_0.05"].isna().all()  # 10 non-members < 20
    by_category = pd.read_csv(outputs["per_category"])
    assert set(by_category.attack) == set(names)
    assert by_category.groupby("attack")[["n_members", "n_nonmembers"]].sum().eq([12, 10]).all().all()
    roc = pd.read_csv(outputs["roc"])
    assert set(roc.attack) == set(names) and roc.fpr.between(0, 1).all()
    # a missing reference table is an error, never a silent skip
    with pytest.raises(ValueError, match="reference score table named 'nokd'"):
        run_script(
            "attack_metrics.py",
            {**attack_cfg, "names": ["ref_nokd"]},
            inputs,
            {"per_example": str(tmp_path / "x.parquet"), "metrics": str(tmp_path / "x.csv")},
        )


def test_without_eos_drops_one_scored_token(model):
    """MIMIR's scored text has no EOS (evaluation.score_eos false): each complete response loses exactly its
    final token; the other log-probabilities are unchanged; a truncated response (no EOS) is kept whole."""
    from kdprivacy.encoding import without_eos

    eos = 49
    items = [Encoded("a", (3, 4), (5, 6, 7, eos)), Encoded("b", (8,), (9, 10)), Encoded("c", (3,), (eos,))]
    stripped = without_eos(items, eos)
    assert [i.response_ids for i in stripped] == [(5, 6, 7), (9, 10), ()]
    both = [scoring.score_examples(model, x, ScoringPass(2, PAD)).set_index("id") for x in (items, stripped)]
    assert both[0].n_tokens.tolist() == [4, 2, 1] and both[1].n_tokens.tolist() == [3, 2, 0]
    np.testing.assert_allclose(both[1].loc["a", "token_logprobs"], both[0].loc["a", "token_logprobs"][:3],
                               rtol=1e-6)
    assert without_eos(items, None) == items


def test_score_model_script_score_eos_false(tmp_path):
    split = Split(seed=0, nonmember=6, dev=4, private=6, public=4)
    man = build_manifest(generate_synthetic(30, seed=2), split)
    man_path = tmp_path / "manifest.parquet"
    man.to_parquet(man_path, index=False)
    tok = models.train_tokenizer((man.instruction + " " + man.response).tolist(), vocab_size=300)
    net = models.build_from_scratch({"arch": "gpt2", "n_layer": 1, "d_model": 16, "n_head": 2}, tok, 256, 0)
    models.save_model(net, tok, tmp_path / "m")
    cfg = {"model": None, "batch_size": 4, "max_members": None, "max_nonmembers": None, "sample_seed": 0,
           "max_length": 256, "max_prompt_length": 128, "short_tokens": 5, "precision": "fp32",
           "population": {"pools": ["dev"], "max_examples": 4, "seed": 0}}
    tables = {}
    for flag in (True, False):
        path = tmp_path / f"s{flag}.parquet"
        run_script("score_model.py", {**cfg, "score_eos": flag},
                   {"manifest": str(man_path), "model": str(tmp_path / "m")}, {"scores": str(path)})
        tables[flag] = pd.read_parquet(path)
    from kdprivacy import encoding

    evaluation = scoring.evaluation_set(man, None, None, 0)
    complete = np.array([item.response_ids[-1] == tok.eos_token_id
                         for item in encoding.encode_frame(tok, evaluation, 256, 128)])
    assert tables[True].id.tolist() == evaluation.id.tolist() and 0 < complete.sum() < len(complete)
    # one scored token fewer exactly where the response ends with EOS (truncated ones have none to drop)
    np.testing.assert_array_equal(tables[True].n_tokens - tables[False].n_tokens, complete.astype(int))
    for full, text, drop in zip(tables[True].token_logprobs, tables[False].token_logprobs, complete):
        np.testing.assert_allclose(text, full[:-1] if drop else full, rtol=1e-5)
