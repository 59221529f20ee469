"""A family's students (the KD divergence, generation, one block per method with parameters), its init
student, the paper's ablations (their copies' names) and the ``Family`` block tying bases, teacher and
students together.

Part of :mod:`kdprivacy.config` (import the models from there).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, create_model, model_validator

from kdprivacy.config.bases import Base, Lora, Pretrain, Teacher, Tokenizer, Train
from kdprivacy.fields import Fraction, Name, PosFloat, PosInt, Strict, float_field
from kdprivacy.kd import METHOD_BLOCKS, METHODS, OBJECTIVE_HPARAMS, OBJECTIVE_NAMES, SGO_PARAM, MethodName


OBJECTIVES = OBJECTIVE_NAMES  # the objective registry, kdprivacy.kd.OBJECTIVE_HPARAMS
Objective = Literal[OBJECTIVES]  # type: ignore[valid-type]


def _taking(hparam: str) -> list[str]:
    """The objectives that take ``hparam`` (``beta``: jsd; ``alpha``: sfkl, srkl)."""
    return [name for name, hparams in OBJECTIVE_HPARAMS.items() if hparam in hparams]


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
        beta, alpha = _taking("beta"), _taking("alpha")
        if self.beta is not None and self.objective not in beta:
            raise ValueError(f"beta only applies to objective {'/'.join(beta)} (objective is {self.objective})")
        if self.alpha is not None and self.objective not in alpha:
            raise ValueError(f"alpha only applies to {'/'.join(alpha)} (objective is {self.objective})")
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
