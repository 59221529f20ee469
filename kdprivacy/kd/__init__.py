"""The knowledge-distillation methods: the registry every other part of the workflow reads the method list from.

Each method is one :class:`MethodSpec` in :data:`METHODS` (in the paper's order) and one module
``kdprivacy/kd/<name>.py`` holding its train function ``train`` and, if it has a ``method_params`` block, its
pydantic Params class. The config schema, the rules, the findings' method order and the paper comparison
read names and traits from here; nothing else lists the methods. The KD objectives' names
(:data:`OBJECTIVE_NAMES`) live here too, for the same readers. Importing this package (or a method
module) does not import torch: a method's train function imports its helpers when it runs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Literal


@dataclass(frozen=True)
class MethodSpec:
    name: str  # the config's ``method:`` value and the wildcard/table value
    paper_name: str  # the method's name in the paper's tables (paper_results.csv)
    uses_teacher: bool  # False: never queries the teacher (the No-KD baseline)
    samples_student: bool  # trains on student-generated outputs (SGO)
    sgo_param: str | None = None  # the method param that sets the SGO fraction (the sgo ablation varies it)
    params_class: str | None = None  # name of its Params class in kdprivacy/kd/<name>.py (None: no block)

    @property
    def module(self) -> ModuleType:
        return importlib.import_module(f"{__name__}.{self.name}")

    @property
    def params(self) -> type | None:
        """The method's pydantic ``method_params`` block (the config's ``students.<name>.<method>``), or None."""
        return getattr(self.module, self.params_class) if self.params_class else None

    def needs_teacher(self, params) -> bool:
        """Whether a run with ``params`` loads the teacher model (a method module may narrow ``uses_teacher``
        with its own ``needs_teacher(params)``: SeqKD on cross-entropy reads only the teacher's generations)."""
        narrow = getattr(self.module, "needs_teacher", None)
        return self.uses_teacher and (narrow is None or narrow(params))

    @property
    def train(self) -> Callable:
        """``train(student, teacher, train_items, dev_items, run, pad_id, log, **hooks) -> (model, history)``."""
        return self.module.train


METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec("nokd", "no_kd", uses_teacher=False, samples_student=False),
        MethodSpec("kd", "kd", uses_teacher=True, samples_student=False),
        MethodSpec("seqkd", "seqkd", uses_teacher=True, samples_student=False, params_class="SeqKDParams"),
        MethodSpec("imitkd", "imitkd", uses_teacher=True, samples_student=True, sgo_param="sgo_ratio",
                   params_class="ImitKDParams"),
        MethodSpec("gkd", "gkd", uses_teacher=True, samples_student=True, sgo_param="lmbda",
                   params_class="GKDParams"),
        MethodSpec("minillm", "minillm", uses_teacher=True, samples_student=True, params_class="MiniLLMParams"),
        MethodSpec("distillm", "distillm", uses_teacher=True, samples_student=True, params_class="DistiLLMParams"),
    )
}
KD_METHODS = tuple(name for name, spec in METHODS.items() if spec.uses_teacher)  # every method but No-KD
STUDENT_METHODS = tuple(METHODS)
SGO_PARAM = {name: spec.sgo_param for name, spec in METHODS.items() if spec.sgo_param}  # the SGO fraction's param
METHOD_BLOCKS = tuple(name for name, spec in METHODS.items() if spec.params_class)  # methods with a params block
MethodName = Literal[STUDENT_METHODS]  # type: ignore[valid-type]

# The token-level KD objectives (``kd.objective``; their functions are in kdprivacy/kd/objectives.py), in the
# order of the config schema and the objective-ablation figure, with the hyperparameters each takes besides
# ``temperature``. The config, the objective functions and the reporting read the names from here.
OBJECTIVE_HPARAMS: dict[str, tuple[str, ...]] = {
    "fkl": (),
    "rkl": (),
    "jsd": ("beta",),
    "tvd": (),
    "sfkl": ("alpha",),
    "srkl": ("alpha",),
}
OBJECTIVE_NAMES = tuple(OBJECTIVE_HPARAMS)
REVERSE_OBJECTIVES = ("rkl", "srkl")  # the student's distribution first (mode-seeking): the reverse-KL claim


def wants_pretrain_loss(params) -> bool:
    """Whether a method's params (any Params block, or None) turn the pretraining LM loss on
    (``pretrain_weight`` > 0, :mod:`kdprivacy.kd.pretrain`); torch-free, for the config's checks too."""
    return float(getattr(params, "pretrain_weight", 0.0) or 0.0) > 0


def train_method(student, teacher, train_items, dev_items, run, pad_id: int, log=None, teacher_generations=None, *,
                 eos_id: int | None = None, guard: Callable | None = None, resume=None, on_step=None,
                 pretrain_items=None):
    """Train ``student`` with ``run.method`` (``run``: :class:`kdprivacy.train.runs.MethodRun`).

    ``guard(ids)`` is run on every batch of generated data and on ``teacher_generations`` (seqkd only);
    ``eos_id`` defaults to the student's ``config.eos_token_id``. ``resume``
    (:class:`kdprivacy.checkpoint.Resume`) and ``on_step`` go to :func:`kdprivacy.train.loop.fit`; every
    method checkpoints its own state with the loop (SGO decision RNG, replay buffer, sampler counter,
    DistiLLM's schedule, MiniLLM's live rollout), so a resumed run continues exactly. A method whose params
    have ``disable_dropout`` true (imitkd, gkd, minillm, distillm by default) trains the student with every
    dropout rate at 0 (:func:`kdprivacy.kd.dropout.dropout_off`; the saved config keeps its dropout).
    ``pretrain_items``: the pretrain pool, for a method whose params set ``pretrain_weight`` > 0
    (:mod:`kdprivacy.kd.pretrain`); refused otherwise.
    """
    if run.method not in METHODS:
        raise ValueError(f"unknown student method {run.method!r}; choose one of {list(METHODS)}")
    if teacher_generations is not None and run.method != "seqkd":
        raise ValueError(f"teacher_generations are only used by seqkd, not {run.method!r}")
    wants_pretrain = wants_pretrain_loss(run.params)
    if pretrain_items is not None and not wants_pretrain:
        raise ValueError(f"pretrain_items are only used with pretrain_weight > 0 (method {run.method!r})")
    from kdprivacy.kd.dropout import dropout_off

    # the on-policy methods' ``disable_dropout`` (default True): the student trains with dropout off
    with dropout_off(student, bool(getattr(run.params, "disable_dropout", False))):
        return METHODS[run.method].train(student, teacher, train_items, dev_items, run, pad_id, log,
                                         teacher_generations=teacher_generations, eos_id=eos_id, guard=guard,
                                         resume=resume, on_step=on_step, pretrain_items=pretrain_items)
