"""The split: every unique example assigned to exactly one pool, reproducibly, and the checks later steps rely on.

The authors' code picked members by file position after a multiprocessing pass, so the private/public
boundary moved between runs and differed per model family. Here the split is made once, from stable
content-hash ids and a seed, and written as a manifest that every later step reads; disjointness of the
pools is checked, never assumed.

Pools:
    private    the teacher's SFT data = the *members* an attacker tries to recognise
    public     the disjoint half that students (and the No-KD control) train on
    nonmember  held-out examples of the same distribution; only ever scored, never trained or validated on
    dev        validation/model selection for SFT and KD (so non-members never steer training)
    pretrain   everything left over: a public corpus for tokenizer/base-model pretraining
"""

from __future__ import annotations

import hashlib
import json
import logging

import numpy as np
import pandas as pd

from kdprivacy import hub, io
from kdprivacy.config import Data, Split
from kdprivacy.data import FIELDS, SECRET_FIELDS, DataError
from kdprivacy.data.sources import load_source, validate_records

POOLS = ("private", "public", "nonmember", "dev", "pretrain")
_SPLIT_KEYS = ("private", "public", "nonmember", "dev")
# Order in which a seeded permutation is cut into pools; whatever is left becomes "pretrain".
_ASSIGN_ORDER = ("nonmember", "dev", "private", "public")
log_ = logging.getLogger(__name__)


