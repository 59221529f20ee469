"""Tokenizers and causal LMs: train a tokenizer, build tiny models from scratch, load and save.

- Local tokenizers are byte-level BPE with ``<|endoftext|>`` as BOS/EOS and a separate ``<|pad|>`` token.
- Models built from scratch are plain Hugging Face GPT-2 / OPT / LLaMA configurations, so every later step
  (training, scoring, generation, perturbation) treats them exactly like pretrained checkpoints.
- Loading never reaches a hub by accident: a ``name_or_path`` that looks like a path must exist.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import torch

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
ARCHITECTURES = ("gpt2", "opt", "llama")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


# --------------------------------------------------------------------------------------------- tokenizers
def train_tokenizer(texts: Iterable[str], vocab_size: int, min_frequency: int = 2):
    """Byte-level BPE trained on ``texts``, wrapped as a transformers fast tokenizer.

    Special tokens come first (``<|endoftext|>`` = 0, ``<|pad|>`` = 1). The result depends only on the texts
    and settings (the BPE trainer breaks ties deterministically), so the same corpus gives the same vocab.
    """
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer(add_prefix_space=False)
    bpe.train_from_iterator(
        list(texts),
        vocab_size=int(vocab_size),
        min_frequency=int(min_frequency),
        special_tokens=[EOS_TOKEN, PAD_TOKEN],
        show_progress=False,
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer,
        eos_token=EOS_TOKEN,
        bos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        clean_up_tokenization_spaces=False,
    )


def load_tokenizer(name_or_path: str, revision: str | None = None, trust_remote_code: bool = False):
    """``AutoTokenizer``; tokenizers without a pad token (GPT-2, LLaMA) get ``pad = eos``.

    Pad = EOS is safe here because every batch carries its own attention and response masks
    (:mod:`kdprivacy.encoding`): padding is never identified by comparing ids with ``pad_token_id``.
    """
    from transformers import AutoTokenizer

    _check_local(name_or_path, "tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, revision=revision, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"tokenizer {name_or_path!r} has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def same_vocabulary(tokenizer_a, tokenizer_b) -> bool:
    """True when two tokenizers map every token to the same id (KD needs aligned logits)."""
    return len(tokenizer_a) == len(tokenizer_b) and tokenizer_a.get_vocab() == tokenizer_b.get_vocab()


def assert_same_vocabulary(tokenizer_a, tokenizer_b, what: str = "teacher and student") -> None:
    if not same_vocabulary(tokenizer_a, tokenizer_b):
        raise ValueError(
            f"{what} tokenizers differ (sizes {len(tokenizer_a)} vs {len(tokenizer_b)}); token-level KD needs "
            "a shared tokenizer/vocabulary"
        )


# ------------------------------------------------------------------------------------------------- models
def _model_config(spec: dict, tokenizer, max_positions: int):
    from transformers import GPT2Config, LlamaConfig, OPTConfig

    allowed = {"arch", "n_layer", "d_model", "n_head", "d_ff", "dropout"}
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise ValueError(f"model spec has unknown keys {unknown}; allowed: {sorted(allowed)}")
    arch = spec.get("arch")
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {list(ARCHITECTURES)}")
    d_model, n_head = int(spec["d_model"]), int(spec["n_head"])
    if d_model % n_head:
        raise ValueError(f"d_model ({d_model}) must be divisible by n_head ({n_head})")
    n_layer = int(spec["n_layer"])
    d_ff = int(spec.get("d_ff") or 4 * d_model)
    dropout = float(spec.get("dropout", 0.0))
    ids = {
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if arch == "gpt2":
        return GPT2Config(
            n_positions=max_positions, n_embd=d_model, n_layer=n_layer, n_head=n_head, n_inner=d_ff,
            resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout, **ids,
        )
    if arch == "opt":
        return OPTConfig(
            hidden_size=d_model, num_hidden_layers=n_layer, num_attention_heads=n_head, ffn_dim=d_ff,
            max_position_embeddings=max_positions, word_embed_proj_dim=d_model, dropout=dropout,
            attention_dropout=dropout, **ids,
        )
    return LlamaConfig(
        hidden_size=d_model, num_hidden_layers=n_layer, num_attention_heads=n_head, num_key_value_heads=n_head,
        intermediate_size=d_ff, max_position_embeddings=max_positions, attention_dropout=dropout, **ids,
    )


def build_from_scratch(spec: dict, tokenizer, max_positions: int, seed: int):
    """A randomly initialised causal LM for ``spec = {arch, n_layer, d_model, n_head, d_ff=4*d_model}``.

    ``arch`` is ``gpt2`` | ``opt`` | ``llama``; the vocabulary is ``len(tokenizer)`` with its bos/eos/pad ids.
    Optional ``dropout`` (default 0.0 for every architecture, so one spec means the same across families).
    Initialisation is seeded by ``seed`` without disturbing the caller's global torch RNG.
    """
    from transformers import AutoModelForCausalLM

    config = _model_config(spec, tokenizer, int(max_positions))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = AutoModelForCausalLM.from_config(config)
    return model.float()


def _looks_like_path(name_or_path: str) -> bool:
    """Hub ids are ``name`` or ``org/name``; anything rooted, relative-dotted or deeper is a path."""
    s = str(name_or_path)
    return s.startswith((".", "/", "~")) or s.strip("/").count("/") >= 2 or os.sep != "/" and os.sep in s


def _check_local(name_or_path: str, what: str) -> None:
    """A local-looking path must be an existing directory (never fall through to a hub lookup)."""
    path = Path(str(name_or_path)).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"{what} path {str(path)!r} is not a directory")
        return
    if _looks_like_path(str(name_or_path)):
        raise FileNotFoundError(f"{what} directory {str(name_or_path)!r} does not exist")


def load_model(name_or_path: str, revision: str | None = None, dtype: str = "float32", trust_remote_code: bool = False):
    """``AutoModelForCausalLM`` in eval mode. ``dtype`` is ``float32`` | ``float16`` | ``bfloat16`` | ``auto``."""
    from transformers import AutoModelForCausalLM

    if dtype != "auto" and dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {[*DTYPES, 'auto']}")
    _check_local(name_or_path, "model")
    path = Path(str(name_or_path)).expanduser()
    if path.is_dir() and not (path / "config.json").is_file():
        raise ValueError(f"{str(path)!r} is not a model directory (no config.json)")
    try:
        model = AutoModelForCausalLM.from_pretrained(
            name_or_path, revision=revision, dtype=DTYPES.get(dtype, "auto"), trust_remote_code=trust_remote_code
        )
    except OSError as err:
        raise OSError(f"cannot load model {name_or_path!r} (revision {revision}): {err}") from err
    model.eval()
    return model


def load_base(cfg: dict):
    """``(model, tokenizer)`` from a ``{"name_or_path", "revision", "dtype", "trust_remote_code"}`` dict."""
    allowed = {"name_or_path", "revision", "dtype", "trust_remote_code"}
    unknown = sorted(set(cfg) - allowed)
    if unknown:
        raise ValueError(f"model config has unknown keys {unknown}; allowed: {sorted(allowed)}")
    name = cfg["name_or_path"]
    revision = cfg.get("revision")
    remote = bool(cfg.get("trust_remote_code", False))
    model = load_model(name, revision=revision, dtype=cfg.get("dtype", "float32"), trust_remote_code=remote)
    tokenizer = load_tokenizer(name, revision=revision, trust_remote_code=remote)
    return model, tokenizer


def save_model(model, tokenizer, out_dir) -> None:
    """Weights (safetensors), config, generation config and tokenizer into ``out_dir``.

    The caller makes it atomic by passing the temporary directory of :func:`kdprivacy.io.atomic_dir`.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
