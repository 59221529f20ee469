"""The frozen teacher in a KD loss: word-level KD losses ``(1 − w)·D(teacher ‖ student) + w·LM`` on response
positions, the divergence a ``kd`` block names, and :class:`TeacherCache` (the teacher's top-k log-probs of
every training position, computed once, for the ``kd`` method's ``teacher_top_k``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import torch
from tqdm.auto import tqdm

from kdprivacy.config import KD
from kdprivacy.encoding import Encoded, collate, shift_for_causal_lm
from kdprivacy.kd import fused as fused_kd
from kdprivacy.kd import objectives
from kdprivacy.train.losses import forward_logits, model_device, to_device, token_nll


def divergence_of(kd: KD, temperature: float | None = None) -> Callable:
    """The divergence ``fn(student_logits, teacher_logits, mask)`` of a ``kd`` block: its objective with its
    ``beta``/``alpha`` (those left None are not passed), at ``kd.temperature`` (or ``temperature``)."""
    hparams = {key: getattr(kd, key) for key in ("beta", "alpha") if getattr(kd, key) is not None}
    temperature = float(kd.temperature) if temperature is None else temperature
    return objectives.get_objective(kd.objective, temperature=temperature, **hparams)


def check_shared_vocab(student, teacher) -> None:
    """Token-level KD compares logits position by position: the output vocabularies must be the same."""
    vs, vt = student.get_output_embeddings().weight.shape[0], teacher.get_output_embeddings().weight.shape[0]
    if vs != vt:
        raise ValueError(
            f"student vocabulary ({vs}) != teacher vocabulary ({vt}); KD needs a shared tokenizer/vocabulary"
        )


def with_lm(kd: torch.Tensor, logits: torch.Tensor, batch: dict, lm_weight: float) -> tuple[torch.Tensor, dict]:
    """``(1 − w)·kd + w·LM`` on response positions; the LM loss is reported (without a gradient) at w = 0."""
    with torch.set_grad_enabled(torch.is_grad_enabled() and lm_weight > 0):
        total, count = token_nll(logits, batch["input_ids"], batch["response_mask"])
    lm = total / count.clamp_min(1.0)
    loss = (1.0 - lm_weight) * kd + lm_weight * lm if lm_weight > 0 else kd
    return loss, {"kd_loss": kd.item(), "lm_loss": lm.item()}


def kd_loss_fn(teacher, divergence: Callable, lm_weight: float, fused: bool = True) -> Callable:
    """``loss_fn`` for :func:`fit`: (1 − w)·D(teacher ‖ student) + w·LM on response positions.

    ``fused`` (default): where the student's logits are its LM head applied to its decoder's last hidden
    states (:func:`kdprivacy.kd.fused.head_chain`), the head, the divergence and their gradient run in
    chunks at the response positions only (:mod:`kdprivacy.kd.fused`: the same loss and gradients, no
    ``[B, T, V]`` tensor); otherwise, or with ``fused=False``, the plain full-logits path below."""

    def loss_fn(student, batch):
        chain = fused_kd.head_chain(student, trainable=True) if fused else None
        if chain is not None:
            teacher_chain = fused_kd.head_chain(teacher, trainable=False)
            check_shared_vocab(student, teacher)
            return fused_kd.fused_kd_loss(chain, teacher, teacher_chain, divergence, lm_weight, batch)
        logits = forward_logits(student, batch)
        with torch.no_grad():
            teacher_logits = forward_logits(teacher, batch)
        if logits.shape[-1] != teacher_logits.shape[-1]:
            raise ValueError(f"student/teacher logits differ in vocabulary ({logits.shape[-1]} vs {teacher_logits.shape[-1]})")
        s, _, mask = shift_for_causal_lm(logits, batch["input_ids"], batch["response_mask"])
        t = teacher_logits[:, :-1]
        kd = divergence(s.float(), t.float(), mask)
        return with_lm(kd, logits, batch, lm_weight)

    return loss_fn


# ------------------------------------------------------------------------------- cached teacher logits
def coarsen(logits: torch.Tensor, index: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Log-probabilities of the ``k + 1`` buckets "each token of ``index``" and "every other token" under
    ``softmax(logits / temperature)``: ``[..., V]`` logits, ``[..., k]`` indices -> ``[..., k + 1]``.

    Any divergence between two such coarsenings (same buckets) is a divergence between distributions, and by
    the data-processing inequality never exceeds the one between the full distributions; with every token
    in ``index`` the tail bucket is empty (``-inf``) and the divergence is the full one.
    """
    logp = torch.log_softmax(logits.float() / float(temperature), dim=-1)
    index = index.long()
    top = logp.gather(-1, index)
    # the tail summed directly over the other tokens (not 1 - sum(top): that cancels catastrophically when
    # the top-k hold almost all the mass); -inf exactly when no token is left
    tail = torch.logsumexp(logp.scatter(-1, index, float("-inf")), dim=-1, keepdim=True)
    return torch.cat([top, tail], dim=-1)


