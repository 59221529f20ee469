"""Tokenizer training, from-scratch models, save/load round trips (no hub access, tiny models)."""

from __future__ import annotations

import random

import pytest
import torch

from kdprivacy import models
from kdprivacy.config import FromScratch, Lora

WORDS = "river stone apple quiet lamp orbit violet seven marble cloud tiger paper honey window maple".split()


def _texts(n: int = 60, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [
        f"### Instruction:\nDescribe the {rng.choice(WORDS)}.\n\n### Response:\n"
        + " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 15)))
        + ". Ünïcødé ✓ 123!"
        for _ in range(n)
    ]


@pytest.fixture(scope="module")
def tokenizer():
    return models.train_tokenizer(_texts(), vocab_size=320)


def test_tokenizer_round_trip_and_special_tokens(tokenizer):
    assert len(tokenizer) == 320
    assert tokenizer.eos_token == tokenizer.bos_token == models.EOS_TOKEN
    assert tokenizer.pad_token == models.PAD_TOKEN
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    for text in ["Describe the river stone.", "  leading spaces\nand\ttabs, ünïcode ✓ and emoji 🙂 unseen"]:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == text
    # BPE merges: frequent text takes fewer tokens than bytes
    text = " ".join(WORDS)
    assert len(tokenizer(text, add_special_tokens=False)["input_ids"]) < 0.75 * len(text.encode())


def test_tokenizer_is_deterministic(tokenizer):
    again = models.train_tokenizer(_texts(), vocab_size=320)
    assert again.get_vocab() == tokenizer.get_vocab()
    assert models.same_vocabulary(again, tokenizer)
    other = models.train_tokenizer(_texts(seed=1), vocab_size=320)
    assert not models.same_vocabulary(other, tokenizer)
    with pytest.raises(ValueError, match="differ"):
        models.assert_same_vocabulary(other, tokenizer)


def test_tokenizer_save_load(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    loaded = models.load_tokenizer(str(tmp_path))
    assert loaded.get_vocab() == tokenizer.get_vocab()
    assert (loaded.pad_token_id, loaded.eos_token_id) == (tokenizer.pad_token_id, tokenizer.eos_token_id)


def test_load_tokenizer_without_pad_uses_eos(tmp_path):
    from transformers import PreTrainedTokenizerFast

    base = models.train_tokenizer(_texts(), vocab_size=300)
    no_pad = PreTrainedTokenizerFast(tokenizer_object=base.backend_tokenizer, eos_token=models.EOS_TOKEN)
    no_pad.save_pretrained(tmp_path)
    loaded = models.load_tokenizer(str(tmp_path))
    assert loaded.pad_token == loaded.eos_token == models.EOS_TOKEN


SPEC = {"n_layer": 2, "d_model": 32, "n_head": 4}


@pytest.mark.parametrize("arch", models.ARCHITECTURES)
def test_build_from_scratch_forward_and_round_trip(arch, tokenizer, tmp_path):
    model = models.build_from_scratch({"arch": arch, **SPEC}, tokenizer, max_positions=64, seed=0).eval()
    assert model.config.vocab_size == len(tokenizer)
    assert model.config.eos_token_id == tokenizer.eos_token_id
    assert model.config.bos_token_id == tokenizer.bos_token_id
    assert model.config.pad_token_id == tokenizer.pad_token_id
    assert model.get_output_embeddings().weight.shape[0] == len(tokenizer)
    ids = torch.tensor([tokenizer("Describe the violet marble.", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    assert logits.shape == (1, ids.shape[1], len(tokenizer))
    assert torch.isfinite(logits).all()

    models.save_model(model, tokenizer, tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").is_file()
    loaded = models.load_model(str(tmp_path / "m"))
    assert not loaded.training
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids).logits, logits)
    model_b, tok_b = models.load_base({"name_or_path": str(tmp_path / "m"), "revision": None, "dtype": "float32"})
    assert models.same_vocabulary(tok_b, tokenizer)
    with torch.no_grad():
        assert torch.equal(model_b(input_ids=ids).logits, logits)


def test_build_is_seeded_and_leaves_global_rng_alone(tokenizer):
    spec = {"arch": "gpt2", **SPEC}
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = models.build_from_scratch(spec, tokenizer, 64, seed=5)
    assert torch.equal(torch.rand(3), expected)  # global RNG untouched
    b = models.build_from_scratch(spec, tokenizer, 64, seed=5)
    c = models.build_from_scratch(spec, tokenizer, 64, seed=6)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_build_takes_the_config_block_as_its_dict(tokenizer):
    spec = {"arch": "llama", **SPEC}
    block = models.build_from_scratch(FromScratch.model_validate(spec), tokenizer, 64, seed=3).state_dict()
    plain = models.build_from_scratch(spec, tokenizer, 64, seed=3).state_dict()
    assert block.keys() == plain.keys() and all(torch.equal(block[k], plain[k]) for k in block)


def test_spec_options(tokenizer):
    model = models.build_from_scratch(
        {"arch": "llama", "n_layer": 1, "d_model": 32, "n_head": 2, "d_ff": 48}, tokenizer, 32, 0
    )
    assert model.config.intermediate_size == 48
    gpt = models.build_from_scratch({"arch": "gpt2", **SPEC}, tokenizer, 32, 0)
    assert gpt.config.n_inner == 128 and gpt.config.resid_pdrop == 0.0
    opt = models.build_from_scratch({"arch": "opt", **SPEC, "dropout": 0.1}, tokenizer, 32, 0)
    assert opt.config.ffn_dim == 128 and opt.config.dropout == 0.1


def test_bad_arch_and_spec(tokenizer):
    with pytest.raises(ValueError, match=r"'bert'.*gpt2.*opt.*llama"):
        models.build_from_scratch({"arch": "bert", **SPEC}, tokenizer, 64, 0)
    with pytest.raises(ValueError, match="unknown keys"):
        models.build_from_scratch({"arch": "gpt2", **SPEC, "layers": 3}, tokenizer, 64, 0)
    with pytest.raises(ValueError, match="divisible"):
        models.build_from_scratch({"arch": "gpt2", "n_layer": 1, "d_model": 30, "n_head": 4}, tokenizer, 64, 0)


def test_missing_or_invalid_model_dir(tmp_path):
    missing = tmp_path / "nope" / "model"
    with pytest.raises(OSError, match="nope"):
        models.load_model(str(missing))
    with pytest.raises(OSError, match="nope"):
        models.load_tokenizer(str(missing))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty"):
        models.load_model(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="dtype"):
        models.load_model(str(tmp_path / "empty"), dtype="float8")


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage"])
def test_corrupt_weights_name_the_file(tokenizer, tmp_path, damage):
    """A truncated or garbled model.safetensors (a full disk, an interrupted copy): the error says which file
    is corrupt and what to do; safetensors itself names no path ("Error while deserializing header")."""
    model = models.build_from_scratch({"arch": "gpt2", **SPEC}, tokenizer, 64, 0)
    models.save_model(model, tokenizer, tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes({"truncated": data[: len(data) // 2], "empty": b"", "garbage": b"\x00" * 64}[damage])
    with pytest.raises(OSError) as err:
        models.load_model(str(tmp_path / "m"))
    msg = str(err.value)
    assert str(weights) in msg and "corrupt" in msg


def test_default_device(monkeypatch):
    monkeypatch.setenv("KDPRIVACY_DEVICE", "cpu")
    assert models.default_device() == torch.device("cpu")
    monkeypatch.delenv("KDPRIVACY_DEVICE")
    monkeypatch.setenv("LOCAL_RANK", "0")
    expected = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    assert models.default_device() == expected


def test_model_refs_accept_quantization_and_refuse_unknown_keys(tokenizer, tmp_path):
    model = models.build_from_scratch({"arch": "gpt2", **SPEC}, tokenizer, 64, 0)
    models.save_model(model, tokenizer, tmp_path / "m")
    ref = {"name_or_path": str(tmp_path / "m"), "revision": None, "dtype": "float32", "trust_remote_code": False,
           "quantization": None}
    loaded, _ = models.load_base(ref)
    assert not models.is_quantized(loaded) and not models.is_lora(loaded)
    with pytest.raises(ValueError, match="unknown keys"):
        models.load_base({**ref, "quant": "8bit"})
    with pytest.raises(ValueError, match="quantization"):
        models.quantization_config("2bit")
    assert models.quantization_config(None) is None
    models.refuse_quantized(ref, "the base")
    with pytest.raises(ValueError, match="frozen"):
        models.refuse_quantized({**ref, "quantization": "4bit"}, "the base")


def test_save_model_refuses_an_unmerged_lora_model(tokenizer, tmp_path):
    pytest.importorskip("peft")
    model = models.build_from_scratch({"arch": "llama", **SPEC}, tokenizer, 64, 0)
    wrapped = models.apply_lora(model, Lora(r=2, alpha=4, dropout=0.0))
    assert models.is_lora(wrapped) and models.apply_lora(model, None) is model
    with pytest.raises(ValueError, match="merge"):
        models.save_model(wrapped, tokenizer, tmp_path / "m")
    merged = models.merge_lora(wrapped)
    models.save_model(merged, tokenizer, tmp_path / "m")
    assert (tmp_path / "m" / "adapter" / "adapter_config.json").is_file()
    assert models.merge_lora(merged) is merged  # plain models pass through
