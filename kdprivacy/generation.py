"""Batched, seeded generation with a KV cache: teacher outputs (SeqKD), student outputs (ImitKD, GKD,
DistiLLM) and MiniLLM's teacher-mixed sampling.

One manual decode loop serves every use (:func:`generate`, :func:`mixed_sample`), so "sample from the
student" and "sample from a mixture with weight 0 on the teacher" draw exactly the same tokens.

Decisions:
- **Only the requested processing is applied.** The loop calls the model's forward directly, so nothing in a
  checkpoint's ``generation_config`` (``no_repeat_ngram_size``, ``repetition_penalty``, ``min_length``,
  ``bad_words_ids``, ...) can switch itself on (pitfalls.md). Greedy is the plain argmax of the logits;
  sampling applies temperature, then top-k (``0`` = off), then top-p (``1.0`` = off) to each model's logits.
- **Left-padded prompts** (:func:`kdprivacy.encoding.collate_prompts`) with explicit ``position_ids`` =
  cumulative count of real tokens − 1, so a padded row sees the same positions as the prompt alone and as
  training batches (right-padded, positions from 0).
- **Seeded per example.** Every row has its own CPU ``torch.Generator`` seeded from ``(seed, item id,
  occurrence of that id in the call)``; a token is drawn by inverse-CDF with one uniform number per step.
  Samples therefore do not depend on batch size, batch composition, list order, the device, or torch's
  global RNG (which is never touched, so training dropout streams are unaffected).
- Output: the **new tokens only**, cut after the first EOS (the EOS is kept); a row that reaches
  ``max_new_tokens`` without EOS is returned as is (truncated). Results come back in input order.
- The model is put in eval mode for decoding and its previous train/eval mode is restored afterwards.
- How tokens are picked is one :class:`Sampling` object (greedy, or sampling with its warps and seed);
  :data:`GREEDY` is plain argmax decoding.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from kdprivacy.encoding import Encoded, collate_prompts

__all__ = [
    "GREEDY",
    "Sampling",
    "cut_after_eos",
    "generate",
    "mixed_sample",
    "row_seed",
    "warp_logits",
    "with_responses",
]


@dataclass(frozen=True)
class Sampling:
    """How each next token is picked. ``do_sample=False``: plain greedy (argmax of the raw logits; the other
    fields are ignored). ``do_sample=True``: temperature, then top-k (``0`` = off), then top-p (``1.0`` =
    off), one draw per step from each example's generator seeded by ``(seed, id, occurrence)``."""

    do_sample: bool
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int = 0

    @classmethod
    def of(cls, gen: Any, seed: int, do_sample: bool | None = None) -> Sampling:
        """From a config ``Generation`` block (``do_sample``, ``temperature``, ``top_p``, ``top_k``) and a
        seed; ``do_sample`` overrides the block's when given."""
        sample = bool(gen.do_sample) if do_sample is None else bool(do_sample)
        return cls(sample, float(gen.temperature), float(gen.top_p), int(gen.top_k), int(seed))


GREEDY = Sampling(do_sample=False)
"""Plain greedy decoding (memorization, utility)."""


# ------------------------------------------------------------------------------------------- helpers
def cut_after_eos(tokens: Sequence[int], eos_id: int | None) -> tuple[int, ...]:
    """Tokens up to and including the first EOS (all tokens when there is none)."""
    tokens = list(tokens)
    if eos_id is not None and eos_id in tokens:
        tokens = tokens[: tokens.index(eos_id) + 1]
    return tuple(tokens)


