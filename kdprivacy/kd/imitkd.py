"""ImitKD (Lin et al. 2020) as run in the DistiLLM code base (``--type mixed-fkl --mixed-alpha``): with
probability ``sgo_ratio`` a batch is an SGO batch: the current student samples responses to the batch's
prompts, they are pushed into a FIFO replay buffer (``buffer_capacity``), and the batch trained on is drawn
uniformly from the buffer; otherwise ground truth. Loss: the ``kd`` block's objective (default forward KL)
against the teacher on those sequences.

``schedule: linear`` anneals as Lin et al. 2020 do (their mixing weight beta_i, the probability of the
ground truth, decays linearly from 1 to 0 over training): the SGO probability at step ``i`` of ``I`` is
``sgo_ratio * i / I``, from 0 at the first step to ``sgo_ratio`` at the last. ``constant`` (default) is the
DistiLLM code's ``mixed-fkl`` that the authors ran.

Its params are :class:`kdprivacy.kd.pretrain.PretrainParams` (``disable_dropout``, and the optional
pretraining LM loss: ``pretrain_weight``, ``pretrain_kd_ratio``).
"""

from __future__ import annotations

from typing import Literal

from kdprivacy.fields import Fraction, PosInt
from kdprivacy.kd.pretrain import PretrainParams


class ImitKDParams(PretrainParams):
    sgo_ratio: Fraction = 1.0
    buffer_capacity: PosInt = 1000
    schedule: Literal["constant", "linear"] = "constant"


def train(student, teacher, train_items, dev_items, run, pad_id, log=None, *, eos_id=None, guard=None, resume=None,
          on_step=None, pretrain_items=None, **_):
    """ImitKD: SGO batches (probability ``sgo_ratio``, or annealed up to it: ``schedule``) come from a replay
    buffer of student samples.

    History: ``frac_sgo_batches``, ``buffer_size`` (end of epoch), ``n_sgo_generated`` and ``sgo_mean_len``
    (sequences sampled this epoch and their mean response length); ``sgo_probability`` (linear schedule:
    the SGO probability at the epoch's last step).
    """
    from kdprivacy.kd import sampling as sgo
    from kdprivacy.kd.pretrain import with_pretrain
    from kdprivacy.kd.teacher import divergence_of, kd_loss_fn, prepare_teacher
    from kdprivacy.train.loop import fit

    params, gen = run.params, run.sampling
    teacher = prepare_teacher(student, teacher, "imitkd")
    loss_fn = sgo.with_sgo_flag(kd_loss_fn(teacher, divergence_of(run.kd), float(run.kd.lm_weight)))
    sampler = sgo.StudentSampler(gen, pad_id, sgo.eos_id_of(student, eos_id), run.max_length, run.seed, guard)
    buffer = sgo.ReplayBuffer(params.buffer_capacity, seed=f"{run.seed}:imitkd:buffer")
    rng = sgo.decision_rng(run.seed, "imitkd")
    ratio = params.sgo_ratio
    total = max(1, run.total_steps(len(train_items)))
    schedule = {"step": 0, "probability": 0.0}  # checkpointed with the method state when the schedule is linear

    def sgo_probability() -> float:
        if params.schedule == "constant":
            return ratio
        step = schedule["step"]
        schedule["step"] += 1
        schedule["probability"] = ratio * min(1.0, step / max(1, total - 1))
        return schedule["probability"]


    def make_batch(items):
        if rng.random() < sgo_probability():
            buffer.push(sampler.sample(student, items))
            return sgo.collate_flagged(buffer.sample(len(items)), pad_id, True)
        return sgo.collate_flagged(items, pad_id, False)

    parts = {"schedule": schedule} if params.schedule == "linear" else {}  # constant: the state as before
    make_batch, loss_fn, pretrain_parts = with_pretrain(params, pretrain_items, teacher, make_batch, loss_fn,
                                                        run.train.batch_size, run.seed, pad_id)

    def on_epoch_end(epoch, row):
        extra = {"buffer_size": len(buffer), "n_sgo_generated": sampler.n_sequences,
                 "sgo_mean_len": sampler.mean_length()}
        if params.schedule == "linear":
            extra["sgo_probability"] = schedule["probability"]  # at the epoch's last step
        sampler.reset_counts()
        return extra

    return fit(student, train_items, dev_items, run.train, pad_id, loss_fn, log,
               desc=f"student[imitkd-{run.kd.objective}]", make_batch=make_batch, on_epoch_end=on_epoch_end,
               seed=run.seed, state=sgo.MethodState(rng=rng, buffer=buffer, sampler=sampler, **parts, **pretrain_parts),
               resume=resume, on_step=on_step)
