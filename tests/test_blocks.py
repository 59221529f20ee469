import functools

import numpy as np
import pytest
import torch
from transformers import (GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, OPTConfig,
                          OPTForCausalLM)

from kdprivacy.mia import blocks, perturb, scoring
from kdprivacy.encoding import Encoded
from kdprivacy.stats import NO_BOOTSTRAP, Bootstrap

VOCAB, PAD, EOS, N_LAYER = 40, 0, 1, 3


def build(arch: str):
    torch.manual_seed(0)
    ids = {"vocab_size": VOCAB, "pad_token_id": PAD, "eos_token_id": EOS, "bos_token_id": EOS}
    if arch == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(n_layer=N_LAYER, n_embd=16, n_head=2, n_positions=64, **ids))
    elif arch == "opt":
        model = OPTForCausalLM(OPTConfig(num_hidden_layers=N_LAYER, hidden_size=16, num_attention_heads=2,
                                         ffn_dim=32, max_position_embeddings=64, word_embed_proj_dim=16, **ids))
    else:
        model = LlamaForCausalLM(LlamaConfig(num_hidden_layers=N_LAYER, hidden_size=16, num_attention_heads=2,
                                             num_key_value_heads=2, intermediate_size=32,
                                             max_position_embeddings=64, **ids))
    return model.eval()


PREFIX = {"gpt2": "transformer.h", "opt": "model.decoder.layers", "llama": "model.layers"}
ARCHS = tuple(PREFIX)


