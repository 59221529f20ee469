"""Word-level KD on public ground truth: ``(1 − lm_weight)·D + lm_weight·LM`` with the ``kd`` block's
objective (forward KL by default; the objective ablation uses fkl, rkl, jsd, tvd, sfkl, srkl), teacher frozen;
with ``kd.teacher_top_k`` against a :class:`~kdprivacy.kd.teacher.TeacherCache` computed once.
"""

from __future__ import annotations


def train(student, teacher, train_items, dev_items, run, pad_id, log=None, *, resume=None, on_step=None, **_):
    """:func:`distill_kd` with ``run``'s ``train`` and ``kd`` blocks."""
    if teacher is None:
        raise ValueError("method 'kd' needs a teacher")
    return distill_kd(student, teacher, train_items, dev_items, run.train, run.kd, pad_id, log, seed=run.seed,
                      resume=resume, on_step=on_step)


def distill_kd(student, teacher, train_items, dev_items, train, kd, pad_id: int, log=None, **fit_kwargs):
    """Word-level KD on ground-truth responses: (1 − lm_weight)·D + lm_weight·LM, teacher frozen.

    ``train``: :class:`kdprivacy.config.Train`; ``kd``: :class:`kdprivacy.config.KD` (``teacher_top_k`` None:
    a teacher forward every step; k: a :class:`~kdprivacy.kd.teacher.TeacherCache` computed once).
    ``fit_kwargs``: ``seed``, ``resume``, ``on_step`` (:func:`kdprivacy.train.loop.fit`). History gains
    ``kd_loss`` and ``lm_loss`` columns.
    """
    from kdprivacy.encoding import collate
    from kdprivacy.kd.teacher import TeacherCache, cached_kd_loss_fn, check_shared_vocab, divergence_of, freeze
    from kdprivacy.kd.teacher import kd_loss_fn
    from kdprivacy.train.loop import fit

    check_shared_vocab(student, teacher)
    freeze(teacher)
    if kd.teacher_top_k is None:
        loss_fn = kd_loss_fn(teacher, divergence_of(kd), float(kd.lm_weight))
        return fit(student, train_items, dev_items, train, pad_id, loss_fn, log, desc=f"kd[{kd.objective}]",
                   **fit_kwargs)
    # cached teacher: one teacher pass over the training data, then no teacher forward in the loop
    temperature = float(kd.temperature)
    cache = TeacherCache(teacher, train_items, int(kd.teacher_top_k), temperature, int(train.batch_size), pad_id,
                         log, precision=train.precision)
    loss_fn = cached_kd_loss_fn(divergence_of(kd, temperature=1.0), temperature, float(kd.lm_weight))
    return fit(student, train_items, dev_items, train, pad_id, loss_fn, log,
               desc=f"kd[{kd.objective}, cached top-{cache.k}]",
               make_batch=lambda items: cache.attach(collate(items, pad_id), items), **fit_kwargs)
