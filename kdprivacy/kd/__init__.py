"""The knowledge-distillation methods: the registry every other part of the workflow reads the method list from.

Each method is one :class:`MethodSpec` in :data:`METHODS` (in the paper's order). The config schema, the
rules, the findings' method order and the paper comparison read names and traits from here; nothing else
lists the methods. Importing this package does not import torch.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MethodSpec:
    name: str  # the config's ``method:`` value and the wildcard/table value
    paper_name: str  # the method's name in the paper's tables (paper_results.csv)
    uses_teacher: bool  # False: never queries the teacher (the No-KD baseline)
    samples_student: bool  # trains on student-generated outputs (SGO)
    sgo_param: str | None = None  # the method param that sets the SGO fraction (the sgo ablation varies it)


METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec("nokd", "no_kd", uses_teacher=False, samples_student=False),
        MethodSpec("kd", "kd", uses_teacher=True, samples_student=False),
        MethodSpec("seqkd", "seqkd", uses_teacher=True, samples_student=False),
        MethodSpec("imitkd", "imitkd", uses_teacher=True, samples_student=True, sgo_param="sgo_ratio"),
        MethodSpec("gkd", "gkd", uses_teacher=True, samples_student=True, sgo_param="lmbda"),
        MethodSpec("minillm", "minillm", uses_teacher=True, samples_student=True),
        MethodSpec("distillm", "distillm", uses_teacher=True, samples_student=True),
    )
}
KD_METHODS = tuple(name for name, spec in METHODS.items() if spec.uses_teacher)  # every method but No-KD