def make_items(n=12, seed=0):
    rng = np.random.default_rng(seed)
    items = [Encoded(f"x{i:02d}", tuple(int(t) for t in rng.integers(2, VOCAB, 5)),
                     tuple(int(t) for t in rng.integers(2, VOCAB, int(rng.integers(3, 8)))) + (EOS,))
             for i in range(n)]
    labels = np.array([1, 0] * (n // 2))
    return items, labels


def snapshot(model):
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def assert_bit_identical(model, before):
    after = model.state_dict()
    assert after.keys() == before.keys()
    for name, tensor in before.items():
        assert torch.equal(after[name], tensor), name


@pytest.mark.parametrize("arch", ARCHS)
def test_block_discovery_returns_n_layer_blocks(arch):
    model = build(arch)
    found = perturb.find_blocks(model)
    assert [name for name, _ in found] == [f"{PREFIX[arch]}.{i}" for i in range(N_LAYER)]
    names = [perturb.block_params(model, i) for i in range(N_LAYER)]
    for i, params in enumerate(names):
        assert params and all(n.startswith(f"{PREFIX[arch]}.{i}.") for n in params)
    assert len(set().union(*map(set, names))) == sum(map(len, names))  # disjoint


@pytest.mark.parametrize("arch", ARCHS)
def test_block_mope_leaves_weights_bit_identical(arch, monkeypatch):
    model = build(arch)
    items, labels = make_items()
    before = snapshot(model)
    real = scoring.mean_nll
    touched = []  # per call: the parameters a forward computed with perturbed values (swapped in by hooks)

    def watching(model_, items_, *args, **kwargs):
        # the stored weights are never written, not even during a perturbed pass
        assert all(torch.equal(p.detach(), before[n]) for n, p in model_.named_parameters())
        seen = set()

        def probe(module, *_, prefix):
            seen.update(f"{prefix}{attr}" for attr, p in module._parameters.items()
                        if p is not None and not isinstance(p, torch.nn.Parameter))

        handles = [m.register_forward_pre_hook(functools.partial(probe, prefix=f"{name}." if name else ""))
                   for name, m in model_.named_modules()]
        try:
            return real(model_, items_, *args, **kwargs)
        finally:
            for h in handles:
                h.remove()
            touched.append(seen)

    monkeypatch.setattr(scoring, "mean_nll", watching)
    per_block, per_example = blocks.block_mope(model, items, labels, k=2, sigmas=[0.05], seed=3, batch_size=4,
                                               pad_id=PAD, bootstrap=Bootstrap(n=20))
    assert_bit_identical(model, before)
    # NLL_original once, then K passes per block and sigma, each with only that block perturbed
    assert len(touched) == 1 + N_LAYER * 2
    assert touched[0] == set()
    for call, changed in enumerate(touched[1:]):
        block = call // 2
        assert changed == set(perturb.block_params(model, block)), (block, changed - set())
    assert list(per_block.columns) == blocks.BLOCK_COLUMNS
    assert per_block.block.tolist() == list(range(N_LAYER))
    assert per_block.block_name.tolist() == [f"{PREFIX[arch]}.{i}" for i in range(N_LAYER)]
    assert per_block.auc.between(0, 1).all() and (per_block.auc_ci_low <= per_block.auc_ci_high).all()
    assert (per_block.n_members == 6).all() and (per_block.n_invalid == 0).all()
    assert list(per_example.columns) == blocks.BLOCK_EXAMPLE_COLUMNS
    assert len(per_example) == N_LAYER * len(items)
    assert (per_example.score != 0).any()


def test_sigma_sweep_rows_and_determinism():
    model = build("gpt2")
    items, labels = make_items()
    before = snapshot(model)
    kwargs = dict(k=2, sigmas=[0.01, 0.1], seed=1, batch_size=6, pad_id=PAD, bootstrap=Bootstrap(n=10))
    per_block, per_example = blocks.block_mope(model, items, labels, **kwargs)
    assert_bit_identical(model, before)
    assert list(zip(per_block.block, per_block.sigma)) == [(b, s) for b in range(N_LAYER) for s in (0.01, 0.1)]
    assert (per_block.k == 2).all()
    n_params = {b: sum(dict(model.named_parameters())[n].numel() for n in perturb.block_params(model, b))
                for b in range(N_LAYER)}
    assert per_block.n_params.tolist() == [n_params[b] for b in per_block.block]
    # larger noise moves the NLL more (common random numbers: the same draws, scaled)
    small = per_example[per_example.sigma == 0.01].score.abs().mean()
    large = per_example[per_example.sigma == 0.1].score.abs().mean()
    assert large > small
    again_block, again_example = blocks.block_mope(model, items, labels, **kwargs)
    assert per_block.equals(again_block) and per_example.equals(again_example)
    only = blocks.block_mope(model, items, labels, **{**kwargs, "sigmas": [0.1]}, blocks=[1])[0]
    assert only.block.tolist() == [1]
    assert only.auc.item() == per_block.query("block == 1 and sigma == 0.1").auc.item()


def test_restored_even_when_scoring_fails(monkeypatch):
    model = build("opt")
    items, labels = make_items()
    before = snapshot(model)
    real = scoring.mean_nll
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("boom")
        return real(*args, **kwargs)

    monkeypatch.setattr(scoring, "mean_nll", failing)
    with pytest.raises(RuntimeError, match="boom"):
        blocks.block_mope(model, items, labels, k=2, sigmas=[0.5], batch_size=4, pad_id=PAD, bootstrap=NO_BOOTSTRAP)
    assert_bit_identical(model, before)


def test_non_finite_scores_reported_not_dropped():
    model = build("gpt2")
    items, labels = make_items()
    per_block, _ = blocks.block_mope(model, items, labels, k=1, sigmas=[1e30], batch_size=12, pad_id=PAD,
                                     bootstrap=NO_BOOTSTRAP, blocks=[0])
    row = per_block.iloc[0]
    assert row.n_invalid > 0 and np.isnan(row.auc)


def test_bad_arguments():
    model = build("gpt2")
    items, labels = make_items()
    with pytest.raises(ValueError, match="labels"):
        blocks.block_mope(model, items, np.ones(len(items)), k=1, pad_id=PAD)
    with pytest.raises(ValueError, match="sigmas"):
        blocks.block_mope(model, items, labels, k=1, sigmas=[], pad_id=PAD)
    with pytest.raises(IndexError):
        blocks.block_mope(model, items, labels, k=1, pad_id=PAD, blocks=[N_LAYER])


# ------------------------------------------------------------------------------------ the workflow script
class Named(dict):
    """Stands in for Snakemake's named lists (attribute access, keys(), items())."""

    __getattr__ = dict.__getitem__


def test_per_block_script(tmp_path):
    """scripts/per_block.py: every signal in one job; MoPe's sigma sweep, the hidden-state signals once per
    block; the spread test per signal (and sigma)."""
    import runpy
    from pathlib import Path
    from types import SimpleNamespace

    import pandas as pd

    from kdprivacy import models
    from kdprivacy.config import Split
    from kdprivacy.data.manifest import build_manifest
    from kdprivacy.data.synthetic import generate_synthetic

    records = generate_synthetic(120, seed=2)
    manifest = build_manifest(records, Split(nonmember=10, dev=5, private=10, public=10, seed=0))
    manifest.to_parquet(tmp_path / "manifest.parquet", index=False)
    tok = models.train_tokenizer(list(manifest.response), 300)
    model = models.build_from_scratch({"arch": "llama", "n_layer": 2, "d_model": 16, "n_head": 2}, tok, 256, 0)
    models.save_model(model, tok, tmp_path / "model")
    cfg = {"signals": ["mope", "lens_loss", "probe"], "k": 2, "sigmas": [0.01, 0.02], "seed": 0, "batch_size": 8,
           "probe": {"folds": 3, "c": 1.0, "seed": 0, "population_negatives": True}, "min_k": 0.2,
           "min_k_count": "ceil", "population": {"pools": ["dev"], "max_examples": 5, "seed": 0},
           "max_members": 6, "max_nonmembers": 6, "n_bootstrap": 10, "max_length": 128, "max_prompt_length": 80,
           "sample_seed": 0, "bootstrap_seed": 0, "precision": "fp32"}
    out = {"per_block": str(tmp_path / "blocks.csv"), "spread": str(tmp_path / "blocks.spread.csv"),
           "per_example": str(tmp_path / "blocks.parquet")}
    repo = Path(__file__).resolve().parents[1]
    smk = SimpleNamespace(scriptdir=str(repo / "scripts"), params=SimpleNamespace(cfg=cfg, code="c"),
                          input=Named(manifest=str(tmp_path / "manifest.parquet"), model=str(tmp_path / "model")),
                          output=Named(out), log=[], threads=1, rule="per_block")
    runpy.run_path(str(repo / "scripts" / "per_block.py"), init_globals={"snakemake": smk}, run_name="__main__")
    per_block = pd.read_csv(out["per_block"])
    assert list(per_block.columns) == blocks.BLOCK_COLUMNS
    mope = per_block[per_block.signal == "mope"]
    assert list(zip(mope.block, mope.sigma)) == [(0, 0.01), (0, 0.02), (1, 0.01), (1, 0.02)]
    assert per_block.signal.drop_duplicates().tolist() == ["mope", "lens_loss", "probe"]  # the config's order
    others = per_block[per_block.signal != "mope"]
    assert others.sigma.isna().all() and others.block.tolist() == [0, 1, 0, 1]
    assert per_block.relative_depth.tolist()[-2:] == [0.5, 1.0] and (per_block.n_members == 6).all()
    assert per_block.auc.between(0, 1).all()
    assert len(pd.read_parquet(out["per_example"])) == (4 + 2 + 2) * 12
    spread = pd.read_csv(out["spread"])
    assert list(spread.columns) == blocks.SPREAD_COLUMNS
    assert list(zip(spread.signal, spread.sigma.fillna(0))) == [("lens_loss", 0), ("probe", 0), ("mope", 0.01),
                                                                ("mope", 0.02)]
    assert (tmp_path / "blocks.csv.provenance.json").is_file()
