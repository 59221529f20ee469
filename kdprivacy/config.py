"""The workflow configuration: one typed model, validated before any job runs.

Unknown keys, wrong types and impossible values stop the workflow with a message naming the key
(e.g. ``families.gpt2.students.kd-small.train.lr``). Defaults live here, next to their meaning, and
``schemas/config.schema.json`` is generated from this model (a test keeps the two in sync).
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, ValidationInfo, create_model, field_validator, model_validator

from kdprivacy.fields import (
    NAME,
    NAME_RULE,
    ConfigError,
    Fraction,
    Name,
    NonNegFloat,
    PosFloat,
    PosInt,
    Precision,
    Seed,
    Strict,
    check_local_model,
    checking_paths,
    float_field,
    where_relative,
)
from kdprivacy.kd import METHOD_BLOCKS, METHODS, SGO_PARAM, MethodName
from kdprivacy.mia.attacks import ATTACK_NAMES, REFERENCE_NAMES


# ---------------------------------------------------------------- data
class SyntheticSource(Strict):
    n_examples: PosInt = 15000  # about the size of databricks-dolly-15k
    seed: Seed = 1234


class FileSource(Strict):
    path: str | None = None
    format: Literal["auto", "json", "jsonl", "parquet", "csv"] = "auto"
    columns: dict[str, str] = Field(default_factory=dict, description="our field -> the file's column")


class HubSource(Strict):
    name: str | None = None
    split: str = "train"
    revision: str | None = None
    columns: dict[str, str] = Field(default_factory=dict)


class Split(Strict):
    """Pool sizes. ``private``/``public`` null = half of what remains after non-members and dev."""

    seed: Seed = 0
    nonmember: PosInt = 4000
    dev: PosInt = 500
    private: PosInt | None = None
    public: PosInt | None = None


class Data(Strict):
    source: Literal["synthetic", "file", "hub"] = "synthetic"
    synthetic: SyntheticSource = SyntheticSource()
    file: FileSource = FileSource()
    hub: HubSource = HubSource()
    split: Split = Split()
    max_length: PosInt = 512
    max_prompt_length: PosInt = 256

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> Data:
        if self.max_prompt_length >= self.max_length:
            raise ValueError(
                f"max_prompt_length ({self.max_prompt_length}) must be smaller than max_length ({self.max_length})"
            )
        if self.source == "file" and not self.file.path:
            raise ValueError("source is 'file' but file.path is not set")
        if self.source == "file" and checking_paths(info):
            path = os.path.expanduser(self.file.path)
            if not os.path.isfile(path):
                what = "is not a file" if os.path.exists(path) else "does not exist"
                raise ValueError(f"file.path {self.file.path!r} {what}{where_relative(self.file.path)}")
        if self.source == "hub" and not self.hub.name:
            raise ValueError("source is 'hub' but hub.name is not set")
        if self.source == "synthetic":
            fixed = self.split.nonmember + self.split.dev + (self.split.private or 0) + (self.split.public or 0)
            halves = (self.split.private is None) + (self.split.public is None)
            if fixed + halves > self.synthetic.n_examples:
                raise ValueError(
                    f"split sizes (nonmember {self.split.nonmember} + dev {self.split.dev} + private "
                    f"{self.split.private} + public {self.split.public}) exceed synthetic.n_examples "
                    f"({self.synthetic.n_examples})"
                )
        return self


# ---------------------------------------------------------------- models
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


OBJECTIVES = ("fkl", "rkl", "jsd", "tvd", "sfkl", "srkl")
Objective = Literal[OBJECTIVES]  # type: ignore[valid-type]


class KD(Strict):
    """The token-level divergence (kd, imitkd, seqkd with loss kd); gkd/distillm set theirs in their block."""

    objective: Objective = "fkl"
    temperature: PosFloat = 1.0
    lm_weight: Fraction = 0.0
    beta: Fraction | None = Field(None, description="generalized JSD mixing weight (jsd only)")
    alpha: Fraction | None = Field(None, description="skew (sfkl/srkl only)")
    teacher_top_k: PosInt | None = Field(
        None,
        description="method kd only: cache the frozen teacher's top-k log-probs (+ the tail mass) of every "
        "training position once, instead of a teacher forward every step; the divergence is then taken "
        "between the (k+1)-bucket coarsenings of teacher and student (exact when k >= vocabulary)",
    )

    @model_validator(mode="after")
    def _hparams(self) -> KD:
        if self.beta is not None and self.objective != "jsd":
            raise ValueError(f"beta only applies to objective jsd (objective is {self.objective})")
        if self.alpha is not None and self.objective not in ("sfkl", "srkl"):
            raise ValueError(f"alpha only applies to sfkl/srkl (objective is {self.objective})")
        return self


class Generation(Strict):
    """Sampling for student-generated outputs or teacher generations (batched, KV cache)."""

    max_new_tokens: PosInt | None = Field(None, description="null = max_length - max_prompt_length")
    do_sample: bool = True
    temperature: PosFloat = 1.0
    top_p: float_field(gt=0, le=1) = 1.0
    top_k: Annotated[int, Field(ge=0)] = 0
    batch_size: PosInt | None = Field(None, description="null = train.batch_size")


class _Student(Strict):
    base: Name
    method: MethodName
    init: Literal["base", "init"] = Field(
        "base", description="start from the pretrained base, or from the family's init student (public SFT)"
    )
    train: Train = Train()
    lora: Lora | None = None
    kd: KD = KD()
    generation: Generation = Generation()

    @model_validator(mode="after")
    def _method_block(self) -> _Student:
        stray = [b for b in METHOD_BLOCKS if b in self.model_fields_set and b != self.method]
        if stray:
            raise ValueError(f"block(s) {stray} given but method is {self.method}")
        if self.kd.teacher_top_k is not None and self.method != "kd":
            raise ValueError(f"kd.teacher_top_k (cached teacher logits) needs fixed training data: method kd "
                             f"only (method is {self.method})")
        return self

    @property
    def uses_teacher(self) -> bool:
        return METHODS[self.method].uses_teacher

    @property
    def params(self) -> Strict | None:
        """The block of this student's method (``students.<name>.<method>``), None for a method without one."""
        return getattr(self, self.method) if self.method in METHOD_BLOCKS else None

    @property
    def method_params(self) -> dict[str, Any] | None:
        block = self.params
        return block.model_dump(mode="json") if block is not None else None


