"""The validated inputs of the training jobs: each training rule's ``params.cfg`` (a JSON dump, so that
Snakemake hashes it for reruns) read back into a pydantic model made of :mod:`kdprivacy.config`'s blocks.

A job validates its cfg once, at its start (:func:`kdprivacy.train.jobs.run_job`); the library then works on
the model. :class:`MethodRun` is the slice of a student job a KD method reads. Torch-free.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import field_validator, model_validator

from kdprivacy.config import KD, FromScratch, Generation, Lora, Train
from kdprivacy.fields import PosInt, Seed, Strict
from kdprivacy.kd import METHODS, MethodName

ModelRef = dict[str, Any]  # config.model_ref's shape, what kdprivacy.models.load_base takes
Pools = list[Literal["pretrain", "public", "dev"]]


class Lengths(Strict):
    max_length: PosInt
    max_prompt_length: PosInt


class PretrainRun(Lengths):
    """``pretrain_base``: a from-scratch base trained on all tokens of ``pools``."""

    spec: FromScratch
    train: Train
    pools: Pools
    seed: Seed


class TeacherRun(Lengths):
    """``train_teacher``: SFT of ``base`` on the private pool (the members)."""

    base: ModelRef
    train: Train
    lora: Lora | None = None
    seed: Seed


class TeacherGenerationRun(Lengths):
    """``generate_teacher``: the teacher's answers to the public prompts (the SeqKD data)."""

    teacher: ModelRef
    generation: Generation
    seed: Seed


def resolved_generation(gen: Generation, max_length: int, max_prompt_length: int | None, batch_size: int) -> Generation:
    """``gen`` with its nulls filled: ``max_new_tokens`` = the room a prompt leaves, ``batch_size`` =
    ``batch_size``."""
    max_new_tokens = gen.max_new_tokens
    if max_new_tokens is None:
        if max_prompt_length is None:
            raise ValueError("generation.max_new_tokens is unset and there is no max_prompt_length to derive it")
        max_new_tokens = int(max_length) - int(max_prompt_length)
    if max_new_tokens < 1:
        raise ValueError(f"generation max_new_tokens must be >= 1, got {max_new_tokens}")
    batch_size = int(gen.batch_size or batch_size)
    return gen.model_copy(update={"max_new_tokens": int(max_new_tokens), "batch_size": batch_size})


class MethodRun(Strict):
    """What a KD method reads of a student job: ``kd`` and ``generation`` null = their defaults,
    ``method_params`` = the method's Params block (:attr:`params`)."""

    method: MethodName
    train: Train = Train()
    kd: KD = KD()
    generation: Generation = Generation()
    method_params: dict[str, Any] | None = None
    seed: Seed = 0
    max_length: PosInt | None = None
    max_prompt_length: PosInt | None = None

    @field_validator("kd", "generation", mode="before")
    @classmethod
    def _null_is_default(cls, value: Any) -> Any:
        return {} if value is None else value

    @model_validator(mode="after")
    def _check(self) -> MethodRun:
        self.params  # noqa: B018 - validates method_params
        if METHODS[self.method].samples_student and self.max_length is None:
            raise ValueError(f"method {self.method!r} needs max_length (generated sequences are cut to it)")
        return self

    @property
    def params(self):
        """The method's Params block validated from ``method_params`` (None for a method without one)."""
        model = METHODS[self.method].params
        given = {k: v for k, v in (self.method_params or {}).items() if v is not None}
        if model is None:
            if given:
                raise ValueError(f"method {self.method!r} takes no method_params, got {sorted(given)}")
            return None
        return model.model_validate(given)

    @property
    def sampling(self) -> Generation:
        """How the student samples (SGO methods): :attr:`generation` resolved against the lengths and the
        train batch size."""
        return resolved_generation(self.generation, self.max_length, self.max_prompt_length, self.train.batch_size)

    def total_steps(self, n_items: int) -> int:
        return int(self.train.epochs) * math.ceil(n_items / int(self.train.batch_size))


class StudentRun(MethodRun):
    """``train_student`` / ``train_init``: a student trained on the public pool (``teacher`` null: No-KD)."""

    base: ModelRef
    init: Literal["base", "init"] | None = None
    teacher: ModelRef | None = None
    lora: Lora | None = None
    seed: Seed
    max_length: PosInt
    max_prompt_length: PosInt
