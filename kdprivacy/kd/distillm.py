"""DistiLLM (Ko et al. 2024): skewed reverse KL ``KL(q ‖ skew·q + (1 − skew)·p)`` (skew 0.1) with the adaptive
off-policy schedule (see :func:`adaptive_threshold` and :func:`train`).

Its params are :class:`kdprivacy.kd.pretrain.PretrainParams` (``disable_dropout``, and the optional
pretraining LM loss: ``pretrain_weight``, ``pretrain_kd_ratio``).
"""

from __future__ import annotations

import math

from kdprivacy.fields import Fraction, NonNegFloat, PosInt
from kdprivacy.kd.pretrain import PretrainParams


class DistiLLMParams(PretrainParams):
    skew: Fraction = 0.1
    init_threshold: Fraction = 0.2
    threshold_step: Fraction = 0.1
    loss_eps: NonNegFloat = 0.1
    buffer_capacity: PosInt = 1000


def adaptive_threshold(threshold: float, prev_loss: float, curr_loss: float, step: float, eps: float) -> float:
    """DistiLLM's adaptive SGO probability update: ``min(1, φ + step)`` when the dev loss got worse by
    more than ``eps`` (``curr > prev + eps``), else ``φ`` unchanged (NaN losses never raise it)."""
    if math.isfinite(prev_loss) and math.isfinite(curr_loss) and curr_loss > prev_loss + eps:
        return min(1.0, threshold + step)
    return threshold


def train(student, teacher, train_items, dev_items, run, pad_id, log=None, *, eos_id=None, guard=None, resume=None,
          on_step=None, pretrain_items=None, **_):
    """DistiLLM: skewed reverse KL ``srkl(alpha=skew)`` with the adaptive off-policy schedule.

    The schedule implemented (per batch, ``r ~ U(0, 1)`` from a seeded RNG, ``φ`` the SGO probability,
    ``progress = step / total_steps``):

    1. ``r < φ·(1 − progress)``, or ``r < φ`` while the buffer holds fewer than ``buffer_capacity`` items:
       the student samples responses to the batch's prompts, they go into the replay buffer, and the batch
       trained on is these fresh samples;
    2. else ``r < φ``: the batch is drawn from the replay buffer;
    3. else: the batch's public ground truth.

    ``φ`` starts at ``init_threshold``. After every epoch the dev loss (response NLL on the **dev** pool)
    is compared with the **previous** evaluation (before epoch 1: the dev loss of the starting student);
    if it got worse by more than ``loss_eps``, ``φ ← min(1, φ + threshold_step)`` for the next epoch.

    How this differs from the authors' code (``jongwooko/distillm`` ``finetune.py``, which the paper's
    fork ran): steps 1–3 are theirs, but (a) their validation set was the non-member pool, ours is dev;
    (b) their reference loss was only updated when φ was raised, so every epoch was compared with the loss
    of the *untrained* student, a level later epochs essentially never exceed; ours is the previous epoch;
    (c) their scripts start at φ = 0 (``--init-threshold 0.0``), so SGO never starts; our default is 0.2, so
    the method differs from ``kd[srkl]`` from the first epoch; ``loss_eps`` (0.1) and ``threshold_step``
    (0.1) are theirs. Evaluation happens once per epoch (their ``--eval-interval -1`` also meant per epoch).

    History: ``sgo_threshold`` (φ in effect during the epoch), ``sgo_threshold_next`` (after the update),
    ``frac_sgo_batches``, ``frac_fresh_batches``, ``buffer_size``, ``n_sgo_generated``, ``sgo_mean_len``.
    """
    import logging

    from kdprivacy.kd import sampling as sgo
    from kdprivacy.kd.pretrain import with_pretrain
    from kdprivacy.kd.teacher import divergence_loss, prepare_teacher
    from kdprivacy.train.loop import fit
    from kdprivacy.train.losses import mean_nll

    p, gen = run.params, run.sampling
    teacher = prepare_teacher(student, teacher, "distillm")
    if not dev_items:
        raise ValueError("distillm's adaptive schedule needs dev items")
    base_loss = divergence_loss(teacher, "srkl", float(run.kd.temperature), float(run.kd.lm_weight), alpha=p.skew)

    def loss_fn(model, batch):
        loss, stats = sgo.with_sgo_flag(base_loss)(model, batch)
        return loss, {**stats, "frac_fresh_batches": float(bool(batch.get("fresh", False)))}

    sampler = sgo.StudentSampler(gen, pad_id, sgo.eos_id_of(student, eos_id), run.max_length, run.seed, guard)
    buffer = sgo.ReplayBuffer(p.buffer_capacity, seed=f"{run.seed}:distillm:buffer")
    rng = sgo.decision_rng(run.seed, "distillm")
    total = max(1, run.total_steps(len(train_items)))
    eval_bs = int(run.train.eval_batch_size)
    state = {"phi": p.init_threshold, "step": 0, "prev": mean_nll(student, dev_items, eval_bs, pad_id)}

    def make_batch(items):
        r, phi = rng.random(), state["phi"]
        progress = state["step"] / total
        state["step"] += 1
        if r < phi * (1.0 - progress) or (r < phi and len(buffer) < buffer.capacity):
            fresh = sampler.sample(student, items)
            buffer.push(fresh)
            return sgo.collate_flagged(fresh, pad_id, True, fresh=True)
        if r < phi:
            return sgo.collate_flagged(buffer.sample(len(items)), pad_id, True, fresh=False)
        return sgo.collate_flagged(items, pad_id, False, fresh=False)

    make_batch, loss_fn, pretrain_parts = with_pretrain(p, pretrain_items, teacher, make_batch, loss_fn,
                                                        run.train.batch_size, run.seed, pad_id)

    def on_epoch_end(epoch, row):
        phi = state["phi"]
        new_phi = adaptive_threshold(phi, state["prev"], row["dev_loss"], p.threshold_step, float(p.loss_eps))
        if new_phi != phi:
            (log or logging.getLogger("kdprivacy")).info(
                "distillm epoch %d: dev loss %.4f > %.4f + %g: SGO probability %.2f -> %.2f",
                epoch, row["dev_loss"], state["prev"], p.loss_eps, phi, new_phi)
        state["prev"], state["phi"] = row["dev_loss"], new_phi
        extra = {"sgo_threshold": phi, "sgo_threshold_next": new_phi, "buffer_size": len(buffer),
                 "n_sgo_generated": sampler.n_sequences, "sgo_mean_len": sampler.mean_length()}
        sampler.reset_counts()
        return extra

    return fit(student, train_items, dev_items, run.train, pad_id, loss_fn, log, desc="student[distillm]",
               make_batch=make_batch, on_epoch_end=on_epoch_end, seed=run.seed,
               state=sgo.MethodState(rng=rng, buffer=buffer, sampler=sampler, schedule=state, **pretrain_parts),
               resume=resume,
               on_step=on_step)