# One block per method with a Params class (kdprivacy/kd/<method>.py), named after the method.
Student = create_model(
    "Student", __base__=_Student, __module__=__name__,
    **{name: (METHODS[name].params, METHODS[name].params()) for name in METHOD_BLOCKS},
)


class Init(Strict):
    """The "init" student of the DistiLLM/MiniLLM practice: the student base fine-tuned on public data."""

    train: Train = Train(epochs=2)
    lora: Lora | None = None


class ObjectiveAblation(Strict):
    """Paper Fig. 3: copies of a ``kd`` student, one per KD objective."""

    student: Name
    values: Annotated[list[Objective], Field(min_length=1)]


class SgoAblation(Strict):
    """Paper Fig. 4: copies of an imitkd/gkd student, one per fraction of student-generated outputs."""

    student: Name
    values: Annotated[list[Fraction], Field(min_length=1)]


class Ablations(Strict):
    objective: ObjectiveAblation | None = None
    sgo_ratio: SgoAblation | None = None


def objective_copy_name(student: str, objective: str) -> str:
    """The name of the objective-ablation copy of ``student`` (paper Fig. 3)."""
    return f"{student}.obj-{objective}"


def sgo_copy_name(student: str, value: float) -> str:
    """The name of the SGO-ablation copy of ``student`` (paper Fig. 4): the value in ``:g`` form (6 digits)."""
    return f"{student}.sgo-{value:g}"


