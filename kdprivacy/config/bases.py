"""The blocks every model of a family is made of: a base (built from scratch or loaded by its model ref), the
training run (``Train``, ``Lora``), the tokenizer, base pretraining and the teacher.

Part of :mod:`kdprivacy.config` (import the models from there).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from kdprivacy.fields import (
    Fraction,
    Name,
    NonNegFloat,
    PosFloat,
    PosInt,
    Precision,
    Seed,
    Strict,
    check_local_model,
    float_field,
)


class Train(Strict):
    """Optimisation of one training run (AdamW; response-only loss except pretraining)."""

    epochs: Annotated[int, Field(ge=0)] = 5
    lr: PosFloat = 5e-5
    batch_size: PosInt = 16
    eval_batch_size: PosInt = 32
    weight_decay: NonNegFloat = 0.01
    grad_clip: PosFloat = 1.0
    warmup_ratio: Fraction = 0.0
    scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    select: Literal["last", "best_dev"] = "last"
    # Preemption safety: a killed job resumes from <output>.resume when rerun. Does not change results.
    checkpoint_every_steps: Annotated[int, Field(ge=0)] = Field(0, description="0 = at epoch ends only")
    checkpoint_every_minutes: NonNegFloat = Field(0.0, description="0 = off")
    precision: Precision = Field(
        "fp32",
        description="compute precision of every training step's forward and loss (teacher forward included): "
        "fp32 = no autocast; bf16 / fp16 = torch.autocast (fp16 with a dynamic loss scale); master weights "
        "and AdamW state stay float32 either way",
    )
    gradient_checkpointing: bool = Field(
        False, description="recompute activations in the backward pass (less memory, slower, same results)"
    )
    parallel: Literal["ddp", "fsdp"] = Field("ddp", description="with several GPUs: ddp = a full replica per "
                                             "GPU; fsdp = weights, gradients, AdamW state sharded (FSDP2)")


class Lora(Strict):
    """LoRA via peft (paper LLaMA setting: r 16, alpha 64, dropout 0.1); outputs are merged checkpoints."""

    r: PosInt = 16
    alpha: PosFloat = 64
    dropout: float_field(ge=0, lt=1) = 0.1
    target_modules: Literal["all-linear"] | list[str] | None = Field(
        None, description="null = peft's default for the architecture"
    )
    quantization: Literal["4bit", "8bit"] | None = Field(
        None,
        description="QLoRA: train the adapter on a base loaded quantized with bitsandbytes (4bit = NF4, "
        "compute in bf16 on CUDA / fp32 on CPU); the output is still a full-precision merged checkpoint (the "
        "base reloaded unquantized in its dtype, the adapter merged into it)",
    )


class FromScratch(Strict):
    arch: Literal["gpt2", "opt", "llama"]
    n_layer: PosInt
    d_model: PosInt
    n_head: PosInt
    d_ff: PosInt | None = None

    @model_validator(mode="after")
    def _heads(self) -> FromScratch:
        if self.d_model % self.n_head:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_head ({self.n_head})")
        return self


MODEL_REF_KEYS = ("name_or_path", "revision", "dtype", "trust_remote_code", "quantization")


def model_ref(
    name_or_path: str,
    revision: str | None = None,
    dtype: str = "float32",
    trust_remote_code: bool = False,
    quantization: str | None = None,
) -> dict[str, Any]:
    """How a job loads a model: the one dict shape ``kdprivacy.models.load_base`` takes (every key present).

    Every rule builds its model refs through this function (``Base.ref``, ``ExternalReference.ref``), so a
    config-only field such as ``n_params`` can never reach the loader.
    """
    return {
        "name_or_path": str(name_or_path),
        "revision": revision,
        "dtype": dtype,
        "trust_remote_code": bool(trust_remote_code),
        "quantization": quantization,
    }


class Base(Strict):
    """A base model: either built from scratch (tiny, offline) or a hub name / local path."""

    from_scratch: FromScratch | None = None
    name_or_path: str | None = None
    revision: str | None = None
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32",
        description="storage dtype of a name_or_path base: loaded in it where used frozen (ref_pretrained); "
        "the models trained from it (teacher, init, students) train with float32 master weights "
        "(train.precision sets the compute) and their checkpoints are saved in it (bfloat16/float16: half "
        "the disk). from_scratch bases are float32",
    )
    trust_remote_code: bool = False
    n_params: PosFloat | None = Field(
        None, description="approximate parameter count of a hub model (e.g. 1.5e9); sizes job resources"
    )
    n_layers: PosInt | None = Field(
        None, description="decoder blocks of a hub model; sizes the per-block job (null = a local directory's "
        "config.json, else 32)",
    )

    _local_exists = field_validator("name_or_path")(check_local_model)

    @model_validator(mode="after")
    def _one_source(self) -> Base:
        if (self.from_scratch is None) == (self.name_or_path is None):
            raise ValueError("give exactly one of from_scratch or name_or_path")
        return self

    def ref(self, built_dir: str) -> dict[str, Any]:
        """The model ref of this base; ``built_dir`` is where the workflow writes a from-scratch base."""
        if self.from_scratch is not None:
            return model_ref(built_dir)
        return model_ref(self.name_or_path, self.revision, self.dtype, self.trust_remote_code)


class TokenizerTrain(Strict):
    vocab_size: Annotated[int, Field(ge=260)] = 8000
    min_frequency: PosInt = 2
    pools: list[Literal["pretrain", "public", "dev"]] = ["pretrain", "public"]


class Tokenizer(Strict):
    train: TokenizerTrain = TokenizerTrain()


class Pretrain(Strict):
    """Language pretraining of from-scratch bases on public text (never members or non-members)."""

    pools: list[Literal["pretrain", "public", "dev"]] = ["pretrain", "public"]
    seed: Seed = 0
    train: Train = Train(epochs=1, lr=1e-3)


class Teacher(Strict):
    base: Name
    train: Train = Train()
    lora: Lora | None = None
    quantization: Literal["8bit", "4bit"] | None = Field(
        None, description="load the frozen teacher (KD, generation) with bitsandbytes"
    )
