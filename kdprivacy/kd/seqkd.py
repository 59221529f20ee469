"""SeqKD (Kim & Rush 2016): the student trains on the **teacher's generations** for the public prompts
(precomputed by ``scripts/generate_teacher.py``, :mod:`kdprivacy.kd.generations`); ``loss="ce"`` (LM loss
on the teacher's outputs, no teacher model needed) or ``"kd"`` (the ``kd`` block's objective on them).
"""

from __future__ import annotations

from typing import Literal

from kdprivacy.fields import Strict


class SeqKDParams(Strict):
    loss: Literal["ce", "kd"] = "ce"


def needs_teacher(params: SeqKDParams) -> bool:
    """Whether the teacher model is loaded: only for ``loss="kd"``."""
    return params.loss != "ce"


def train(student, teacher, train_items, dev_items, run, pad_id, log=None, *, teacher_generations=None, guard=None,
          resume=None, on_step=None, **_):
    """SeqKD: train on the teacher's generations for the public prompts (``teacher_generations``, one per
    training prompt id).

    History: ``frac_differs_from_gt`` (share of training responses that are not the ground truth; 0 would
    mean SeqKD silently trained on ground truth, the authors' bug), ``n_train``.
    """
    import logging

    from kdprivacy.kd.generations import fraction_differing
    from kdprivacy.kd.teacher import divergence_of, kd_loss_fn, prepare_teacher
    from kdprivacy.train.loop import fit
    from kdprivacy.train.losses import lm_loss

    params = run.params
    if not teacher_generations:
        raise ValueError("seqkd needs teacher_generations (the teacher's outputs for the public prompts)")
    generated = list(teacher_generations)
    if guard is not None:
        guard([item.id for item in generated])
    ids = [item.id for item in generated]
    if len(set(ids)) != len(ids):
        raise ValueError("teacher generations contain duplicate ids")
    train_ids = {item.id for item in train_items}
    if set(ids) != train_ids:
        raise ValueError(
            f"teacher generations cover {len(set(ids) & train_ids)} of {len(train_ids)} training prompts and "
            f"{len(set(ids) - train_ids)} others; they must answer exactly the training prompts"
        )
    prompts = {item.id: item.prompt_ids for item in train_items}
    stale = [item.id for item in generated if item.prompt_ids != prompts[item.id]]
    if stale:
        raise ValueError(f"{len(stale)} teacher generations have prompts that differ from the encoded training "
                         f"prompts (another tokenizer or max_prompt_length?), e.g. {stale[:3]}")
    differs = fraction_differing(generated, train_items)
    if params.loss == "ce":
        loss_fn = lm_loss
    else:
        prepare_teacher(student, teacher, "seqkd")
        loss_fn = kd_loss_fn(teacher, divergence_of(run.kd), float(run.kd.lm_weight))
    (log or logging.getLogger("kdprivacy")).info(
        "seqkd: %d teacher generations, %.1f%% differ from ground truth", len(generated), 100 * differs)

    def on_epoch_end(epoch, row):
        return {"frac_differs_from_gt": differs, "n_train": len(generated)}

    return fit(student, generated, dev_items, run.train, pad_id, loss_fn, log, desc=f"student[seqkd-{params.loss}]",
               on_epoch_end=on_epoch_end, seed=run.seed, resume=resume, on_step=on_step)
