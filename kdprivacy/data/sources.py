"""Where records come from: a local JSON/JSONL/Parquet/CSV file, a Hugging Face hub dataset or the synthetic
generator, mapped onto our fields; and the validation that refuses rows which would silently distort the
study (empty instructions or responses, non-text cells, half a secret pair).

Files and hub datasets may carry other category labels than Dolly's (kept as they are) or none
(``"uncategorized"``): per-category results are then reported under those labels rather than rejected.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kdprivacy.config import Data
from kdprivacy.data import FIELDS, REQUIRED, SECRET_FIELDS, UNCATEGORIZED, DataError
from kdprivacy.data.synthetic import generate_synthetic

_FORMATS = {".json": "json", ".jsonl": "jsonl", ".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}

def _apply_columns(df: pd.DataFrame, columns: dict[str, str] | None, source: str) -> pd.DataFrame:
    """Rename a source's columns to ours; shared by file and hub loading so one test covers both.

    ``columns`` maps our field -> the source's column; unmapped fields look for a column of the same name.
    An absent context means "no input" (as in Dolly), an absent category becomes ``"uncategorized"``; but a
    column the user named explicitly must exist. Secret columns travel only as a pair.
    """
    mapping = dict(columns or {})
    unknown = sorted(set(mapping) - set(FIELDS) - set(SECRET_FIELDS))
    if unknown:
        raise DataError(f"column mapping for {source} has unknown field(s) {unknown}; "
                        f"allowed: {list(FIELDS) + list(SECRET_FIELDS)}")
    available = [str(c) for c in df.columns]
    out = pd.DataFrame(index=range(len(df)))
    for field in FIELDS:
        src = mapping.get(field, field)
        if src in df.columns:
            out[field] = df[src].to_numpy()
        elif field in REQUIRED or field in mapping:
            raise DataError(f"{source}: column {src!r} (for field {field!r}) not found; "
                            f"available columns: {available}")
        else:
            out[field] = "" if field == "context" else UNCATEGORIZED
    secret_src = [mapping.get(f, f) for f in SECRET_FIELDS]
    if all(s in df.columns for s in secret_src):
        for field, src in zip(SECRET_FIELDS, secret_src, strict=True):
            out[field] = df[src].to_numpy()
    return out


def _read_json_records(path: Path) -> list[dict[str, Any]]:
    records = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise DataError(f"{path}: a .json data file must hold a list of records (objects)")
    return records


def _read_jsonl_records(path: Path) -> list[dict[str, Any]]:
    records = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from exc
            if not isinstance(rec, dict):
                raise DataError(f"{path}:{lineno}: each JSONL line must be an object")
            records.append(rec)
    return records


def load_file(path: str, columns: dict[str, str] | None = None, fmt: str = "auto") -> pd.DataFrame:
    """Read a local JSON/JSONL/Parquet/CSV file into our fields.

    Text is read as text: CSV without NA guessing and JSON without dtype inference, so a response such as
    "NA" or "0042" survives unchanged (it is part of the example's identity).
    """
    p = Path(path).expanduser()  # as validation and the rule's input do: "~/data.jsonl" is the user's home
    if not p.is_file():
        raise DataError(f"data file not found: {path}")
    if fmt == "auto":
        fmt = _FORMATS.get(p.suffix.lower(), "")
        if not fmt:
            raise DataError(f"cannot infer the format of {path} from its extension; "
                            f"set format to one of {sorted(set(_FORMATS.values()))}")
    try:
        if fmt == "json":
            df = pd.DataFrame.from_records(_read_json_records(p))
        elif fmt == "jsonl":
            df = pd.DataFrame.from_records(_read_jsonl_records(p))
        elif fmt == "parquet":
            df = pd.read_parquet(p)
        elif fmt == "csv":
            df = pd.read_csv(p, dtype=str, keep_default_na=False)
        else:
            raise DataError(f"unknown data format {fmt!r} for {path}; use auto, json, jsonl, parquet or csv")
    except (ValueError, OSError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"could not read {path} as {fmt}: {exc}") from exc
    return _apply_columns(df, columns, source=f"file {path}")


def load_hub(name: str, split: str = "train", revision: str | None = None,
             columns: dict[str, str] | None = None, snapshot: str | None = None) -> pd.DataFrame:
    """Load a Hugging Face hub dataset (e.g. databricks/databricks-dolly-15k) into our fields.

    ``snapshot``: the local snapshot directory ``download_hub`` fetched (read offline, no hub lookup).
    ``datasets`` is imported here, not at module level, because it is slow to import and only this path
    needs it. Pin ``revision`` for a reproducible study: a hub dataset can change under the same name.
    """
    import datasets

    try:
        if snapshot is not None:
            ds = datasets.load_dataset(snapshot, split=split)
        else:
            ds = datasets.load_dataset(name, split=split, revision=revision)
        df = ds.to_pandas()
    except Exception as exc:  # the hub raises many unrelated types; all mean "could not get the data"
        raise DataError(
            f"could not load hub dataset {name!r} (split={split!r}, revision={revision!r}): {exc}. "
            "Without network access set HF_HUB_OFFLINE=1 and HF_DATASETS_OFFLINE=1 and make sure the dataset "
            "is already in the Hugging Face cache (HF_HOME), or use data.source: file with a local copy."
        ) from exc
    return _apply_columns(df, columns, source=f"hub dataset {name!r}")


def load_source(data: Data, snapshot: str | None = None) -> pd.DataFrame:
    """The records of the active source ``data.source`` (synthetic | file | hub), read from its section.

    ``snapshot``: for a hub source, the local snapshot directory ``download_hub`` fetched (read offline).
    """
    if data.source == "synthetic":
        return generate_synthetic(data.synthetic.n_examples, data.synthetic.seed)
    if data.source == "file":
        return load_file(data.file.path, data.file.columns, data.file.format)
    return load_hub(data.hub.name, data.hub.split, data.hub.revision, data.hub.columns, snapshot)


# --------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------

def _as_text(col: pd.Series, field: str | None = None) -> pd.Series:
    """Missing -> "", a string or number -> its stripped string, so ids do not depend on a reader's dtypes.

    A cell holding a list, mapping or array (a JSON record whose response is a list, a Parquet list column)
    is not a text: a :class:`DataError` names its row position and column.
    """
    out = []
    for pos, v in enumerate(col):
        if isinstance(v, (list, tuple, dict, set, np.ndarray)):
            shown = repr(v.tolist() if isinstance(v, np.ndarray) else v)
            raise DataError(
                f"row {pos}, column {field or col.name!r}: expected text (a string; numbers are read as "
                f"text), got a {type(v).__name__}: {shown[:80]}{'...' if len(shown) > 80 else ''}"
            )
        out.append("" if pd.isna(v) else str(v).strip())
    return pd.Series(out, index=col.index, dtype=str)


def validate_records(df: pd.DataFrame, min_rows: int = 1) -> pd.DataFrame:
    """Clean a loaded frame and refuse data that would silently distort the study.

    An empty instruction or response cannot be prompted or scored, and the authors' code dropped such rows
    without a word; here they are an error that says how many and where (0-based row positions).
    """
    missing = [f for f in REQUIRED if f not in df.columns]
    if missing:
        raise DataError(f"records lack required column(s) {missing}; available columns: {list(df.columns)}")
    has_secret = [f in df.columns for f in SECRET_FIELDS]
    if any(has_secret) and not all(has_secret):
        raise DataError(f"records carry only one of {list(SECRET_FIELDS)}; both or neither are needed")
    df = df.reset_index(drop=True)
    out = pd.DataFrame(index=df.index)
    for field in FIELDS:
        if field in df.columns:
            out[field] = _as_text(df[field], field)
        else:
            out[field] = pd.Series("", index=df.index, dtype=str)
    out.loc[out["category"] == "", "category"] = UNCATEGORIZED
    if all(has_secret):
        for field in SECRET_FIELDS:
            out[field] = _as_text(df[field], field)
    for field in REQUIRED:
        empty = np.flatnonzero((out[field] == "").to_numpy())
        if len(empty):
            raise DataError(f"{len(empty)} of {len(out)} rows have an empty {field} "
                            f"(first row positions: {empty[:5].tolist()})")
    if len(out) < min_rows:
        raise DataError(f"need at least {min_rows} rows, got {len(out)}")
    return out
