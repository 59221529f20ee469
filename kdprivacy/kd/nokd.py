"""No-KD control: SFT on public ground truth; the teacher is never touched (the students' baseline)."""

from __future__ import annotations


def train(student, teacher, train_items, dev_items, run, pad_id, log=None, *, resume=None, on_step=None, **_):
    """SFT of ``student`` on ``train_items`` with ``run.train`` (``teacher`` is ignored)."""
    from kdprivacy.train.loop import sft

    return sft(student, train_items, dev_items, run.train, pad_id, log, desc="student[nokd]", seed=run.seed,
               resume=resume, on_step=on_step)