def _ablation_copies(students: Any, ablations: Any) -> dict[str, str]:
    """Raw (unvalidated) config -> {copy name: where it comes from}; whatever is malformed is skipped (the
    field validators report it)."""
    out: dict[str, str] = {}
    if not isinstance(ablations, dict):
        return out
    objective, sgo = ablations.get("objective"), ablations.get("sgo_ratio")
    if isinstance(objective, dict) and isinstance(objective.get("values"), list):
        for value in objective["values"]:
            student = str(objective.get("student"))
            out[objective_copy_name(student, str(value))] = f"ablations.objective ({student}, objective {value!r})"
    if isinstance(sgo, dict) and isinstance(sgo.get("values"), list):
        for value in sgo["values"]:
            try:
                number = float(value)
            except (TypeError, ValueError):
                continue
            student = str(sgo.get("student"))
            out[sgo_copy_name(student, number)] = f"ablations.sgo_ratio ({student}, value {value!r})"
    return out


class Family(Strict):
    tokenizer: Tokenizer = Tokenizer()
    pretrain: Pretrain = Pretrain()
    bases: dict[Name, Base]
    teacher: Teacher
    students: dict[Name, Student] = Field(default_factory=dict)
    init: Init = Init()
    teacher_generation: Generation = Field(
        Generation(), description="how the teacher answers the public prompts for SeqKD (one artifact per seed)"
    )
    ablations: Ablations = Ablations()

    @model_validator(mode="before")
    @classmethod
    def _no_student_named_like_a_copy(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and isinstance(raw.get("students"), dict):
            copies = _ablation_copies(raw["students"], raw.get("ablations"))
            for name in raw["students"]:
                if name in copies:
                    raise ValueError(
                        f"students.{name} has the name of the ablation copy that {copies[name]} makes: rename "
                        "the student (one of the two would silently replace the other)"
                    )
        return raw

    @model_validator(mode="after")
    def _refs(self) -> Family:
        for who, base in [("teacher", self.teacher.base)] + [
            (f"students.{name}", s.base) for name, s in self.students.items()
        ]:
            if base not in self.bases:
                raise ValueError(f"{who}.base '{base}' is not one of bases: {sorted(self.bases)}")
        if "teacher" in self.students:
            raise ValueError("a student may not be named 'teacher'")
        abl = self.ablations
        if abl.objective is not None:
            target = self.students.get(abl.objective.student)
            if target is None or target.method != "kd":
                raise ValueError(f"ablations.objective.student '{abl.objective.student}' must name a kd student")
            repeated = sorted({v for v in abl.objective.values if abl.objective.values.count(v) > 1})
            if repeated:
                raise ValueError(f"ablations.objective.values repeat {repeated}: each makes one copy")
        if abl.sgo_ratio is not None:
            target = self.students.get(abl.sgo_ratio.student)
            if target is None or target.method not in SGO_PARAM:
                raise ValueError(
                    f"ablations.sgo_ratio.student '{abl.sgo_ratio.student}' must name a student of method "
                    f"{sorted(SGO_PARAM)}"
                )
            seen: dict[str, float] = {}
            for value in abl.sgo_ratio.values:
                name = sgo_copy_name(abl.sgo_ratio.student, value)
                if name in seen:
                    raise ValueError(
                        f"ablations.sgo_ratio.values {seen[name]!r} and {value!r} both name the copy '{name}' "
                        "(values are written with 6 significant digits): give distinct values"
                    )
                seen[name] = value
        kinds = {b.from_scratch is None for b in self.bases.values()}
        if len(kinds) > 1:
            raise ValueError(
                "bases mix from_scratch and name_or_path models: teacher and students must share a tokenizer"
            )
        return self

    @property
    def from_scratch(self) -> bool:
        return all(b.from_scratch is not None for b in self.bases.values())

    def n_params(self, base: str, vocab_size: int | None = None) -> float:
        """Approximate parameter count of a base (from its spec, or its ``n_params``; 1e9 if unknown)."""
        spec = self.bases[base]
        if spec.from_scratch is None:
            return spec.n_params or 1e9
        fs = spec.from_scratch
        vocab = vocab_size or self.tokenizer.train.vocab_size
        d_ff = fs.d_ff or 4 * fs.d_model
        return float(fs.n_layer * (4 * fs.d_model**2 + 2 * fs.d_model * d_ff) + vocab * fs.d_model)

    def all_students(self) -> dict[str, tuple[Student, str | None, Any]]:
        """Configured students plus ablation copies: name -> (student, ablation axis, axis value).

        Copies are named ``<student>.obj-<objective>`` and ``<student>.sgo-<ratio>`` (validation refuses any
        two models of one name, so a copy never replaces another model).
        """
        out: dict[str, tuple[Student, str | None, Any]] = {n: (s, None, None) for n, s in self.students.items()}

        def add(name: str, entry: tuple[Student, str | None, Any]) -> None:
            if name in out:
                raise ValueError(f"two models are named '{name}'")
            out[name] = entry

        abl = self.ablations
        if abl.objective is not None:
            base = self.students[abl.objective.student]
            for value in abl.objective.values:
                kd = base.kd.model_copy(update={"objective": value, "beta": None, "alpha": None})
                add(objective_copy_name(abl.objective.student, value),
                    (base.model_copy(update={"kd": kd}), "objective", value))
        if abl.sgo_ratio is not None:
            base = self.students[abl.sgo_ratio.student]
            key = SGO_PARAM[base.method]
            for value in abl.sgo_ratio.values:
                block = getattr(base, base.method).model_copy(update={key: value})
                add(sgo_copy_name(abl.sgo_ratio.student, value),
                    (base.model_copy(update={base.method: block}), "sgo_ratio", value))
        return out


# ---------------------------------------------------------------- evaluation
class Population(Strict):
    """Examples that are neither members nor non-members, scored by every model for RMIA's comparison."""

    pools: list[Literal["dev", "public", "pretrain"]] = ["dev"]
    max_examples: PosInt = 1000
    seed: Seed = 0


class Evaluation(Strict):
    """Which members/non-members every model is scored on (the same examples for all models)."""

    max_members: PosInt | None = None
    max_nonmembers: PosInt | None = None
    sample_seed: Seed = 0
    batch_size: PosInt = 32
    population: Population = Population()
    precision: Precision = Field(
        "fp32",
        description="compute precision of the scoring forward passes (score_model, score_reference, mope, "
        "block_mope): fp32 = no autocast; bf16 / fp16 = torch.autocast, log-probabilities still taken in "
        "float32",
    )


AttackName = Literal[ATTACK_NAMES]  # the attack registry, kdprivacy.mia.attacks.ATTACKS


class ExternalReference(Strict):
    """An independent reference LM for ``ref_external``: a hub name/local path, or a base this workflow builds
    (``family`` + ``base``; the demo's offline stand-in for the paper's StableLM-3B)."""

    name_or_path: str | None = None
    revision: str | None = None
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    trust_remote_code: bool = False
    n_params: PosFloat | None = Field(None, description="parameter count of a hub reference; sizes its job")
    family: Name | None = None
    base: Name | None = None

    _local_exists = field_validator("name_or_path")(check_local_model)

    @model_validator(mode="after")
    def _one(self) -> ExternalReference:
        if (self.name_or_path is None) == (self.family is None or self.base is None):
            raise ValueError("give either name_or_path, or family and base")
        return self

    def ref(self) -> dict[str, Any]:
        """The model ref of a ``name_or_path`` reference (a ``family``/``base`` one uses that base's ref)."""
        if self.name_or_path is None:
            raise ValueError("external reference names a workflow base: use that base's ref")
        return model_ref(self.name_or_path, self.revision, self.dtype, self.trust_remote_code)


class RMIA(Strict):
    """RMIA (Zarifzadeh et al. 2024) with the workflow's reference models; see kdprivacy/mia/attacks.py."""

    a: Fraction = 1.0
    gamma: PosFloat = 1.0
    references: list[Literal[REFERENCE_NAMES]] | None = Field(
        None, description="null = every reference the attack list scores"
    )


class MoPe(Strict):
    k: PosInt = 10
    sigma: PosFloat = 0.005
    seed: Seed = 0
    batch_size: PosInt | None = Field(None, description="null = evaluation.batch_size")


class Blind(Strict):
    """A bag-of-words member/non-member classifier that never queries a model (distribution-shift check)."""

    enabled: bool = True
    folds: Annotated[int, Field(ge=2)] = 5
    seed: Seed = 0
    features: Literal["tfidf", "hashing"] = "tfidf"
    ngram_max: PosInt = 2
    C: PosFloat = 1.0


class Attacks(Strict):
    names: list[AttackName] = ["loss", "min_k", "min_k_pp", "zlib", "ref_pretrained", "ref_nokd", "mope", "rmia"]
    min_k: float_field(gt=0, le=1) = 0.2
    fprs: list[float_field(gt=0, lt=1)] = [0.05, 0.01, 0.001]
    n_bootstrap: Annotated[int, Field(ge=0)] = 1000
    bootstrap_seed: Seed = 0
    short_tokens: PosInt = Field(5, description="responses with fewer scored tokens are flagged and counted")
    roc_max_points: PosInt = 400
    external_reference: ExternalReference | None = None
    rmia: RMIA = RMIA()
    mope: MoPe = MoPe()
    blind: Blind = Blind()

    @model_validator(mode="after")
    def _needs(self) -> Attacks:
        if "ref_external" in self.names and self.external_reference is None:
            raise ValueError("attack ref_external needs attacks.external_reference")
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"attack names repeat: {self.names}")
        if "rmia" in self.names and not self.reference_names:
            raise ValueError("rmia needs at least one reference attack (ref_external, ref_pretrained, ref_nokd)")
        return self

    @property
    def reference_names(self) -> list[str]:
        return [n.removeprefix("ref_") for n in self.names if n.startswith("ref_")]


