"""The workflow configuration: one typed model, validated before any job runs.

Unknown keys, wrong types and impossible values stop the workflow with a message naming the key
(e.g. ``families.gpt2.students.kd-small.train.lr``). Defaults live here, next to their meaning, one module
per part of the config: :mod:`~kdprivacy.config.data`, :mod:`~kdprivacy.config.bases` (bases, training,
tokenizer, teacher), :mod:`~kdprivacy.config.family` (students, ablations, families) and
:mod:`~kdprivacy.config.evaluation` (evaluation set, attacks, memorization, utility, blocks); this module
holds the job resources, hub access and the whole :class:`Config`, and re-exports every block, so
``from kdprivacy.config import Lora`` works. ``schemas/config.schema.json`` is generated from this model
(``python -m kdprivacy.config``; a test keeps the two in sync).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import Field, ValidationError, model_validator

from kdprivacy.config.bases import (
    MODEL_REF_KEYS,
    Base,
    FromScratch,
    Lora,
    Pretrain,
    Teacher,
    Tokenizer,
    TokenizerTrain,
    Train,
    model_ref,
)
from kdprivacy.config.data import Data, FileSource, HubSource, Split, SyntheticSource
from kdprivacy.config.evaluation import (
    RMIA,
    AttackName,
    Attacks,
    Blind,
    Blocks,
    Evaluation,
    ExternalReference,
    Memorization,
    MoPe,
    Population,
    Utility,
)
from kdprivacy.config.family import (
    KD,
    OBJECTIVES,
    Ablations,
    Family,
    Generation,
    Init,
    Objective,
    ObjectiveAblation,
    SgoAblation,
    Student,
    objective_copy_name,
    sgo_copy_name,
)
from kdprivacy.config.protocol import ProtocolName, with_paper_values
from kdprivacy.fields import NAME, NAME_RULE, ConfigError, Name, PosFloat, PosInt, Seed, Strict

__all__ = [
    "KD", "MODEL_REF_KEYS", "OBJECTIVES", "RMIA", "Ablations", "AttackName", "Attacks", "Base", "Blind", "Blocks",
    "Config", "ConfigError", "Data", "Evaluation", "ExternalReference", "Family", "FileSource", "FromScratch",
    "Generation", "Hub", "HubSource", "Init", "Lora", "Memorization", "MoPe", "Objective", "ObjectiveAblation",
    "Population", "Pretrain", "Resources", "SgoAblation", "Split", "Student", "SyntheticSource", "Teacher",
    "Tokenizer", "TokenizerTrain", "Train", "Utility", "json_schema", "load_yaml", "model_ref",
    "objective_copy_name", "sgo_copy_name", "validate_config",
]


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
    protocol: ProtocolName = Field(
        "ours",
        description="paper: every knob you leave unset where our default deviates from the authors' code takes "
        "the authors' value (kdprivacy/config/protocol.py, README 'Protocols'); ours: our defaults",
    )
    seeds: Annotated[list[Seed], Field(min_length=1)] = [0]
    deterministic: bool = Field(
        False, description="every job runs torch.use_deterministic_algorithms(True) with "
        "CUBLAS_WORKSPACE_CONFIG=:4096:8 and cuDNN autotuning off: GPU runs repeatable bit for bit (slower; an "
        "op without a deterministic kernel fails the job)"
    )
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
        if self.attacks.shadows.n:
            for f, fam in self.families.items():
                unknown = [m for m in self.attacks.shadows.models if m != "teacher" and m not in fam.all_students()]
                if unknown:
                    raise ValueError(f"attacks.shadows.models: no student {unknown} in family '{f}'")
        from kdprivacy.kd import wants_pretrain_loss

        split = self.data.split
        if split.private is None or split.public is None:  # the halves take every example left: no pretrain pool
            wanting = [f"families.{f}.students.{n}" for f, fam in self.families.items()
                       for n, (s, _, _) in fam.all_students().items()
                       if wants_pretrain_loss(s.params)]
            if wanting:
                raise ValueError(
                    f"{', '.join(wanting[:3])}{f' and {len(wanting) - 3} more' if len(wanting) > 3 else ''}: "
                    "pretrain_weight > 0 reads the pretrain pool, but data.split gives every "
                    "example left to private/public (one of them is null); set both sizes so that some remain "
                    f"(protocol: {self.protocol} sets pretrain_weight 1.0 where it is unset)"
                )
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
        context = {"check_paths": bool(check_paths)}
        cfg = Config.model_validate(raw, context=context)
        if cfg.protocol == "paper":  # second pass: the authors' values where the user set nothing
            cfg = Config.model_validate(with_paper_values(raw, cfg), context=context)
        return cfg
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


JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"  # pydantic writes this draft


def json_schema() -> dict[str, Any]:
    """The config's JSON schema, with ``$schema`` naming its draft (``snakemake.utils.validate`` needs it)."""
    return {"$schema": JSON_SCHEMA_DIALECT, **Config.model_json_schema()}


def load_yaml(path: str, check_paths: bool = False) -> Config:
    """Validate a YAML config file (what `snakemake --configfile` would load)."""
    import yaml

    with open(path, encoding="utf-8") as handle:
        return validate_config(yaml.safe_load(handle) or {}, check_paths=check_paths)
