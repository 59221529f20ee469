"""Dropout off while a KD method trains (``disable_dropout``, the on-policy methods' default, as TRL's
GKDTrainer and MiniLLM): a context manager that zeroes every dropout rate of a model and restores them.
Imports torch only when used, so the method registry (:mod:`kdprivacy.kd`) stays torch-free.
"""

from __future__ import annotations

import contextlib

from pydantic import Field

from kdprivacy.fields import Strict

class OnPolicyParams(Strict):
    """The params every on-policy KD method (imitkd, gkd, minillm, distillm) shares."""

    disable_dropout: bool = Field(
        True, description="train the student with every dropout rate at 0 (TRL GKDTrainer and MiniLLM do); "
        "false keeps the model's dropout",
    )


_FLOAT_DROPOUT_ATTRS = ("attention_dropout", "dropout")  # rates kept as floats by HF attention modules


@contextlib.contextmanager
def dropout_off(model, enabled: bool = True):
    """Inside the block every ``torch.nn.Dropout``-type module of ``model`` (LoRA's included) has ``p = 0``,
    and so do the float dropout rates HF attention modules keep (``attention_dropout``/``dropout``, e.g.
    Llama/Qwen/OPT); the old values are restored on exit. ``model.config`` is not touched, so a checkpoint
    saved afterwards keeps the model's own dropout settings. ``enabled=False`` changes nothing."""
    if not enabled:
        yield model
        return
    from torch.nn.modules.dropout import _DropoutNd

    saved = []
    for module in model.modules():
        if isinstance(module, _DropoutNd):
            saved.append((module, "p", module.p))
            module.p = 0.0
        for attr in _FLOAT_DROPOUT_ATTRS:
            value = module.__dict__.get(attr)
            if isinstance(value, float):
                saved.append((module, attr, value))
                setattr(module, attr, 0.0)
    try:
        yield model
    finally:
        for module, attr, value in saved:
            setattr(module, attr, value)
