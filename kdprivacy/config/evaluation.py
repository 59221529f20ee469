"""What is measured on the trained models: the shared evaluation set and RMIA population, the attacks (and
their external reference), memorization, utility and per-block risk.

Part of :mod:`kdprivacy.config` (import the models from there).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from kdprivacy.config.bases import model_ref
from kdprivacy.fields import (
    Fraction,
    Name,
    PosFloat,
    PosInt,
    Precision,
    Seed,
    Strict,
    check_local_model,
    float_field,
)
from kdprivacy.mia.registry import ATTACK_NAMES, BLOCK_SIGNAL_NAMES, REFERENCE_NAMES, SHADOW_ATTACKS


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
        "per_block): fp32 = no autocast; bf16 / fp16 = torch.autocast, log-probabilities still taken in "
        "float32",
    )
    score_eos: bool = Field(
        True, description="the response's final EOS is a scored token of every scoring pass (score_model, "
        "score_reference, mope, per_block; ours) or not (MIMIR scores the text alone)"
    )


AttackName = Literal[ATTACK_NAMES]  # the attack registry, kdprivacy.mia.registry.ATTACKS
LIRA_ATTACKS = ("lira", "lira_offline")
LIRA_MIN_SHADOWS = 4  # two IN and two OUT shadows per candidate (complementary pairs)


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


class Shadows(Strict):
    """Shadow teacher-to-student pipelines for LiRA and RMIA-shadow (kdprivacy/mia/shadows.py); off at n = 0.

    Shadow ``j`` trains a teacher with the target teacher's recipe on a seeded random half of the candidates
    (the private and non-member pools; complementary halves in pairs) and distils, from it, one student per
    name in ``models`` with that student's recipe on the same public pool. Its training seed is ``seed + j``."""

    n: Annotated[int, Field(ge=0)] = Field(
        0, description="number of shadow pipelines (0 = off; >= 2 when on, >= 4 for LiRA)"
    )
    seed: Seed = Field(1000, description="the IN/OUT assignment's seed; shadow j trains with seed + j")
    models: Annotated[list[Name], Field(min_length=1)] = Field(
        ["teacher"], description="the models with shadows: 'teacher' and student names; the shadow attacks "
        "of every other model are NA"
    )
    variance: Literal["auto", "global", "per_example"] = Field(
        "auto", description="LiRA's Gaussian deviations: per example and role, one pooled (few shadows), or "
        "per example from 32 IN and 32 OUT shadows on (auto)"
    )

    @model_validator(mode="after")
    def _enough(self) -> Shadows:
        if self.n == 1:
            raise ValueError("attacks.shadows.n must be 0 (off) or >= 2 (every candidate IN and OUT of some shadow)")
        if len(set(self.models)) != len(self.models):
            raise ValueError(f"attacks.shadows.models repeat: {self.models}")
        return self


class Attacks(Strict):
    names: list[AttackName] = ["loss", "min_k", "min_k_pp", "zlib", "ref_pretrained", "ref_nokd", "mope", "rmia"]
    min_k: float_field(gt=0, le=1) = 0.2
    min_k_count: Literal["ceil", "floor"] = Field(
        "ceil", description="tokens Min-K%/Min-K%++ average: ceil(k n) (ours) or floor(k n), at least 1 (MIMIR)"
    )
    fprs: list[float_field(gt=0, lt=1)] = [0.05, 0.01, 0.001]
    n_bootstrap: Annotated[int, Field(ge=0)] = 1000
    bootstrap_seed: Seed = 0
    best_attack_split_seed: Seed = Field(
        0,
        description="the 'best attack' of the privacy-vs-utility figure and summary is chosen on one half of "
        "the examples (stratified, by a hash of this seed and the example id) and its AUC reported on the "
        "other half (results/tables/mia_best_attack.csv)",
    )
    short_tokens: PosInt = Field(5, description="responses with fewer scored tokens are flagged and counted")
    roc_max_points: PosInt = 400
    external_reference: ExternalReference | None = None
    rmia: RMIA = RMIA()
    mope: MoPe = MoPe()
    blind: Blind = Blind()
    shadows: Shadows = Shadows()

    @model_validator(mode="after")
    def _needs(self) -> Attacks:
        if "ref_external" in self.names and self.external_reference is None:
            raise ValueError("attack ref_external needs attacks.external_reference")
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"attack names repeat: {self.names}")
        if "rmia" in self.names and not self.reference_names:
            raise ValueError("rmia needs at least one reference attack (ref_external, ref_pretrained, ref_nokd)")
        shadow_attacks = [n for n in self.names if n in SHADOW_ATTACKS]
        if shadow_attacks and self.shadows.n < 2:
            raise ValueError(f"attack(s) {shadow_attacks} need shadow pipelines: set attacks.shadows.n >= 2")
        lira = [n for n in self.names if n in LIRA_ATTACKS]
        if lira and self.shadows.n < LIRA_MIN_SHADOWS:
            raise ValueError(
                f"attack(s) {lira} need attacks.shadows.n >= {LIRA_MIN_SHADOWS} (got {self.shadows.n}): LiRA's "
                "Gaussian deviation needs two IN and two OUT shadows per candidate; rmia_shadow runs with 2"
            )
        return self

    @property
    def reference_names(self) -> list[str]:
        return [n.removeprefix("ref_") for n in self.names if n.startswith("ref_")]


