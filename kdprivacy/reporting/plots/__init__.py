"""The study's figures: the registry every other part of the workflow reads the figure list from.

Each figure is one :class:`FigureSpec` in :data:`FIGURES` (in the order the report shows them): its output
name, file, caption, report category, the tables it reads and the function that draws it. The report rules
declare one output per enabled entry and :func:`draw_figures` draws them; nothing else lists the figures.
Importing this package imports neither matplotlib nor pandas (the rules read it at every Snakefile parse):
the drawing functions, in this package's modules, are resolved when a figure is drawn.
"""

from __future__ import annotations

import functools
import importlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("kdprivacy.reporting.plots")


def _always(cfg: Any) -> bool:
    return True


def _utility(cfg: Any) -> bool:
    return cfg.utility.enabled


def _blocks(cfg: Any) -> bool:
    return cfg.blocks.enabled


def _shadow_curve(cfg: Any) -> bool:
    return cfg.attacks.shadows.n > 0 and "lira" in cfg.attacks.names


def _ablation(axis: str) -> Callable[[Any], bool]:
    def enabled(cfg: Any) -> bool:
        return any(getattr(family.ablations, axis) for family in cfg.families.values())

    return enabled


@dataclass(frozen=True)
class FigureSpec:
    name: str  # the figures rule's output name
    file: str  # file stem under results/figures/; with {family} and {base}: one figure per student base
    category: str  # the figure's section of the Snakemake report
    title: str  # the title of the notice drawn in its place when the tables cannot fill it
    draw: str  # "module:function" of this package, called as function(inputs, path) (paths: per base)
    tables: tuple[str, ...] = ("mia",)  # what it reads: tables under results/tables/, or "roc" (per model)
    enabled: Callable[[Any], bool] = _always  # given the validated config: whether this run can fill it
    caption: str = ""  # report/<caption>.rst; default: the file stem

    def __post_init__(self):
        object.__setattr__(self, "caption", self.caption or self.file)

    @property
    def per_base(self) -> bool:
        return "{base}" in self.file

    @property
    def module(self) -> str:
        """The drawing module, named as :func:`kdprivacy.provenance.code_version` takes it."""
        return f"reporting.plots.{self.draw.split(':')[0]}"

    @property
    def fn(self) -> Callable[..., Any]:
        return getattr(importlib.import_module(f"kdprivacy.{self.module}"), self.draw.split(":")[1])


MI, MEM = "Membership inference", "Memorization"
# fmt: off
FIGURES: dict[str, FigureSpec] = {
    spec.name: spec
    for spec in (
        FigureSpec("methods", "mia_auc_{family}_{base}", MI, "KD method x attack AUC", "mia:figure_methods",
                   caption="mia_auc_methods"),
        FigureSpec("baselines", "mia_auc_baselines", MI, "Teacher and No-KD AUC", "mia:figure_baselines"),
        FigureSpec("category", "risk_by_category", MI, "Per-task risk", "mia:figure_category",
                   ("mia", "mia_category")),
        FigureSpec("roc", "roc_loglog", MI, "ROC curves", "mia:figure_roc", ("mia", "roc")),
        FigureSpec("memorization_rate", "memorization_rate", MEM, "Memorization (member rate)",
                   "memorization:figure_memorization_rate", ("memorization_summary",)),
        FigureSpec("memorization_gap", "memorization_gap", MEM, "Memorization gap",
                   "memorization:figure_memorization_gap", ("memorization_summary",)),
        FigureSpec("membership_vs_memorization", "membership_vs_memorization", MEM,
                   "Membership vs memorization", "memorization:figure_membership_vs_memorization",
                   ("mia", "memorization")),
        FigureSpec("utility", "utility_rouge_l", "Utility", "Utility (ROUGE-L)", "utility:figure_utility",
                   ("utility",), _utility),
        FigureSpec("privacy_utility", "privacy_vs_utility", "Utility", "Privacy vs utility",
                   "utility:figure_privacy_utility", ("mia_best_attack", "utility"), _utility),
        FigureSpec("shadow_curve", "mia_shadow_curve", MI, "LiRA vs number of shadows",
                   "mia:figure_shadow_curve", ("mia_shadow_curve",), _shadow_curve),
        FigureSpec("blocks", "blocks_depth", "Per-block risk", "Per-block risk", "mia:figure_blocks",
                   ("blocks",), _blocks),
        FigureSpec("objective", "ablation_objective", "Ablations", "KD objective ablation",
                   "ablations:figure_objective", enabled=_ablation("objective")),
        FigureSpec("sgo", "ablation_sgo", "Ablations", "SGO-ratio ablation", "ablations:figure_sgo",
                   enabled=_ablation("sgo_ratio")),
    )
}
# fmt: on