class Memorization(Strict):
    """Greedy decoding from each member's/non-member's prompt, once per model; every metric derives from it."""

    first_k: PosInt = Field(32, description="the paper's positional match over the first k response tokens")
    max_members: PosInt | None = 1000
    max_nonmembers: PosInt | None = 1000
    batch_size: PosInt = 32
    max_new_tokens: PosInt | None = Field(None, description="null = max(first_k, longest reference)")
    rouge_threshold: Fraction = Field(0.5, description="approximate memorization: ROUGE-L F above this")
    rouge_stemmer: bool = False
    n_candidates: Annotated[int, Field(ge=0)] = Field(100, description="canary exposure candidates (0 = off)")
    exposure_in_prompt: bool = False
    n_bootstrap: Annotated[int, Field(ge=0)] = 1000
    inheritance_thresholds: list[Fraction] = [0.5, 0.75, 0.9, 0.9999]


class Utility(Strict):
    """ROUGE-L (x100) of greedy responses on held-out dev prompts: privacy read against utility."""

    enabled: bool = True
    max_examples: PosInt | None = 500
    batch_size: PosInt = 32
    max_new_tokens: PosInt | None = None
    rouge_stemmer: bool = False


class Blocks(Strict):
    """Per-block risk: MoPe with noise in one decoder block at a time (paper Fig. 7)."""

    enabled: bool = True
    k: PosInt = 10
    sigmas: Annotated[list[PosFloat], Field(min_length=1)] = [0.01]
    seed: Seed = 0
    max_members: PosInt | None = 500
    max_nonmembers: PosInt | None = 500
    batch_size: PosInt | None = None
    n_bootstrap: Annotated[int, Field(ge=0)] = 1000


