"""Pool guards (pitfalls.md): students only ever read the public/dev pools (and the pretrain pool, the public
pretraining corpus, for the optional pretraining LM loss), and nothing derived from the
tokenizer/base pretraining may read private or non-member examples; plus loading a manifest's pools as
encoded training items.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import pandas as pd

from kdprivacy.data.manifest import select_pool
from kdprivacy.encoding import Encoded, encode_frame, format_prompt

SECRET_POOLS = ("private", "nonmember")  # what membership is measured on: never train students/bases on it
STUDENT_POOLS = ("public", "dev", "pretrain")


def read_manifest(manifest_path) -> pd.DataFrame:
    return pd.read_parquet(manifest_path)


def select_pools(manifest: pd.DataFrame, pools: Sequence[str]) -> pd.DataFrame:
    """Rows of ``manifest`` in ``pools``; an unknown or empty pool list is an error."""
    pools = list(pools)
    if not pools:
        raise ValueError("no pools given")
    return select_pool(manifest, *pools)


def refuse_secret_pools(pools: Iterable[str], what: str) -> None:
    """Tokenizers and pretrained bases must never see members or non-members."""
    bad = sorted(set(pools) & set(SECRET_POOLS))
    if bad:
        raise ValueError(f"{what} must not read pools {bad} (members/non-members); got pools {sorted(set(pools))}")


def assert_student_pools(manifest: pd.DataFrame, ids: Iterable[str], pools: Iterable[str] | None = None) -> None:
    """Guarantee: a student only ever reads public/dev (and pretrain) examples.

    Raises ``AssertionError`` (explicitly, so ``python -O`` cannot strip it) if a requested pool is not
    public/dev, or if any id is unknown to the manifest or belongs to a private/non-member row.
    """
    if pools is not None:
        bad_pools = sorted(set(pools) - set(STUDENT_POOLS))
        if bad_pools:
            raise AssertionError(f"students may only read pools {list(STUDENT_POOLS)}; requested {bad_pools}")
    ids = set(ids)
    by_pool = manifest.groupby("pool")["id"].agg(set)
    leaked = {pool: sorted(ids & by_pool.get(pool, set())) for pool in SECRET_POOLS}
    leaked = {pool: found for pool, found in leaked.items() if found}
    if leaked:
        sample = {pool: found[:5] for pool, found in leaked.items()}
        counts = {pool: len(found) for pool, found in leaked.items()}
        raise AssertionError(f"student training data contains secret examples {counts}, e.g. {sample}")
    unknown = ids - set(manifest["id"])
    if unknown:
        raise AssertionError(f"{len(unknown)} student item ids are not in the manifest, e.g. {sorted(unknown)[:5]}")


def pool_guard(manifest: pd.DataFrame, pools: Sequence[str] = ("public",), what: str = "student data") -> Callable:
    """A reusable check, built once from the manifest: ``check(ids)`` raises ``AssertionError`` unless every id
    belongs to one of ``pools`` (a subset of the student pools). Secret ids are named by pool.

    Used on everything a student trains on that is *derived* from prompts (student-generated outputs, teacher
    generations): those must come from public prompts only, so their ids must all be public.
    """
    pools = list(pools)
    bad_pools = sorted(set(pools) - set(STUDENT_POOLS))
    if not pools or bad_pools:
        raise AssertionError(f"{what}: allowed pools must be a non-empty subset of {list(STUDENT_POOLS)}, got {pools}")
    by_pool = manifest.groupby("pool")["id"].agg(set)
    allowed = set().union(*(by_pool.get(pool, set()) for pool in pools))
    secret = {pool: by_pool.get(pool, set()) for pool in SECRET_POOLS}

    def check(ids: Iterable[str]) -> None:
        outside = set(ids) - allowed
        if not outside:
            return
        leaked = {pool: sorted(outside & found) for pool, found in secret.items() if outside & found}
        if leaked:
            counts = {pool: len(found) for pool, found in leaked.items()}
            sample = {pool: found[:5] for pool, found in leaked.items()}
            raise AssertionError(f"{what} contains secret examples {counts}, e.g. {sample}")
        raise AssertionError(f"{what}: {len(outside)} ids are not in pools {pools}, e.g. {sorted(outside)[:5]}")

    return check


def pool_texts(manifest_path, pools: Sequence[str]) -> list[str]:
    """Formatted prompt + response of every row in ``pools`` (tokenizer training corpus)."""
    refuse_secret_pools(pools, "tokenizer/pretraining text")
    frame = select_pools(read_manifest(manifest_path), pools)
    return [format_prompt(r.instruction, r.context) + r.response for r in frame.itertuples(index=False)]


def load_items(manifest_path, pools: Sequence[str], tokenizer, max_length: int, max_prompt_length: int) -> list[Encoded]:
    """Load the manifest, select ``pools`` and encode them (manifest order)."""
    frame = select_pools(read_manifest(manifest_path), pools)
    return encode_frame(tokenizer, frame, max_length, max_prompt_length)
