"""GKD (Agarwal et al. 2024), with the semantics of TRL's ``GKDTrainer``: each batch is replaced, with
probability ``lmbda``, by fresh on-policy samples of the student for the same prompts (no buffer); loss =
generalized JSD(``beta``) on the response tokens (:func:`kdprivacy.kd.objectives.generalized_jsd`, TRL's
``generalized_jsd_loss`` convention, including its ends: ``beta = 0`` is forward KL(teacher ‖ student),
``beta = 1`` reverse KL(student ‖ teacher)). TRL decides with ``random.random() <= lmbda``; we use ``<`` so
``lmbda = 0`` never samples.

Its params are :class:`kdprivacy.kd.dropout.OnPolicyParams` (``disable_dropout``).
"""

from __future__ import annotations

from pydantic import Field

from kdprivacy.kd.dropout import OnPolicyParams
from kdprivacy.fields import Fraction


class GKDParams(OnPolicyParams):
    lmbda: Fraction = 0.5
    beta: Fraction = 0.5
    temperature_in_loss: bool = Field(
        True, description="the JSD divides both logits by kd.temperature (ours); false: temperature 1 in the "
        "loss, as TRL's GKDTrainer, where the temperature only shapes sampling (generation.temperature)"
    )


def train(student, teacher, train_items, dev_items, run, pad_id, log=None, *, eos_id=None, guard=None, resume=None,
          on_step=None, **_):
    """GKD: with probability ``lmbda`` a batch is replaced by fresh student samples for its prompts; loss =
    generalized JSD(``beta``) with ``kd.temperature`` (1 when not ``temperature_in_loss``; ``kd.objective``
    is not used). History:
    ``frac_sgo_batches``, ``n_sgo_generated``, ``sgo_mean_len``.
    """
    from kdprivacy.kd import sampling as sgo
    from kdprivacy.kd.teacher import divergence_loss, prepare_teacher
    from kdprivacy.train.loop import fit

    params, gen = run.params, run.sampling
    teacher = prepare_teacher(student, teacher, "gkd")
    temperature = float(run.kd.temperature) if params.temperature_in_loss else 1.0
    base_loss = divergence_loss(teacher, "jsd", temperature, float(run.kd.lm_weight), beta=params.beta)
    loss_fn = sgo.with_sgo_flag(base_loss)
    sampler = sgo.StudentSampler(gen, pad_id, sgo.eos_id_of(student, eos_id), run.max_length, run.seed, guard)
    rng = sgo.decision_rng(run.seed, "gkd")
    lmbda = params.lmbda

    def make_batch(items):
        if rng.random() < lmbda:
            return sgo.collate_flagged(sampler.sample(student, items), pad_id, True)
        return sgo.collate_flagged(items, pad_id, False)

    def on_epoch_end(epoch, row):
        extra = {"n_sgo_generated": sampler.n_sequences, "sgo_mean_len": sampler.mean_length()}
        sampler.reset_counts()
        return extra

    return fit(student, train_items, dev_items, run.train, pad_id, loss_fn, log, desc=f"student[gkd-jsd{params.beta}]",
               make_batch=make_batch, on_epoch_end=on_epoch_end, seed=run.seed,
               state=sgo.MethodState(rng=rng, sampler=sampler), resume=resume, on_step=on_step)
