"""The attack registry: every membership-inference attack's name, traits and paper name, written once.

:data:`ATTACKS` maps a name to an :class:`AttackSpec`: its score function (by name, in
:mod:`kdprivacy.mia.attacks`), the extra inputs it reads, its name in the paper's tables and whether it is
calibrated with reference models. The config schema (``attacks.names``), the rules, the findings and the
paper comparison read the list from here. This module imports nothing but the standard library, so the
config (imported by every job) does not depend on the attack code: editing an attack reruns the attack jobs,
not training.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

REF_PREFIX = "ref_"

NEEDS = ("texts", "reference", "references", "population", "mope", "shadows")
"""What an attack may read besides the target's scores: the sample texts, its own reference table
(``ref_<name>``), every reference table and their populations (RMIA), the target's population table, a
MoPe table, the shadow models' score tables with the IN/OUT assignment (LiRA, RMIA-shadow)."""


@dataclass(frozen=True)
class AttackSpec:
    name: str  # the config's ``attacks.names`` value and the tables' ``attack`` value
    score: str | Callable  # the score function: its name in kdprivacy.mia.attacks (resolved when used), or itself
    paper_name: str | None  # the attack's name in the paper's tables (paper_results.csv); None: no counterpart
    needs: tuple[str, ...] = ()  # a subset of NEEDS
    reference: str | None = None  # ref_<name>: the reference score table it reads
    reference_based: bool = False  # calibrated with reference models (the findings keep these apart)
    module: str = "kdprivacy.mia.attacks"  # where ``score`` is defined

    def __post_init__(self):
        unknown = sorted(set(self.needs) - set(NEEDS))
        if unknown:
            raise ValueError(f"attack {self.name}: unknown needs {unknown}; known: {list(NEEDS)}")

    @functools.cached_property
    def fn(self) -> Callable:
        """``fn(scores, context) -> np.ndarray`` (higher = more likely a member); a reference attack's is
        :func:`~kdprivacy.mia.attacks.ref_score` bound to its reference table."""
        fn = self.score
        if not callable(fn):
            fn = getattr(importlib.import_module(self.module), fn)
        return functools.partial(fn, name=self.reference) if self.reference is not None else fn


def reference_attack(reference: str, paper_name: str | None) -> AttackSpec:
    """``ref_<reference>``: :func:`ref_score` against the reference score table called ``reference``."""
    return AttackSpec(
        f"{REF_PREFIX}{reference}", "ref_score", paper_name,
        needs=("reference",), reference=reference, reference_based=True,
    )


ATTACKS: dict[str, AttackSpec] = {
    spec.name: spec
    for spec in (
        AttackSpec("loss", "loss_score", "loss"),
        AttackSpec("min_k", "min_k_score", "min_k"),
        AttackSpec("min_k_pp", "min_k_pp_score", "min_k_pp"),
        AttackSpec("zlib", "zlib_score", "zlib", needs=("texts",)),
        reference_attack("external", "ref_external"),  # an independent LM (paper: StableLM-3B)
        reference_attack("pretrained", "ref_pretrained"),  # the teacher's pretrained base
        reference_attack("nokd", None),  # the No-KD student
        AttackSpec("mope", "mope_score", "mope", needs=("mope",)),
        AttackSpec("rmia", "rmia_score", None, needs=("references", "population"), reference_based=True),
        # calibrated with shadow pipelines trained with and without each candidate (kdprivacy.mia.shadows)
        AttackSpec("lira", "lira_score", None, needs=("shadows",), reference_based=True,
                   module="kdprivacy.mia.shadows"),
        AttackSpec("lira_offline", "lira_offline_score", None, needs=("shadows",), reference_based=True,
                   module="kdprivacy.mia.shadows"),
        AttackSpec("rmia_shadow", "rmia_shadow_score", None, needs=("shadows", "population"),
                   reference_based=True, module="kdprivacy.mia.shadows"),
    )
}
ATTACK_NAMES = tuple(ATTACKS)
REFERENCE_NAMES = tuple(spec.reference for spec in ATTACKS.values() if spec.reference is not None)
REFERENCE_ATTACKS = tuple(name for name, spec in ATTACKS.items() if spec.reference_based)
SHADOW_ATTACKS = tuple(name for name, spec in ATTACKS.items() if "shadows" in spec.needs)
PAPER_ATTACKS = {name: spec.paper_name for name, spec in ATTACKS.items() if spec.paper_name is not None}
"""Our attack -> the paper's (``ref_nokd``, ``rmia`` and the shadow attacks have no counterpart in the paper)."""
FOCUS_ATTACKS = ("ref_pretrained", "ref_external", "loss")
"""The attack of the single-attack figures (per-task risk, ROC, membership vs memorization), in order of
preference: the first of these that was run (else the first attack of the MIA table)."""
if not set(FOCUS_ATTACKS) <= set(ATTACKS):
    raise ValueError(f"FOCUS_ATTACKS {FOCUS_ATTACKS} names attacks outside the registry")