def enabled_figures(cfg: Any) -> list[FigureSpec]:
    """The figures the validated config ``cfg`` can fill (the only ones the rules declare), in order."""
    return [spec for spec in FIGURES.values() if spec.enabled(cfg)]


def code_modules() -> list[str]:
    """This package, every drawing module and the attack registry (the focus attack) for the figures rule's
    code version."""
    return ["reporting.plots", *sorted({spec.module for spec in FIGURES.values()}), "mia.registry"]


@dataclass
class FigureInputs:
    """What the figures are drawn from: input name -> path (a table under results/tables/; ``roc``: the
    per-model ROC files, aligned with ``models``), the models' key columns, the configured attack order,
    the student bases of the per-base figures (``family/base``) and the ablations' source students."""

    paths: Mapping[str, Any]
    models: Sequence[Mapping[str, Any]] = ()
    attacks: Sequence[str] = ()
    student_bases: Sequence[str] = ()
    sources: Mapping[str, Any] = field(default_factory=dict)

    def table(self, name: str):
        """Table ``name`` read afresh from its csv, or None when it is not an input."""
        import pandas as pd

        return pd.read_csv(self.paths[name]) if name in self.paths else None

    @functools.cached_property
    def mia(self):
        return self.table("mia")

    @functools.cached_property
    def focus(self) -> str | None:
        """The attack of the single-attack figures: the first of the registry's
        :data:`~kdprivacy.mia.registry.FOCUS_ATTACKS` that was run, else the MIA table's first attack."""
        from kdprivacy.mia.registry import FOCUS_ATTACKS

        present = list(dict.fromkeys(self.mia["attack"]))
        return next((a for a in FOCUS_ATTACKS if a in present), present[0] if present else None)

    def roc(self):
        """The per-model ROC points stacked, each model's key columns in front."""
        import pandas as pd

        from kdprivacy.reporting.tidy import with_model_keys

        files = as_list(self.paths["roc"])
        if len(files) != len(self.models):
            raise ValueError(
                f"roc ({len(files)}) and params.models ({len(self.models)}) must align index by index"
            )
        return pd.concat(
            [with_model_keys(pd.read_csv(path), spec) for spec, path in zip(self.models, files)],
            ignore_index=True,
        )


def as_list(value: Any) -> list:
    return [value] if isinstance(value, str) else list(value)


def draw_figures(inputs: FigureInputs, outputs: Mapping[str, Any]) -> None:
    """Draw every registered figure that is in ``outputs`` (name -> path, a list for per-base figures), in
    registry order. A figure whose tables are not inputs, or that the tables cannot fill, is written as a
    small notice saying why."""
    from kdprivacy.reporting.plots.base import placeholder

    log.info("focus attack: %s", inputs.focus)
    for spec in FIGURES.values():
        if spec.name not in outputs:
            continue
        if spec.per_base:
            spec.fn(inputs, as_list(outputs[spec.name]))
            continue
        missing = [n for n in spec.tables if n not in inputs.paths]
        result = None if missing else spec.fn(inputs, outputs[spec.name])
        if result is None:
            reason = (
                f"input(s) {missing} not given" if missing else "the tables hold no rows for it (see the log)"
            )
            placeholder(outputs[spec.name], spec.title, reason)
            log.info("%s: notice written (%s)", spec.name, reason)
        else:
            log.info("%s: drawn", spec.name)
