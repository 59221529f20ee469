"""What the SGO methods (ImitKD, GKD, MiniLLM, DistiLLM) share: sampling the student's outputs for a batch's
public prompts (:class:`StudentSampler`, guarded), the FIFO :class:`ReplayBuffer`, the per-batch SGO decision
RNG and flags, and :class:`MethodState`, a method's checkpointable state.

Privacy guard: every generated sequence keeps the id of the prompt it answers, and a ``guard(ids)`` callable
(:func:`kdprivacy.train.pools.pool_guard`) is run on every batch of prompts and of student-generated outputs.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable, Sequence

from kdprivacy import generation
from kdprivacy.config import Generation
from kdprivacy.encoding import Encoded, collate

def eos_id_of(model, eos_id: int | None) -> int:
    if eos_id is None:
        eos_id = getattr(model.config, "eos_token_id", None)
        if isinstance(eos_id, (list, tuple)):
            eos_id = eos_id[0] if eos_id else None
    if eos_id is None:
        raise ValueError("sampling needs an eos_id (none given and the model config has none)")
    return int(eos_id)


class ReplayBuffer:
    """FIFO buffer of generated items (oldest evicted beyond ``capacity``); seeded uniform sampling without
    replacement (DistiLLM's ``ReplayBuffer``: a ``deque(maxlen=capacity)`` + ``random.sample``)."""

    def __init__(self, capacity: int, seed: int | str = 0):
        if int(capacity) < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self.items: deque[Encoded] = deque(maxlen=self.capacity)
        self.rng = random.Random(seed)

    def __len__(self) -> int:
        return len(self.items)

    def push(self, items: Sequence[Encoded]) -> None:
        self.items.extend(items)

    def sample(self, n: int) -> list[Encoded]:
        if not self.items:
            raise ValueError("cannot sample from an empty replay buffer")
        return self.rng.sample(list(self.items), k=min(int(n), len(self.items)))

    def state_dict(self) -> dict:
        """Contents (as plain tuples) and sampling RNG, for checkpoint/resume."""
        return {"items": [_item_tuple(item) for item in self.items], "rng": self.rng.getstate()}

    def load_state_dict(self, state: dict) -> None:
        self.items.clear()
        self.items.extend(_item_from_tuple(t) for t in state["items"])
        self.rng.setstate(_as_random_state(state["rng"]))


def _item_tuple(item: Encoded) -> tuple:
    return (item.id, tuple(item.prompt_ids), tuple(item.response_ids))


def _item_from_tuple(t) -> Encoded:
    return Encoded(str(t[0]), tuple(int(x) for x in t[1]), tuple(int(x) for x in t[2]))


class StudentSampler:
    """Samples student outputs (SGO) for a batch's prompts: seeded per call, guarded, with counters."""

    def __init__(self, gen: Generation, pad_id: int, eos_id: int, max_length: int, seed: int, guard: Callable | None):
        self.gen, self.pad_id, self.eos_id, self.max_length = gen, pad_id, eos_id, max_length
        self.seed, self.guard = int(seed), guard
        self.calls = 0
        self.reset_counts()

    def reset_counts(self) -> None:
        self.n_sequences, self.n_tokens = 0, 0

    def next_seed(self) -> int:
        self.calls += 1
        return self.seed * 1_000_003 + self.calls

    def check(self, items: Sequence[Encoded]) -> None:
        if self.guard is not None:
            self.guard([item.id for item in items])

    def record(self, items: Sequence[Encoded]) -> None:
        self.n_sequences += len(items)
        self.n_tokens += sum(len(item.response_ids) for item in items)

    def sample(self, student, items: Sequence[Encoded]) -> list[Encoded]:
        self.check(items)  # prompts first: nothing is generated for a secret prompt
        g = self.gen
        tokens = generation.generate(
            sampling_model(student),
            items,
            g.max_new_tokens,
            g.batch_size,
            self.pad_id,
            self.eos_id,
            generation.Sampling.of(g, self.next_seed()),
        )
        out = generation.with_responses(items, tokens, self.max_length)
        self.check(out)
        self.record(out)
        return out

    def mean_length(self) -> float:
        return self.n_tokens / self.n_sequences if self.n_sequences else math.nan

    def state_dict(self) -> dict:
        """The call counter (it sets the next sampling seed) and the epoch's counts, for checkpoint/resume."""
        return {"calls": self.calls, "n_sequences": self.n_sequences, "n_tokens": self.n_tokens}

    def load_state_dict(self, state: dict) -> None:
        self.calls, self.n_sequences, self.n_tokens = (
            int(state["calls"]),
            state["n_sequences"],
            state["n_tokens"],
        )


class MethodState:
    """What a method keeps between batches, for :func:`kdprivacy.train.loop.fit`'s checkpoints: named parts,
    each a ``random.Random``, a plain ``dict`` (restored in place) or an object with ``state_dict`` /
    ``load_state_dict`` (replay buffers, samplers, MiniLLM's rollout)."""

    def __init__(self, **parts):
        self.parts = parts

    def state_dict(self) -> dict:
        out = {}
        for name, part in self.parts.items():
            if isinstance(part, random.Random):
                out[name] = part.getstate()
            elif isinstance(part, dict):
                out[name] = dict(part)
            else:
                out[name] = part.state_dict()
        return out

    def load_state_dict(self, state: dict) -> None:
        missing = sorted(set(self.parts) - set(state))
        if missing:
            raise ValueError(f"method state lacks {missing}")
        for name, part in self.parts.items():
            if isinstance(part, random.Random):
                part.setstate(_as_random_state(state[name]))
            elif isinstance(part, dict):
                part.clear()
                part.update(state[name])
            else:
                part.load_state_dict(state[name])


def _as_random_state(state):
    """``random.Random.getstate()`` tuples may come back from a checkpoint as lists: rebuild the tuples."""
    version, internal, gauss = state
    return (version, tuple(internal), gauss)


def sampling_model(model):
    """The module to decode with: a LoRA (peft) student's underlying transformers model, whose layers carry
    the adapter in place (same outputs; its ``forward`` exposes the KV-cache argument by name, which
    :mod:`kdprivacy.generation` looks for), else the model itself."""
    from kdprivacy import models

    return model.get_base_model() if models.is_lora(model) else model


def decision_rng(seed: int, method: str) -> random.Random:
    """Which batches use SGO: a private RNG (never Python's or torch's global one)."""
    return random.Random(f"{int(seed)}:{method}:sgo")


def with_sgo_flag(loss_fn: Callable) -> Callable:
    """Adds ``frac_sgo_batches`` (0/1 per batch, so its epoch mean is the fraction) to a loss's stats."""

    def wrapped(model, batch):
        loss, stats = loss_fn(model, batch)
        return loss, {**stats, "frac_sgo_batches": float(bool(batch.get("sgo", False)))}

    return wrapped


def collate_flagged(items: Sequence[Encoded], pad_id: int, sgo: bool, **extra) -> dict:
    batch = collate(items, pad_id)
    batch["sgo"] = sgo
    batch.update(extra)
    return batch
