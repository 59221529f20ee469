"""The building blocks of the configuration models: the strict base class, the typed fields (names, seeds,
bounded numbers that also read YAML 1.1's exponent strings), the local-path checks a validation with
``check_paths`` runs, and the re-typing of Snakemake's ``--config`` overrides.

Shared by :mod:`kdprivacy.config` and the KD methods' own parameter blocks (:mod:`kdprivacy.kd`), so that
neither has to import the other's models.
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo

# Names of families, bases and students: letters, digits, '-' and '_'. The '.' is reserved for the names and
# paths the workflow derives from them (<student>.obj-rkl, <model>.population.parquet, <output>.resume).
NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"
NAME_RULE = (
    "names may use letters, digits, '-' and '_' only (starting with a letter or digit); '.' is reserved for "
    "the workflow's own suffixes (ablation copies <student>.obj-<objective> / <student>.sgo-<value>, "
    "<model>.population, <output>.resume)"
)
# An exponent number as PyYAML (YAML 1.1, what Snakemake reads config files with) leaves it a string:
# 1e-3, 1.5e9, 5E+4 (it only reads 1.0e-3 and 1.5e+9 as floats).
_EXPONENT_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def _yaml_exponent(value: Any) -> Any:
    """``"1e-3"`` -> 0.001 for float fields, exactly the numbers YAML 1.1 misreads; every other string is left
    for strict validation to refuse (``"16"`` or ``"0.001"`` written in quotes are strings, not numbers)."""
    if isinstance(value, str) and _EXPONENT_NUMBER.match(value.strip()):
        return float(value)
    return value


class _ExponentStringSchema:
    """JSON schema of a float field: a number in its bounds, or the exponent string YAML 1.1 leaves (what the
    validator accepts), so ``snakemake.utils.validate`` with ``schemas/config.schema.json`` takes what we take
    (the bounds of such a string are checked by the config model)."""

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> dict[str, Any]:
        number = handler(core_schema)
        return {"anyOf": [number, {"type": "string", "pattern": _EXPONENT_NUMBER.pattern}]}


# Types are strict (Strict.model_config): no bool or string is taken for a number, no number for a bool, no
# float for an int; an int is a fine float. inf and nan are refused everywhere.
def float_field(**bounds: float) -> Any:
    """A float type with bounds (``gt``, ``ge``, ``lt``, ``le``) that also reads YAML 1.1's ``"1e-3"``."""
    return Annotated[float, Field(**bounds), BeforeValidator(_yaml_exponent), _ExponentStringSchema]


Name = Annotated[str, Field(pattern=NAME)]
PosInt = Annotated[int, Field(ge=1)]
PosFloat = float_field(gt=0)
NonNegFloat = float_field(ge=0)
Fraction = float_field(ge=0, le=1)
# Seeds reach paths and wildcards (seed<k>, wildcard \d+) and every RNG; scikit-learn's random_state and
# NumPy's legacy seeding take 0 .. 2**32 - 1.
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]
Precision = Literal["fp32", "bf16", "fp16"]


class ConfigError(ValueError):
    """A configuration problem; the message names every offending key."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

# ---------------------------------------------------------------- local paths
def looks_like_path(name_or_path: str) -> bool:
    """Hub ids are ``name`` or ``org/name``; anything rooted, relative-dotted or deeper is a local path."""
    s = str(name_or_path)
    return s.startswith((".", "/", "~")) or s.strip("/").count("/") >= 2 or os.sep != "/" and os.sep in s


def is_local(name_or_path: str) -> bool:
    """A local directory (by its form, or because it exists), not a Hugging Face hub id."""
    return looks_like_path(name_or_path) or os.path.exists(os.path.expanduser(str(name_or_path)))


def checking_paths(info: ValidationInfo) -> bool:
    """Whether this validation checks local paths (``validate_config(..., check_paths=True)``)."""
    return bool((info.context or {}).get("check_paths"))


def where_relative(path: str) -> str:
    if os.path.isabs(os.path.expanduser(path)):
        return ""
    return f" (relative to the working directory {os.getcwd()})"


def check_local_model(name_or_path: str | None, info: ValidationInfo) -> str | None:
    """A ``name_or_path`` written as a path must be an existing directory (hub ids are not looked up)."""
    if name_or_path is None or not checking_paths(info) or not looks_like_path(name_or_path):
        return name_or_path
    path = os.path.expanduser(name_or_path)
    if not os.path.exists(path):
        raise ValueError(
            f"local model directory {name_or_path!r} does not exist{where_relative(name_or_path)}; a hub "
            "model is written name or org/name"
        )
    if not os.path.isdir(path):
        raise ValueError(f"{name_or_path!r} is not a directory (a local model is a save_pretrained dir)")
    return name_or_path

# ---------------------------------------------------------------- --config overrides
_YAML_NULLS = ("null", "Null", "NULL", "~")


def _typed_scalar(text: str) -> Any:
    """A string as YAML would type it, for numbers, booleans and null only (anything else stays a string)."""
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, (bool, int, float)) or (value is None and text.strip() in _YAML_NULLS):
        return value
    return text


def typed_overrides(overrides: Any) -> dict[str, Any]:
    """Snakemake's ``--config key=value`` overrides with the scalars inside a mapping or list typed as YAML
    types them in a config file.

    Snakemake types a plain value itself (int, float, bool), but reads ``--config resources='{gpu: 0}'`` with
    YAML's BaseLoader, which leaves every nested scalar a string (``'0'``); strict validation would refuse
    it. Nested strings that read as a number, boolean or null become one; others stay strings.
    """

    def retype(value: Any, nested: bool) -> Any:
        if isinstance(value, dict) or hasattr(value, "items") and not isinstance(value, (str, bytes)):
            return {k: retype(v, True) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [retype(v, True) for v in value]
        if nested and isinstance(value, str):
            return _typed_scalar(value)
        return value

    return {k: retype(v, False) for k, v in dict(overrides or {}).items()}


def with_overrides(config: dict[str, Any], overrides: Any) -> dict[str, Any]:
    """``config`` with :func:`typed_overrides` merged in (mappings key by key, anything else replaced), as
    Snakemake merges ``--config`` into the config files."""

    def merge(base: Any, top: Any) -> Any:
        if isinstance(base, dict) and isinstance(top, dict):
            return {**base, **{k: merge(base.get(k), v) for k, v in top.items()}}
        return top

    return merge(dict(config), typed_overrides(overrides))
