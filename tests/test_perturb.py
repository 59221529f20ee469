"""MoPe: seeded perturbation through forward hooks (weights never written, no copy), scores against a float64 reference, blocks."""

import copy

import numpy as np
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, OPTConfig, OPTForCausalLM

from kdprivacy.mia import perturb
from kdprivacy.encoding import Encoded

V = 50


def gpt2(n_layer=2):
    torch.manual_seed(0)
    return GPT2LMHeadModel(
        GPT2Config(vocab_size=V, n_layer=n_layer, n_embd=32, n_head=2, n_positions=64)
    ).eval()


def opt(n_layer=3):
    torch.manual_seed(0)
    return OPTForCausalLM(
        OPTConfig(
            vocab_size=V,
            hidden_size=32,
            num_hidden_layers=n_layer,
            num_attention_heads=2,
            ffn_dim=64,
            max_position_embeddings=64,
            word_embed_proj_dim=32,
        )
    ).eval()


def llama(n_layer=4):
    torch.manual_seed(0)
    return LlamaForCausalLM(
        LlamaConfig(
            vocab_size=V,
            hidden_size=32,
            num_hidden_layers=n_layer,
            num_attention_heads=2,
            num_key_value_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
        )
    ).eval()


def items(n=8, seed=0):
    rng = np.random.default_rng(seed)
    return [
        Encoded(
            f"e{i}",
            tuple(int(t) for t in rng.integers(1, V, int(rng.integers(2, 8)))),
            tuple(int(t) for t in rng.integers(1, V, int(rng.integers(1, 10)))),
        )
        for i in range(n)
    ]


def snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_bit_identical(model, saved):
    state = model.state_dict()
    assert state.keys() == saved.keys()
    for key, value in saved.items():
        assert torch.equal(state[key], value), key


def logits(model, ids=None):
    ids = torch.tensor([[3, 9, 4, 17, 22, 8]]) if ids is None else ids
    with torch.no_grad():
        return model(input_ids=ids).logits


def noised_copy(model, sigma, seed, params=None):
    twin = copy.deepcopy(model)
    perturb.add_noise(twin, sigma, seed, params)
    return twin


@pytest.mark.parametrize("build", [gpt2, opt, llama])
def test_forward_inside_equals_a_noised_copy_and_weights_never_change(build):
    model = build()
    saved = snapshot(model)
    plain = logits(model)
    twin = noised_copy(model, 0.01, 3)
    with perturb.perturbed(model, sigma=0.01, seed=3):
        inside = logits(model)
        assert_bit_identical(model, saved)  # nothing is written, not even inside the block
    assert not torch.allclose(inside, plain, atol=1e-4)
    torch.testing.assert_close(inside, logits(twin), rtol=0, atol=0)  # the very same noise as add_noise
    assert_bit_identical(model, saved)
    torch.testing.assert_close(logits(model), plain, rtol=0, atol=0)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())  # hooks removed


def test_add_noise_moves_every_parameter_by_sigma():
    model = gpt2()
    saved = snapshot(model)
    twin = noised_copy(model, 0.01, 3)
    changed = {k for k, v in twin.state_dict().items() if v.is_floating_point() and not torch.equal(v, saved[k])}
    # every floating-point *parameter* moves (buffers such as GPT-2's causal mask are never touched)
    assert {n for n, _ in model.named_parameters()} <= changed
    # tied lm_head/wte: one tensor, one noise
    assert twin.lm_head.weight.data_ptr() == twin.transformer.wte.weight.data_ptr()
    delta = twin.transformer.h[0].mlp.c_fc.weight.detach() - saved["transformer.h.0.mlp.c_fc.weight"]
    assert abs(float(delta.std()) - 0.01) < 0.001 and abs(float(delta.mean())) < 0.001


def test_no_extra_model_copy():
    """Perturbed values exist for one module at a time, while it runs; the stored parameters stay in place."""
    model = gpt2(n_layer=4)
    ptrs = {n: p.data_ptr() for n, p in model.named_parameters()}
    total = sum(p.numel() for p in model.parameters())
    largest = max(sum(p.numel() for p in m._parameters.values() if p is not None) for m in model.modules())
    peak = []

    def probe(module, *_):  # registered after perturbed()'s own hooks: sees what they swapped in
        live = [p for m in model.modules() for p in m._parameters.values()
                if p is not None and not isinstance(p, torch.nn.Parameter)]
        peak.append(sum(p.numel() for p in live))

    with perturb.perturbed(model, 0.01, 0):
        handles = [m.register_forward_pre_hook(probe) for m in model.modules()]
        logits(model)
        for h in handles:
            h.remove()
        assert {n: p.data_ptr() for n, p in model.named_parameters()} == ptrs
    assert max(peak) > 0  # the probe does see perturbed tensors
    assert max(peak) <= largest < total / 2