def row_seed(seed: int, item_id: str, occurrence: int = 0) -> int:
    """A 63-bit seed for one example of one call: stable across processes and Python versions."""
    digest = hashlib.sha256(f"{int(seed)}\x00{item_id}\x00{int(occurrence)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def warp_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Sampling logits: ``logits / temperature``, then top-k, then nucleus (top-p) filtering (-inf outside).

    Top-p keeps the smallest set of most likely tokens whose probability reaches ``top_p`` (the token that
    crosses the threshold is kept, as in Hugging Face's ``TopPLogitsWarper``); at least one token survives.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 for sampling, got {temperature}")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0, got {top_k}")
    logits = logits.float() / float(temperature)
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, int(top_k), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cum = torch.softmax(sorted_logits, dim=-1).cumsum(-1)
        # drop a token when the mass *before* it already reaches top_p (the crossing token stays)
        drop_sorted = (cum - torch.softmax(sorted_logits, dim=-1)) >= top_p
        drop_sorted[..., 0] = False
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def _sampling_probs(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    return torch.softmax(warp_logits(logits, temperature, top_k, top_p), dim=-1)


def _draw(probs: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF draw per row: the first token whose cumulative probability exceeds ``u · total``."""
    cdf = probs.double().cumsum(-1)
    target = (uniforms.to(cdf.device).double() * cdf[:, -1]).unsqueeze(-1)
    idx = torch.searchsorted(cdf, target, right=True).squeeze(-1)
    return idx.clamp_max(probs.shape[-1] - 1)


def _device(model) -> torch.device:
    device = getattr(model, "device", None)
    if isinstance(device, torch.device):
        return device
    return next(model.parameters()).device


def _cache_kwarg(model) -> str:
    """transformers 5 renamed ``past_key_values`` to ``cache``; use whichever this model's forward takes."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _last_logits_kwargs(model) -> dict:
    """Ask the prompt pass for the last position's logits only (``logits_to_keep=1``; the name of
    transformers < 4.50 was ``num_logits_to_keep``), as Hugging Face ``generate`` does: the LM head over
    every prompt position is a ``[batch, prompt, vocabulary]`` matmul whose rows are thrown away. A forward
    that names neither (a wrapper taking ``**kwargs``, a custom model) computes them all; the last row is
    the same either way."""
    params = inspect.signature(model.forward).parameters
    for name in ("logits_to_keep", "num_logits_to_keep"):
        if name in params:
            return {name: 1}
    return {}


class _Stepper:
    """Incremental decoding of one model over a left-padded batch, with its own KV cache."""

    def __init__(self, model, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        self.model = model
        self.device = _device(model)
        self.kwarg = _cache_kwarg(model)
        self.mask = attention_mask.to(self.device)
        self.positions = (self.mask.cumsum(-1) - 1).clamp_min(0)
        out = model(
            input_ids=input_ids.to(self.device), attention_mask=self.mask, position_ids=self.positions,
            use_cache=True, **_last_logits_kwargs(model),
        )
        self.cache = out.cache if "cache" in out else out.past_key_values
        self.logits = out.logits[:, -1].float()
        self.last_position = self.positions[:, -1:]

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed one token per row; returns the next-token logits (float32, on this model's device)."""
        self.mask = torch.cat([self.mask, self.mask.new_ones((self.mask.shape[0], 1))], dim=1)
        self.last_position = self.last_position + 1
        out = self.model(
            input_ids=tokens.to(self.device).unsqueeze(-1), attention_mask=self.mask,
            position_ids=self.last_position, use_cache=True, **{self.kwarg: self.cache},
        )
        self.cache = out.cache if "cache" in out else out.past_key_values
        self.logits = out.logits[:, -1].float()
        return self.logits


def _check(items: Sequence[Encoded], max_new_tokens: int, batch_size: int) -> None:
    if max_new_tokens < 1 or batch_size < 1:
        raise ValueError("max_new_tokens and batch_size must be >= 1")
    empty = [item.id for item in items if not item.prompt_ids]
    if empty:
        raise ValueError(f"{len(empty)} items have an empty prompt, e.g. {empty[:3]}")


def _decode(
    models_and_weights: list[tuple[torch.nn.Module, float]],
    items: Sequence[Encoded],
    max_new_tokens: int,
    batch_size: int,
    pad_id: int,
    eos_id: int | None,
    sampling: Sampling,
) -> list[tuple[int, ...]]:
    """The one decode loop: the next-token distribution is ``Σ_m weight_m · warp(p_m)`` (a single model with
    weight 1 is plain sampling; greedy takes the argmax of that model's raw logits)."""
    do_sample, seed = sampling.do_sample, sampling.seed
    temperature, top_p, top_k = sampling.temperature, sampling.top_p, sampling.top_k
    _check(items, max_new_tokens, batch_size)
    if not do_sample and len(models_and_weights) != 1:
        raise ValueError("greedy decoding takes exactly one model")
    if do_sample:  # validate once, before any forward pass
        warp_logits(torch.zeros(1, 2), temperature, top_k, top_p)
    seen: dict[str, int] = {}
    seeds = []
    for item in items:
        seeds.append(row_seed(seed, item.id, seen.get(item.id, 0)))
        seen[item.id] = seen.get(item.id, 0) + 1
    order = sorted(range(len(items)), key=lambda i: (len(items[i].prompt_ids), i))
    results: list[tuple[int, ...] | None] = [None] * len(items)
    modes = [model.training for model, _ in models_and_weights]
    for model, _ in models_and_weights:
        model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                batch = collate_prompts([items[i] for i in idx], pad_id)
                steppers = [_Stepper(m, batch["input_ids"], batch["attention_mask"]) for m, _ in models_and_weights]
                generators = [torch.Generator(device="cpu").manual_seed(seeds[i]) for i in idx]
                out_device = steppers[0].device
                done = torch.zeros(len(idx), dtype=torch.bool, device=out_device)
                new_tokens = []
                for step in range(max_new_tokens):
                    if do_sample:
                        probs = None
                        for stepper, (_, weight) in zip(steppers, models_and_weights):
                            part = _sampling_probs(stepper.logits, temperature, top_k, top_p).to(out_device)
                            probs = part * weight if probs is None else probs + part * weight
                        uniforms = torch.stack([torch.rand((), generator=g, dtype=torch.float64) for g in generators])
                        tokens = _draw(probs, uniforms)
                    else:
                        tokens = steppers[0].logits.argmax(-1)
                    if eos_id is not None:
                        # rows already finished keep emitting EOS; they are cut afterwards anyway
                        tokens = torch.where(done, torch.full_like(tokens, eos_id), tokens)
                        done = done | (tokens == eos_id)
                    new_tokens.append(tokens)
                    if bool(done.all()) or step == max_new_tokens - 1:
                        break
                    for stepper in steppers:
                        stepper.step(tokens)
                rows = torch.stack(new_tokens, dim=1).cpu().tolist()
                for slot, tokens in zip(idx, rows):
                    results[slot] = cut_after_eos(tokens, eos_id)
    finally:
        for (model, _), mode in zip(models_and_weights, modes):
            model.train(mode)
    return results  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------- public API
def generate(
    model,
    items: Sequence[Encoded],
    max_new_tokens: int,
    batch_size: int,
    pad_id: int,
    eos_id: int | None,
    sampling: Sampling = GREEDY,
) -> list[tuple[int, ...]]:
    """Continue each item's prompt: new tokens only, cut after the first EOS (kept), input order.

    ``sampling`` (:class:`Sampling`; default :data:`GREEDY`, plain argmax). With sampling, each example draws
    from its own generator seeded by ``(sampling.seed, id, occurrence)``: the same call gives the same tokens,
    a different seed gives different ones, and batch size/order do not matter.
    """
    return _decode([(model, 1.0)], items, max_new_tokens, batch_size, pad_id, eos_id, sampling)


def mixed_sample(
    student,
    teacher,
    items: Sequence[Encoded],
    alpha: float,
    max_new_tokens: int,
    batch_size: int,
    pad_id: int,
    eos_id: int | None,
    sampling: Sampling = Sampling(do_sample=True),
) -> list[tuple[int, ...]]:
    """MiniLLM's teacher-mixed sampling (Gu et al. 2024, Sec. 2.2): token by token from
    ``p̃ = (1 − α)·q_student + α·p_teacher``, both models decoding with their own KV cache.

    ``sampling`` must sample (``do_sample=True``); its temperature/top-k/top-p are applied to each model's
    logits before mixing (as MiniLLM's sampler does). ``alpha = 0`` draws exactly the tokens of
    ``generate(student, sampling=sampling)``; ``alpha = 1`` those of the teacher. Teacher and student must
    share the vocabulary.
    """
    if not sampling.do_sample:
        raise ValueError("mixed sampling samples: give a Sampling with do_sample=True")
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    vs = student.get_output_embeddings().weight.shape[0]
    vt = teacher.get_output_embeddings().weight.shape[0]
    if vs != vt:
        raise ValueError(f"student vocabulary ({vs}) != teacher vocabulary ({vt}); mixing needs a shared vocabulary")
    return _decode([(student, 1.0 - alpha), (teacher, alpha)], items, max_new_tokens, batch_size, pad_id,
                   eos_id, sampling)


def with_responses(items: Sequence[Encoded], responses: Sequence[Sequence[int]], max_length: int) -> list[Encoded]:
    """New items with the same ids and prompts whose responses are ``responses`` (cut to ``max_length``).

    Raises when lengths differ, a prompt already fills ``max_length``, or a response is empty.
    """
    if len(items) != len(responses):
        raise ValueError(f"{len(items)} items but {len(responses)} responses")
    out = []
    for item, response in zip(items, responses):
        room = int(max_length) - len(item.prompt_ids)
        if room < 1:
            raise ValueError(f"item {item.id}: prompt of {len(item.prompt_ids)} tokens leaves no room in {max_length}")
        response = tuple(int(t) for t in response)[:room]
        if not response:
            raise ValueError(f"item {item.id}: empty response")
        out.append(Encoded(item.id, tuple(item.prompt_ids), response))
    return out