def nokd_reference(
    nokd: Sequence[tuple[str, str]], target: str, base: str, seed: int, seeds: Sequence[int]
) -> tuple[str, int] | None:
    """The No-KD student ``(name, seed)`` that attack ``ref_nokd`` compares ``target`` (base ``base``,
    training seed ``seed``) with; ``nokd`` lists the family's No-KD students as ``(name, base)`` in config
    order.

    Rule: the first No-KD student with the target's base (else the family's first), same seed. When that is
    the target itself (the No-KD student), the same No-KD student of the next training seed in ``seeds``
    (cyclically: ``seeds[(i + 1) % n]``), which never saw the target's training run; with a single seed there
    is no independent No-KD reference: None (the cell is reported NA, never a self-comparison).
    """
    if not nokd:
        raise ValueError("ref_nokd needs a No-KD student in the family")
    same = [n for n, b in nokd if b == base]
    name = (same or [n for n, _ in nokd])[0]
    if name != target:
        return name, int(seed)
    seeds = [int(s) for s in seeds]
    if len(seeds) < 2:
        return None
    return name, seeds[(seeds.index(int(seed)) + 1) % len(seeds)]


NO_NOKD_REFERENCE = "not testable: no independent No-KD reference (the target is the No-KD student, one seed)"


def untestable_attacks(
    names: Sequence[str], untestable: Mapping[str, str], rmia_references: Sequence[str] | None,
    given: Sequence[str],
) -> tuple[dict[str, str], tuple[str, ...] | None]:
    """Attacks of ``names`` this target cannot be tested with, ``{attack: reason}``, and RMIA's references.

    ``untestable`` maps a reference name to why it is missing for this target (e.g. ``nokd`` ->
    :data:`NO_NOKD_REFERENCE`): ``ref_<name>`` is NA; RMIA drops that reference (its configured
    ``rmia_references``, else every reference ``given``) and is NA when none remains. ``untestable["shadows"]``
    (a model without shadow pipelines) makes every shadow attack NA."""
    out = {n: untestable[n[len(REF_PREFIX):]] for n in names if n.startswith(REF_PREFIX)
           and n[len(REF_PREFIX):] in untestable}
    if "shadows" in untestable:  # a model without shadow pipelines (attacks.shadows.models)
        out.update({n: untestable["shadows"] for n in names if n in SHADOW_ATTACKS})
    refs = None if rmia_references is None else tuple(r for r in rmia_references if r not in untestable)
    if "rmia" in names:
        left = refs if refs is not None else tuple(r for r in given if r not in untestable)
        if not left:
            out["rmia"] = "not testable: no reference model other than the target (" + "; ".join(
                f"{k}: {v}" for k, v in untestable.items()) + ")"
    return out, refs


def needs(names: Sequence[str]) -> set[str]:
    """Every extra input the attacks ``names`` read (:data:`NEEDS`)."""
    return {need for name in names for need in ATTACKS[name].needs}


@dataclass(frozen=True)
class BlockSignal:
    """A per-block membership signal (:mod:`kdprivacy.mia.blocks`, :mod:`kdprivacy.mia.probes`)."""

    name: str  # the config's ``blocks.signals`` value and the tables' ``signal`` value
    title: str  # the figure panel's title
    access: str  # what the attacker needs: the tables' ``access`` column
    hidden_states: bool  # read from the one hidden-state pass (else: its own perturbed passes)


BLOCK_SIGNALS: dict[str, BlockSignal] = {
    spec.name: spec
    for spec in (
        BlockSignal("lens_loss", "logit lens: loss", "white-box: hidden states", True),
        BlockSignal("lens_min_k_pp", "logit lens: Min-K%++", "white-box: hidden states", True),
        BlockSignal("probe", "linear probe (labelled members: upper bound)",
                    "white-box: hidden states + labelled members (upper-bound probe)", True),
        BlockSignal("mope", "MoPe, noise in this block only", "white-box: weights", False),
    )
}
"""Per-block signals, in table and figure order: the logit-lens loss and Min-K%++ attacks and the linear
membership probe read every block from one hidden-state pass; MoPe perturbs one block at a time."""
BLOCK_SIGNAL_NAMES = tuple(BLOCK_SIGNALS)