class Resources(Strict):
    """Portable job needs (a SLURM profile maps them to partitions/accounts), sized by the rule of
    :mod:`kdprivacy.sizing` from the models a job holds and the work it does; every retry asks for more."""

    gpu: Annotated[int, Field(ge=0)] = Field(0, description="GPUs per heavy job (training, generation, scoring)")
    train_gpus: Annotated[int, Field(ge=0)] | None = Field(
        None, description="GPUs per training job (>1 = data parallel in one job); null = gpu"
    )
    threads: PosInt = 4
    mem_mb_min: PosInt = 2000
    runtime_min: PosInt = Field(30, description="minutes of every heavy job before its work (start-up, loading)")
    gpu_mem_gb: PosFloat = Field(80, description="memory of one GPU; planning reports jobs that cannot fit")
    gpu_tflops: PosFloat = Field(50, description="achieved (not peak) TFLOP/s of one GPU, for wall times")
    cpu_gflops: PosFloat = Field(20, description="achieved GFLOP/s of a CPU-only job, for wall times")
    max_mem_mb: PosInt = Field(128000, description="host memory a job may ask for at most (a node's share)")
    max_runtime_min: PosInt = Field(2880, description="wall time a job may ask for at most (a partition's limit)")
    pool_examples: PosInt = Field(
        5250, description="examples per private/public pool of a file/hub source, for sizing (Dolly: ~5,250)"
    )