def test_restores_after_exception_inside_forward():
    model = gpt2()
    saved = snapshot(model)

    def boom(module, args, output):
        raise RuntimeError("boom")

    handle = model.transformer.h[1].register_forward_hook(boom)
    with pytest.raises(RuntimeError, match="boom"):
        with perturb.perturbed(model, sigma=0.5, seed=1):
            logits(model)
    handle.remove()
    assert all(isinstance(p, torch.nn.Parameter) for m in model.modules() for p in m._parameters.values()
               if p is not None)
    assert_bit_identical(model, saved)
    with pytest.raises(RuntimeError, match="boom"):
        with perturb.perturbed(model, sigma=0.5, seed=1):
            raise RuntimeError("boom")
    assert_bit_identical(model, saved)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_noise_is_seeded_and_restricted_to_chosen_params():
    model = gpt2()
    saved = snapshot(model)
    names = perturb.block_params(model, 1)
    first = snapshot(noised_copy(model, 0.02, 7, names))
    again = snapshot(noised_copy(model, 0.02, 7, names))
    other = snapshot(noised_copy(model, 0.02, 8, names))
    for key in saved:
        assert torch.equal(first[key], again[key])  # same seed, same noise
        if key in names:
            assert not torch.equal(first[key], saved[key]), key  # the chosen block moved
        else:
            assert torch.equal(first[key], saved[key]), key  # nothing else did
    assert any(not torch.equal(first[k], other[k]) for k in names)
    # common random numbers: block 0 gets the same standard-normal draws as block 1
    names0 = perturb.block_params(model, 0)
    zero = snapshot(noised_copy(model, 0.02, 7, names0))
    for n0, n1 in zip(names0, names, strict=True):
        torch.testing.assert_close(zero[n0] - saved[n0], first[n1] - saved[n1], rtol=0, atol=1e-6)
    # the perturbed forward uses exactly that restricted noise
    with perturb.perturbed(model, 0.02, 7, params=names):
        torch.testing.assert_close(logits(model), logits(noised_copy(model, 0.02, 7, names)), rtol=0, atol=0)
    with pytest.raises(ValueError, match="unknown parameter"):
        with perturb.perturbed(model, 0.1, 0, params=["nope"]):
            pass
    with pytest.raises(ValueError, match="sigma"):
        with perturb.perturbed(model, -1.0, 0):
            pass


def test_warns_about_a_parameter_no_forward_reads(caplog):
    model = gpt2()
    model.unused = torch.nn.Linear(2, 2)  # a module whose forward never runs
    with caplog.at_level("WARNING", logger="kdprivacy.mia.perturb"):
        with perturb.perturbed(model, 0.01, 0):
            logits(model)
    assert "never read" in caplog.text and "unused.weight" in caplog.text


def _nll64(model, item_list):
    """float64, unbatched mean response-token NLL."""
    m = copy.deepcopy(model).double()
    out = []
    for it in item_list:
        ids = torch.tensor([list(it.prompt_ids + it.response_ids)])
        with torch.no_grad():
            logp = torch.log_softmax(m(input_ids=ids).logits[0], dim=-1)
        start = len(it.prompt_ids)
        out.append(-np.mean([float(logp[t - 1, ids[0, t]]) for t in range(start, ids.shape[1])]))
    return np.array(out)


@pytest.mark.parametrize("block", [None, 0])
def test_mope_matches_float64_reference(block):
    model = gpt2()
    saved = snapshot(model)
    its = items()
    k, sigma, seed = 3, 0.05, 11
    params = None if block is None else perturb.block_params(model, block)
    table = perturb.mope_scores(
        model, its, k=k, sigma=sigma, seed=seed, batch_size=3, pad_id=0, params=params
    )
    assert_bit_identical(model, saved)
    assert table.columns.tolist() == ["id", "n_tokens", "nll", "mope"]
    assert table.id.tolist() == [it.id for it in its]
    assert table.n_tokens.tolist() == [len(it.response_ids) for it in its]
    # independent: perturbed copies (same seeded noise), float64, no batching
    base = _nll64(model, its)
    increases = []
    for index in range(k):
        twin = noised_copy(model, sigma, perturb.perturbation_seed(seed, index), params)
        increases.append(_nll64(twin, its) - base)
    np.testing.assert_allclose(table.nll, base, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(table.mope, np.mean(increases, axis=0), rtol=1e-4, atol=1e-5)
    assert (table.mope != 0).all()
    assert perturb.perturbation_seed(seed, 0) != perturb.perturbation_seed(seed, 1)


def test_sigma_zero_gives_zero_mope():
    model = gpt2()
    table = perturb.mope_scores(model, items(4), k=2, sigma=0.0, seed=0, batch_size=2, pad_id=0)
    np.testing.assert_array_equal(table.mope, 0.0)


@pytest.mark.parametrize(
    "build, prefix, n",
    [(gpt2, "transformer.h", 2), (opt, "model.decoder.layers", 3), (llama, "model.layers", 4)],
)
def test_find_blocks_generic(build, prefix, n):
    model = build()
    blocks = perturb.find_blocks(model)
    assert [name for name, _ in blocks] == [f"{prefix}.{i}" for i in range(n)]
    assert len({type(m) for _, m in blocks}) == 1
    names = perturb.block_params(model, n - 1)
    assert names and all(x.startswith(f"{prefix}.{n - 1}.") for x in names)
    assert perturb.block_params(model, -1) == names
    with pytest.raises(IndexError):
        perturb.block_params(model, n)
    saved = snapshot(model)
    with perturb.perturbed(model, 0.1, 0, params=names):
        pass
    assert_bit_identical(model, saved)


def test_find_blocks_prefers_most_parameters():
    class Expert(torch.nn.Linear):
        pass

    class Layer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.experts = torch.nn.ModuleList(Expert(4, 4) for _ in range(8))  # longer, but smaller

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = torch.nn.ModuleList(Layer() for _ in range(3))
            self.mixed = torch.nn.ModuleList([torch.nn.Linear(64, 64), torch.nn.ReLU()])  # not one class

    names = [name for name, _ in perturb.find_blocks(Net())]
    assert names == ["layers.0", "layers.1", "layers.2"]
    with pytest.raises(ValueError, match="no nn.ModuleList"):
        perturb.find_blocks(torch.nn.Linear(2, 2))
