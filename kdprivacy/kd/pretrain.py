"""The LM loss on a pretraining corpus that the authors' code adds to ImitKD, DistiLLM and MiniLLM (DistiLLM's
``--lm-data-dir`` / ``--lm-coef``; LMOps MiniLLM's ``pt_loss`` with ``--kd-ratio``), off by default.

With ``pretrain_weight`` ``w`` > 0 every training step also draws the next batch of the **pretrain** pool
(:class:`PretrainBatches`: seeded shuffle, cycled, never a member, non-member or dev example) and adds

    w * [(1 - r) * CE(student) + r * KL(teacher || student)]   over every non-pad token of that batch,

``r`` = ``pretrain_kd_ratio`` (0: plain LM loss, the DistiLLM code's ``pt_loss``; 0.5: MiniLLM's ``pt_loss``).
The pretraining text is plain text: the loss covers prompt and response tokens alike. The batch position is
part of the method's checkpointed state, so a resumed run draws the same batches. torch is imported where
it is used, so that the config can read :class:`PretrainParams` without it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import Field

from kdprivacy.fields import Fraction, NonNegFloat
from kdprivacy.kd.dropout import OnPolicyParams

if TYPE_CHECKING:
    from kdprivacy.encoding import Encoded


class PretrainParams(OnPolicyParams):
    """Params of a method that can add the pretraining LM loss (imitkd, distillm, minillm)."""

    pretrain_weight: NonNegFloat = Field(
        0.0, description="weight of the LM loss on a pretrain-pool batch added at every step (0 = off; the "
        "authors' code: 1.0)"
    )
    pretrain_kd_ratio: Fraction = Field(
        0.0, description="share of that loss that is forward KL to the teacher instead of cross-entropy "
        "(MiniLLM's code: 0.5)"
    )


class PretrainBatches:
    """Batches of ``batch_size`` pretrain items: a seeded permutation per pass, cycled; checkpointable."""

    def __init__(self, items: Sequence[Encoded], batch_size: int, seed: Any, pad_id: int):
        if not items:
            raise ValueError("pretrain_weight > 0 needs examples in the pretrain pool (data.split: the pool is "
                             "empty)")
        self.items, self.batch_size, self.pad_id = list(items), max(1, int(batch_size)), pad_id
        self.seed = f"{seed}:pretrain"
        self.passes, self.position = 0, 0
        self._order = self._permutation()

    def _permutation(self) -> list[int]:
        order = list(range(len(self.items)))
        random.Random(f"{self.seed}:{self.passes}").shuffle(order)
        return order

    def next(self) -> dict:
        from kdprivacy.encoding import collate

        chosen = []
        while len(chosen) < self.batch_size:
            if self.position >= len(self._order):
                self.passes, self.position = self.passes + 1, 0
                self._order = self._permutation()
            take = self._order[self.position : self.position + self.batch_size - len(chosen)]
            chosen += take
            self.position += len(take)
        return collate([self.items[i] for i in chosen], self.pad_id)

    def state_dict(self) -> dict:
        return {"passes": self.passes, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.passes, self.position = int(state["passes"]), int(state["position"])
        self._order = self._permutation()


def pretrain_term(student, teacher, batch: dict, kd_ratio: float):
    """``(1 - r) * CE + r * KL(teacher || student)`` over every non-pad token of ``batch``, and its stats."""
    import torch

    from kdprivacy.encoding import shift_for_causal_lm
    from kdprivacy.kd import objectives
    from kdprivacy.train.losses import forward_logits, model_device, to_device, token_nll

    batch = to_device(batch, model_device(student))
    logits = forward_logits(student, batch)
    total, count = token_nll(logits, batch["input_ids"], batch["attention_mask"])
    ce = total / count.clamp_min(1.0)
    stats = {"pretrain_lm_loss": ce.item()}
    if kd_ratio == 0:
        return ce, stats
    if teacher is None:
        raise ValueError("pretrain_kd_ratio > 0 needs a teacher")
    with torch.no_grad():
        teacher_logits = forward_logits(teacher, batch)
    s, _, mask = shift_for_causal_lm(logits, batch["input_ids"], batch["attention_mask"])
    kd = objectives.forward_kl(s.float(), teacher_logits[:, :-1].float(), mask)
    stats["pretrain_kd_loss"] = kd.item()
    return (1.0 - kd_ratio) * ce + kd_ratio * kd, stats


def with_pretrain(
    params: PretrainParams,
    pretrain_items: Sequence[Encoded] | None,
    teacher,
    make_batch: Callable,
    loss_fn: Callable,
    batch_size: int,
    seed: Any,
    pad_id: int,
) -> tuple[Callable, Callable, dict]:
    """``(make_batch, loss_fn, state parts)``: unchanged (and no state) when ``pretrain_weight`` is 0; else
    ``make_batch`` attaches the next pretrain batch (key ``pretrain``) and ``loss_fn`` adds its weighted term
    (module docstring); the parts (``{"pretrain": batches}``) go into the method's ``MethodState``."""
    weight = float(params.pretrain_weight)
    if weight == 0:
        return make_batch, loss_fn, {}
    batches = PretrainBatches(pretrain_items or [], batch_size, seed, pad_id)
    ratio = float(params.pretrain_kd_ratio)

    def make(items):
        return {**make_batch(items), "pretrain": batches.next()}

    def loss(student, batch):
        main, stats = loss_fn(student, batch)
        extra, extra_stats = pretrain_term(student, teacher, batch["pretrain"], ratio)
        return main + weight * extra, {**stats, **extra_stats}

    return make, loss, {"pretrain": batches}
