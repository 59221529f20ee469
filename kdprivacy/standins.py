"""Tiny random-init Hugging Face checkpoints that stand in for real ones, offline, in seconds.

Each stand-in is an ordinary ``save_pretrained`` directory (safetensors + config + tokenizer) of a real
architecture -- GPT-2, OPT or LLaMA -- whose tokenizer reproduces that family's special-token habits, the
ones that break code written against from-scratch models only:

- ``gpt2``: byte-level BPE, ``<|endoftext|>`` as BOS = EOS, **no pad token**, nothing prepended.
- ``opt``: byte-level BPE, ``</s>`` as BOS = EOS **prepended** to every text, ``<pad>`` as pad (id 1).
- ``llama``: SentencePiece-style (``▁`` word boundaries, byte fallback off), ``<s>`` prepended, ``</s>``
  EOS, **no pad token**, untied output head, grouped-query attention (fewer key/value heads).

Used by the tests and ``configs/smoke-hf.yaml`` (``python -m kdprivacy.standins hf`` writes the directories
that config names), and by anyone who wants to try the ``name_or_path`` path without a download.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

ARCHS = ("gpt2", "opt", "llama")
# Each family's special tokens, in id order (what the real tokenizers use at the start of their vocab).
SPECIALS = {
    "gpt2": ["<|endoftext|>"],
    "opt": ["<s>", "<pad>", "</s>", "<unk>"],
    "llama": ["<unk>", "<s>", "</s>"],
}


def corpus(n_examples: int = 400, seed: int = 11) -> list[str]:
    """Text to train a stand-in tokenizer on: the synthetic generator's records in the prompt template."""
    from kdprivacy.data.synthetic import generate_synthetic
    from kdprivacy.encoding import format_prompt

    frame = generate_synthetic(n_examples, seed)
    return [f"{format_prompt(r.instruction, r.context)}{r.response}" for r in frame.itertuples(index=False)]


def build_tokenizer(arch: str, vocab_size: int = 600, texts: list[str] | None = None):
    """A fast tokenizer with ``arch``'s special-token behaviour (module docstring), trained on ``texts``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if arch not in ARCHS:
        raise ValueError(f"unknown stand-in architecture {arch!r}; choose one of {list(ARCHS)}")
    texts = texts if texts is not None else corpus()
    specials = SPECIALS[arch]
    if arch == "llama":
        tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True))
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
        alphabet: list[str] = []
    else:
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=specials, initial_alphabet=alphabet,
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    if arch == "gpt2":
        kwargs = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}
    elif arch == "opt":
        tok.post_processor = processors.TemplateProcessing(
            single="</s> $A", pair="</s> $A </s> $B", special_tokens=[("</s>", tok.token_to_id("</s>"))]
        )
        kwargs = {"bos_token": "</s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
    else:
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.token_to_id("<s>"))]
        )
        kwargs = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    return PreTrainedTokenizerFast(tokenizer_object=tok, clean_up_tokenization_spaces=False, **kwargs)


def model_config(arch: str, tokenizer, n_layer: int, d_model: int, n_head: int, max_positions: int = 256):
    """The architecture's transformers config at a tiny size, with the tokenizer's special ids."""
    from transformers import GPT2Config, LlamaConfig, OPTConfig

    ids = {
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if arch == "gpt2":
        return GPT2Config(n_positions=max_positions, n_embd=d_model, n_layer=n_layer, n_head=n_head, **ids)
    if arch == "opt":
        return OPTConfig(
            hidden_size=d_model, num_hidden_layers=n_layer, num_attention_heads=n_head, ffn_dim=4 * d_model,
            max_position_embeddings=max_positions, word_embed_proj_dim=d_model, **ids,
        )
    return LlamaConfig(
        hidden_size=d_model, num_hidden_layers=n_layer, num_attention_heads=n_head,
        num_key_value_heads=max(1, n_head // 2), intermediate_size=2 * d_model,
        max_position_embeddings=max_positions, tie_word_embeddings=False, **ids,
    )


def write_standin(
    out_dir, arch: str, n_layer: int, d_model: int, n_head: int, tokenizer=None, seed: int = 0,
    max_positions: int = 256,
) -> Path:
    """Write a random-init ``arch`` checkpoint (and its tokenizer) with ``save_pretrained``; returns the dir."""
    from transformers import AutoModelForCausalLM

    tokenizer = tokenizer if tokenizer is not None else build_tokenizer(arch)
    config = model_config(arch, tokenizer, n_layer, d_model, n_head, max_positions)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = AutoModelForCausalLM.from_config(config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


# name -> (arch, n_layer, d_model, n_head, tokenizer group); one tokenizer per group (teacher and students of
# a family share it; the external reference has its own).
SMOKE_HF = {
    "gpt2-teacher": ("gpt2", 2, 32, 2, "gpt2"),
    "gpt2-small": ("gpt2", 1, 32, 2, "gpt2"),
    "opt-teacher": ("opt", 2, 32, 2, "opt"),
    "opt-small": ("opt", 1, 32, 2, "opt"),
    "llama-teacher": ("llama", 2, 32, 4, "llama"),
    "llama-small": ("llama", 1, 32, 4, "llama"),
    "reference": ("gpt2", 1, 32, 2, "reference"),
}


def write_smoke_hf(out_dir, names: list[str] | None = None) -> dict[str, Path]:
    """The stand-ins ``configs/smoke-hf.yaml`` names, under ``out_dir`` (a few seconds)."""
    out, written, tokenizers = Path(out_dir), {}, {}
    for i, name in enumerate(names or SMOKE_HF):
        arch, n_layer, d_model, n_head, group = SMOKE_HF[name]
        if group not in tokenizers:
            # the reference's vocabulary differs from every family's (another size, another corpus seed)
            texts = corpus(seed=23) if group == "reference" else None
            tokenizers[group] = build_tokenizer(arch, 500 if group == "reference" else 600, texts)
        written[name] = write_standin(out / name, arch, n_layer, d_model, n_head, tokenizers[group], seed=i)
    (out / "standins.json").write_text(json.dumps({k: str(v) for k, v in written.items()}, indent=1) + "\n")
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="directory to write the stand-ins into (configs/smoke-hf.yaml: ./hf)")
    args = parser.parse_args(argv)
    for name, path in write_smoke_hf(args.out).items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