class Memorization(Strict):
    """Greedy decoding from each member's/non-member's prompt, once per model; every metric derives from it."""

    first_k: PosInt = Field(32, description="the paper's positional match over the first k response tokens")
    match_positions: Literal["reference", "fixed"] = Field(
        "reference", description="match_rate's denominator: min(first_k, reference length) (ours; positions "
        "past the reference are never compared) or first_k always (the authors: past the reference, misses)"
    )
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
    inheritance_comparison: Literal[">=", ">"] = Field(
        ">=", description="a model memorizes an example when its match_rate / rouge_l is >= (ours) or > (the "
        "authors) an inheritance threshold"
    )


class Utility(Strict):
    """ROUGE-L (x100) of greedy (or, with ``do_sample``, sampled) responses on held-out dev prompts: privacy
    read against utility."""

    enabled: bool = True
    max_examples: PosInt | None = 500
    batch_size: PosInt = 32
    max_new_tokens: PosInt | None = None
    rouge_stemmer: bool = False
    do_sample: bool = Field(
        False, description="sample the responses (temperature, top_k, top_p below; the authors' evaluation) "
        "instead of plain greedy decoding (ours)"
    )
    temperature: PosFloat = 1.0
    top_p: float_field(gt=0, le=1) = 1.0
    top_k: Annotated[int, Field(ge=0)] = Field(0, description="0 = off")
    seed: Seed = Field(0, description="sampling seed (each example draws from its own seeded generator)")


class Probe(Strict):
    """The linear membership probe of ``blocks.signals`` (kdprivacy.mia.probes.cv_probe)."""

    folds: Annotated[int, Field(ge=2)] = Field(5, description="stratified cross-validation folds")
    c: PosFloat = Field(1.0, description="inverse L2 strength on standardised features (scikit-learn's C)")
    seed: Seed = Field(0, description="fold assignment seed")
    population_negatives: bool = Field(
        False, description="the population examples (evaluation.population) join every training fold as "
        "extra non-members (never scored)"
    )


BlockSignalName = Literal[BLOCK_SIGNAL_NAMES]  # the registry kdprivacy.mia.registry.BLOCK_SIGNALS


class Blocks(Strict):
    """Per-block risk: the logit lens (loss, Min-K%++) and a linear probe at every block from one hidden-state
    pass, and MoPe with noise in one decoder block at a time (paper Fig. 7)."""

    enabled: bool = True
    signals: Annotated[list[BlockSignalName], Field(min_length=1)] = Field(
        list(BLOCK_SIGNAL_NAMES), description="per-block signals, each in the per-block table and figure"
    )
    probe: Probe = Probe()
    k: PosInt = Field(10, description="MoPe perturbations per block and sigma")
    sigmas: Annotated[list[PosFloat], Field(min_length=1)] = [0.01]
    seed: Seed = 0
    max_members: PosInt | None = 500
    max_nonmembers: PosInt | None = 500
    batch_size: PosInt | None = None
    n_bootstrap: Annotated[int, Field(ge=0)] = 1000

    @field_validator("signals")
    @classmethod
    def _signals_once(cls, signals):
        if len(set(signals)) != len(signals):
            raise ValueError(f"blocks.signals names a signal twice: {signals}")
        return signals
