"""Prompt template, tokenization and batching shared by training, scoring and generation.

Conventions every consumer relies on:
- An example is encoded as prompt tokens followed by response tokens (+ EOS). Only response tokens are
  ever trained on or scored (study.md: "Scores use response tokens only").
- ``response_mask[b, t] == 1`` iff ``input_ids[b, t]`` is a response token. For a causal LM the logits at
  position ``t`` predict token ``t + 1``, so per-token targets are ``input_ids[:, 1:]`` with mask
  ``response_mask[:, 1:]`` against ``logits[:, :-1]`` (see :func:`shift_for_causal_lm`).
- Training/scoring batches are right-padded; generation batches are left-padded.
- A prompt starts with whatever the tokenizer itself puts in front of a text (LLaMA's ``<s>``, OPT's
  ``</s>``; nothing for GPT-2 or the workflow's own tokenizers): pretrained checkpoints were trained with it.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

PROMPT_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{context}\n\n### Response:\n"
)
PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)


def format_prompt(instruction: str, context: str = "") -> str:
    """The Alpaca/Dolly template of the study; the ``### Input`` block only when there is context."""
    if context and context.strip():
        return PROMPT_WITH_INPUT.format(instruction=instruction, context=context)
    return PROMPT_NO_INPUT.format(instruction=instruction)


@dataclass(frozen=True)
class Encoded:
    """One tokenized example. ``response_ids`` ends with EOS unless it was truncated."""

    id: str
    prompt_ids: tuple[int, ...]
    response_ids: tuple[int, ...]

    @property
    def length(self) -> int:
        return len(self.prompt_ids) + len(self.response_ids)


def special_prefix(tokenizer) -> tuple[int, ...]:
    """The ids a tokenizer puts in front of every text by default (its BOS, if it adds one), else ``()``."""
    cached = getattr(tokenizer, "_kdprivacy_prefix", None)
    if cached is None:
        plain = tokenizer("a", add_special_tokens=False)["input_ids"]
        full = tokenizer("a")["input_ids"]
        n = len(full) - len(plain)
        cached = tuple(full[:n]) if n > 0 and list(full[n:n + len(plain)]) == list(plain) else ()
        try:
            tokenizer._kdprivacy_prefix = cached
        except AttributeError:  # a tokenizer that refuses attributes is asked again next time
            pass
    return cached


def encode_example(
    tokenizer, example_id: str, prompt: str, response: str, max_length: int, max_prompt_length: int
) -> Encoded:
    """Tokenize prompt and response separately so the response boundary is exact.

    The prompt is the tokenizer's :func:`special_prefix` (its BOS) plus the *last* prompt tokens that fit in
    ``max_prompt_length``, so the ``### Response:`` marker always survives truncation; the response (with
    EOS) is cut to fit ``max_length``.
    """
    if max_prompt_length >= max_length:
        raise ValueError(f"max_prompt_length ({max_prompt_length}) must be < max_length ({max_length})")
    prefix = special_prefix(tokenizer)
    if len(prefix) >= max_prompt_length:
        raise ValueError(f"max_prompt_length ({max_prompt_length}) leaves no room after the tokenizer's "
                         f"{len(prefix)} leading special token(s)")
    text_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    prompt_ids = list(prefix) + text_ids[max(0, len(text_ids) - (max_prompt_length - len(prefix))):]
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    response_ids = response_ids[: max_length - len(prompt_ids)]
    return Encoded(example_id, tuple(prompt_ids), tuple(response_ids))


def encode_frame(tokenizer, df, max_length: int, max_prompt_length: int) -> list[Encoded]:
    """Encode every row of a manifest slice (columns ``id, instruction, context, response``), in order."""
    return [
        encode_example(
            tokenizer,
            row.id,
            format_prompt(row.instruction, row.context),
            row.response,
            max_length,
            max_prompt_length,
        )
        for row in df.itertuples(index=False)
    ]


def without_eos(items: Sequence[Encoded], eos_id: int | None) -> list[Encoded]:
    """The items with the final EOS of each response dropped (a ``max_length``-truncated response, which has
    none, is unchanged): the scored text without EOS, as MIMIR scores it (``evaluation.score_eos: false``)."""
    if eos_id is None:
        return list(items)
    return [
        Encoded(item.id, item.prompt_ids, item.response_ids[:-1])
        if item.response_ids and item.response_ids[-1] == eos_id else item
        for item in items
    ]


def collate(items: Sequence[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``response_mask`` (see module docstring)."""
    width = max(item.length for item in items)
    input_ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(items), width), dtype=torch.long)
    response_mask = torch.zeros((len(items), width), dtype=torch.long)
    for row, item in enumerate(items):
        ids = item.prompt_ids + item.response_ids
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, : len(ids)] = 1
        response_mask[row, len(item.prompt_ids) : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "response_mask": response_mask}


def collate_prompts(items: Sequence[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Left-padded prompts for batched generation (new tokens then line up at the right edge)."""
    width = max(len(item.prompt_ids) for item in items)
    input_ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(items), width), dtype=torch.long)
    for row, item in enumerate(items):
        n = len(item.prompt_ids)
        input_ids[row, width - n :] = torch.tensor(item.prompt_ids, dtype=torch.long)
        attention_mask[row, width - n :] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def shift_for_causal_lm(
    logits: torch.Tensor, input_ids: torch.Tensor, response_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Align logits with the tokens they predict: ``(logits[:, :-1], targets, target_mask)``."""
    return logits[:, :-1], input_ids[:, 1:], response_mask[:, 1:]


def batch_indices(n: int, batch_size: int, shuffle: bool, seed: int = 0) -> Iterator[list[int]]:
    """Index batches; shuffled with a private RNG so the global RNG state never matters."""
    order = list(range(n))
    if shuffle:
        random.Random(seed).shuffle(order)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def length_sorted_batches(items: Sequence[Encoded], batch_size: int) -> Iterator[list[int]]:
    """Batches of similar length (less padding) for inference; callers restore order by index."""
    order = sorted(range(len(items)), key=lambda i: items[i].length)
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]