class Hub(Strict):
    """Hugging Face hub access. The ``download_hub`` rule fetches every hub model and dataset named here into
    the cache; every other job then runs offline from that cache (compute nodes often have no network)."""

    cache: str | None = Field(
        None, description="HF_HOME for every job (null = the environment's HF_HOME, else ~/.cache/huggingface)"
    )
    offline: bool = Field(
        True, description="run every job but download_hub with HF_HUB_OFFLINE=1 and HF_DATASETS_OFFLINE=1"
    )


class Config(Strict):
    container: str = Field(
        "kdprivacy.sif",
        description="image for --sdm apptainer: build it with `apptainer build kdprivacy.sif containers/kdprivacy.def`",
    )
    seeds: Annotated[list[Seed], Field(min_length=1)] = [0]
    data: Data = Data()
    families: Annotated[dict[Name, Family], Field(min_length=1)]
    evaluation: Evaluation = Evaluation()
    attacks: Attacks = Attacks()
    memorization: Memorization = Memorization()
    utility: Utility = Utility()
    blocks: Blocks = Blocks()
    resources: Resources = Resources()
    hub: Hub = Hub()

    @model_validator(mode="after")
    def _seeds(self) -> Config:
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct: {self.seeds}")
        if "ref_nokd" in self.attacks.names:
            lacking = [f for f, fam in self.families.items() if not any(s.method == "nokd" for s in fam.students.values())]
            if lacking:
                raise ValueError(f"attack ref_nokd needs a nokd student in every family; missing in {lacking}")
        ext = self.attacks.external_reference
        if ext is not None and ext.family is not None:
            if ext.family not in self.families or ext.base not in self.families[ext.family].bases:
                raise ValueError(f"attacks.external_reference: no base '{ext.base}' in family '{ext.family}'")
        return self


def _where(loc: tuple[Any, ...]) -> str:
    # pydantic inserts tagged-union/function names into locations; keep only the user's keys.
    return ".".join(str(p) for p in loc if not re.match(r"^function-|^constrained-", str(p))) or "<top>"


def validate_config(raw: dict[str, Any], check_paths: bool = False) -> Config:
    """Validate a raw (YAML-loaded) config; raise :class:`ConfigError` naming each bad key.

    ``check_paths``: local model directories (a ``name_or_path`` written as a path) and ``data.file.path``
    (source file) must exist, relative paths taken from the working directory. The workflow validates so
    (Snakemake parses it in its working directory); without it a config can be checked anywhere.
    """
    try:
        return Config.model_validate(raw, context={"check_paths": bool(check_paths)})
    except ValidationError as err:
        lines = []
        for e in err.errors():
            loc = tuple(e["loc"])
            is_name = e["type"] == "string_pattern_mismatch" and (e.get("ctx") or {}).get("pattern") == NAME
            if is_name and loc and loc[-1] == "[key]":  # a dict key (family, base or student name)
                loc = loc[:-1]
            key = _where(loc)
            # a model-level check (its input is the whole section) says what it found itself
            quiet = e["type"] == "missing" or (e["type"] == "value_error" and isinstance(e.get("input"), dict))
            got = "" if quiet else f" (got {e.get('input')!r:.80})"
            msg = f"not a valid name: {NAME_RULE}" if is_name else e["msg"].removeprefix("Value error, ")
            lines.append(f"  {key}: {msg}{got}")
        raise ConfigError("invalid configuration:\n" + "\n".join(lines)) from None



def json_schema() -> dict[str, Any]:
    return Config.model_json_schema()


def load_yaml(path: str, check_paths: bool = False) -> Config:
    """Validate a YAML config file (what `snakemake --configfile` would load)."""
    import yaml

    with open(path, encoding="utf-8") as handle:
        return validate_config(yaml.safe_load(handle) or {}, check_paths=check_paths)


if __name__ == "__main__":  # python -m kdprivacy.config > schemas/config.schema.json
    import json
    import sys

    json.dump(json_schema(), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