def target_positions(item: Encoded) -> tuple[int, int]:
    """``[start, stop)`` of ``item``'s response targets in the shifted frame (:func:`collate` then
    ``shift_for_causal_lm``): the positions whose logits predict a response token."""
    length = len(item.prompt_ids) + len(item.response_ids)
    return max(0, len(item.prompt_ids) - 1), max(0, length - 1)


class TeacherCache:
    """The frozen teacher's top-``k`` coarsened log-probabilities (:func:`coarsen`) at every response target
    position of every item, computed once (teacher in eval mode, batched, no gradient).

    Per item: ``index`` ``[n, k]`` (int32) and ``logp`` ``[n, k + 1]`` (float32), ``n`` its response target
    positions; memory ``n * (8k + 4)`` bytes per item. :meth:`attach` adds them to a collated batch as
    ``teacher_index`` ``[B, T-1, k]`` and ``teacher_logp`` ``[B, T-1, k + 1]`` (zeros off the target mask).
    ``precision``: the teacher pass runs under :func:`kdprivacy.models.autocast` (the training precision,
    as the teacher forward inside an uncached KD loss would).
    """

    def __init__(self, teacher, items: Sequence[Encoded], k: int, temperature: float, batch_size: int,
                 pad_id: int, log: logging.Logger | None = None, precision: str = "fp32"):
        from kdprivacy import models

        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        vocab = teacher.get_output_embeddings().weight.shape[0]
        self.k = min(int(k), int(vocab))
        self.temperature = float(temperature)
        self.entries: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        device = model_device(teacher)
        was_training = teacher.training
        teacher.eval()
        start = time.perf_counter()
        try:
            with torch.no_grad():
                for begin in tqdm(range(0, len(items), batch_size), desc=f"teacher cache[top-{self.k}]",
                                  disable=None):
                    chunk = list(items[begin : begin + batch_size])
                    batch = to_device(collate(chunk, pad_id), device)
                    with models.autocast(precision, device):
                        logits = forward_logits(teacher, batch)[:, :-1]
                    for row, item in enumerate(chunk):
                        lo, hi = target_positions(item)
                        rows = logits[row, lo:hi].float()
                        index = rows.topk(self.k, dim=-1).indices
                        self.entries[item.id] = (index.to("cpu", torch.int32),
                                                 coarsen(rows, index, self.temperature).cpu())
        finally:
            teacher.train(was_training)
        if log is not None:
            mb = sum(i.numel() * 4 + p.numel() * 4 for i, p in self.entries.values()) / 2**20
            log.info("teacher cache: top-%d of %d tokens at %d positions of %d items (%.1f MB) in %.1f s",
                     self.k, vocab, sum(len(i) for i, _ in self.entries.values()), len(self.entries), mb,
                     time.perf_counter() - start)

    def attach(self, batch: dict, items: Sequence[Encoded]) -> dict:
        width = batch["input_ids"].shape[1] - 1
        index = torch.zeros((len(items), width, self.k), dtype=torch.long)
        logp = torch.zeros((len(items), width, self.k + 1), dtype=torch.float32)
        for row, item in enumerate(items):
            if item.id not in self.entries:
                raise KeyError(f"item {item.id!r} is not in the teacher cache")
            lo, hi = target_positions(item)
            cached_index, cached_logp = self.entries[item.id]
            index[row, lo:hi] = cached_index.long()
            logp[row, lo:hi] = cached_logp
        batch["teacher_index"], batch["teacher_logp"] = index, logp
        return batch


def cached_kd_loss_fn(divergence: Callable, temperature: float, lm_weight: float) -> Callable:
    """:func:`kd_loss_fn` against a :class:`TeacherCache` (batch keys ``teacher_index``/``teacher_logp``):
    the divergence between the coarsened teacher and the student coarsened on the same buckets.
    ``divergence`` must be built with temperature 1 (the temperature is applied when coarsening)."""

    def loss_fn(student, batch):
        logits = forward_logits(student, batch)
        s, _, mask = shift_for_causal_lm(logits, batch["input_ids"], batch["response_mask"])
        kd = divergence(coarsen(s, batch["teacher_index"], temperature), batch["teacher_logp"], mask)
        return with_lm(kd, logits, batch, lm_weight)

    return loss_fn


def freeze(model):
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def divergence_loss(teacher, objective: str, temperature: float, lm_weight: float, **hparams) -> Callable:
    divergence = objectives.get_objective(objective, temperature=temperature, **hparams)
    return kd_loss_fn(teacher, divergence, lm_weight)


def prepare_teacher(student, teacher, method: str):
    """The teacher frozen for ``method`` (a shared vocabulary checked); a missing teacher is an error."""
    if teacher is None:
        raise ValueError(f"method {method!r} needs a teacher")
    check_shared_vocab(student, teacher)
    return freeze(teacher)