def prepare(data: Data, downloads: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(manifest, data card)`` of ``data``: the active source loaded, validated, deduplicated and split.

    ``downloads``: ``download_hub``'s record; a hub dataset is then read offline from the snapshot it lists.
    """
    snapshot = None
    if downloads is not None:
        entry = hub.snapshot_of(io.read_json(downloads), data.hub.name, "dataset")
        log_.info("hub dataset %s at commit %s from %s", entry["repo_id"], entry["commit"], entry["path"])
        snapshot = entry["path"]
    raw = load_source(data, snapshot)
    log_.info("loaded %d records from source %r", len(raw), data.source)
    manifest = build_manifest(raw, data.split)
    log_.info("dropped %d exact duplicates", manifest.attrs.get("n_duplicates_dropped", 0))
    card = data_card(manifest)
    log_.info("pools:\n%s", card[card.category == "ALL"].to_string(index=False))
    return manifest, card


def example_id(instruction: str, context: str, response: str, category: str) -> str:
    """Content hash of an example: the same example gets the same id in every run, order and source."""
    canonical = json.dumps(
        {"instruction": instruction, "context": context, "response": response, "category": category},
        sort_keys=True, ensure_ascii=False, separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def _pool_sizes(split: Split, n_available: int, n_dropped: int) -> dict[str, int]:
    """Resolve the configured sizes: a null private/public size is half of what the others leave."""
    sizes = {key: getattr(split, key) for key in _SPLIT_KEYS}
    rest = n_available - sizes["nonmember"] - sizes["dev"]
    # The paper's split: non-members held out, the rest halved into private and public.
    resolved = {k: (max(rest, 0) // 2 if v is None else v) for k, v in sizes.items()}
    total = sum(resolved.values())
    if total > n_available:
        asked = " + ".join(f"{k}={resolved[k]}" for k in _ASSIGN_ORDER)
        raise DataError(f"split asks for {asked} = {total} examples, but only {n_available} unique examples "
                        f"are available (after dropping {n_dropped} duplicates)")
    return resolved


def build_manifest(df: pd.DataFrame, split: Split) -> pd.DataFrame:
    """Assign every unique example to exactly one pool, reproducibly.

    Rows are sorted by content id before the seeded permutation, so the assignment depends only on the
    data's content, the sizes and ``split.seed``, never on file order. Within a pool rows keep the permuted
    order, so "the first k rows of a pool" is a seeded random sample of it. Leftover rows form "pretrain".
    """
    clean = validate_records(df)
    clean.insert(0, "id", [example_id(*row) for row in clean[list(FIELDS)].itertuples(index=False)])
    # Sorting by every column makes the kept copy of a duplicate independent of input order too.
    clean = clean.sort_values(list(clean.columns), kind="mergesort")
    unique = clean.drop_duplicates("id", keep="first").reset_index(drop=True)
    n_dropped = len(clean) - len(unique)
    sizes = _pool_sizes(split, len(unique), n_dropped)

    order = np.random.default_rng(split.seed).permutation(len(unique))
    pool = np.full(len(unique), "pretrain", dtype=object)
    start = 0
    for name in _ASSIGN_ORDER:
        pool[start:start + sizes[name]] = name
        start += sizes[name]
    manifest = unique.iloc[order].reset_index(drop=True)
    manifest.insert(1, "pool", pd.Series(pool, dtype=str))
    extra = [f for f in SECRET_FIELDS if f in manifest.columns]
    manifest = manifest[["id", "pool", "category", "instruction", "context", "response", *extra]]
    manifest.attrs["n_duplicates_dropped"] = n_dropped
    check_disjoint(manifest)
    return manifest


def check_disjoint(manifest: pd.DataFrame) -> None:
    """Fail loudly if an example sits in two pools (or twice in one): members must never leak elsewhere."""
    for col in ("id", "pool"):
        if col not in manifest.columns:
            raise DataError(f"manifest lacks the {col!r} column")
    bad_pools = sorted(set(manifest["pool"]) - set(POOLS))
    if bad_pools:
        raise DataError(f"manifest has unknown pool(s) {bad_pools}; allowed: {list(POOLS)}")
    if manifest["id"].isna().any() or (manifest["id"] == "").any():
        raise DataError("manifest has rows without an id")
    pools_per_id = manifest.groupby("id", sort=True)["pool"].agg(lambda s: tuple(sorted(set(s))))
    cross = pools_per_id[pools_per_id.map(len) > 1]
    if len(cross):
        counts = cross.map(" & ".join).value_counts().sort_index()
        detail = ", ".join(f"{pair}: {k}" for pair, k in counts.items())
        raise DataError(f"{len(cross)} example id(s) appear in more than one pool ({detail})")
    repeated = manifest[manifest["id"].duplicated(keep=False)]
    if len(repeated):
        per_pool = repeated.drop_duplicates("id")["pool"].value_counts().sort_index()
        detail = ", ".join(f"{p}: {k}" for p, k in per_pool.items())
        raise DataError(f"{repeated['id'].nunique()} example id(s) appear more than once within a pool "
                        f"({detail})")


def data_card(manifest: pd.DataFrame) -> pd.DataFrame:
    """Per-pool, per-category counts and response lengths: shows at a glance that pools are comparable."""
    words = manifest["response"].str.split().str.len()
    frame = pd.DataFrame({"pool": manifest["pool"], "category": manifest["category"], "words": words})
    per_cat = frame.groupby(["pool", "category"], sort=True)["words"].agg(["size", "mean"]).reset_index()
    per_pool = frame.groupby("pool", sort=True)["words"].agg(["size", "mean"]).reset_index()
    per_pool.insert(1, "category", "ALL")
    card = pd.concat([per_cat, per_pool], ignore_index=True)
    card = card.rename(columns={"size": "n_examples", "mean": "mean_response_words"})
    card["mean_response_words"] = card["mean_response_words"].astype(float).round(2)
    card["_pool_rank"] = card["pool"].map({p: i for i, p in enumerate(POOLS)})
    card["_all_last"] = card["category"] == "ALL"
    card = card.sort_values(["_pool_rank", "_all_last", "category"], kind="mergesort")
    return card[["pool", "category", "n_examples", "mean_response_words"]].reset_index(drop=True)


def select_pool(manifest: pd.DataFrame, *pools: str) -> pd.DataFrame:
    """Rows of the named pools, in manifest order; an unknown pool name is a typo, not an empty pool."""
    if not pools:
        raise DataError(f"select_pool needs at least one pool name from {list(POOLS)}")
    unknown = [p for p in pools if p not in POOLS]
    if unknown:
        raise DataError(f"unknown pool(s) {unknown}; allowed: {list(POOLS)}")
    return manifest[manifest["pool"].isin(pools)].reset_index(drop=True)
