"""Memorization: greedy continuation of a sample's prompt compared with its true response.

The paper's metric (study.md): greedy-decode from the instruction prompt, compare the first ``k`` (32)
generated tokens with the first ``k`` reference response tokens position by position; the memorization
accuracy is the mean per-example match rate over members, the gap is member minus non-member accuracy.

Decisions (pitfalls.md):
- Plain greedy decoding: ``do_sample=False, num_beams=1``, and logits processors that the model's saved
  ``generation_config`` might switch on are explicitly neutralised (``no_repeat_ngram_size=0``,
  ``repetition_penalty=1.0``, ``min_new_tokens=0``, which overrides any ``min_length``): forbidding
  repeated n-grams blocks verbatim reproduction.
- Only real reference tokens are compared: ``n_compared = min(k, len(reference))`` (the reference ends with
  EOS, which counts as a token to reproduce). A generation that stops early (EOS) or is shorter than
  ``n_compared`` scores the missing positions as misses.
- Generated sequences are cut after their first EOS (the EOS is kept); what ``generate`` pads after it is
  never compared.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from kdprivacy import encoding, scoring
from kdprivacy.encoding import Encoded

MEMORIZATION_COLUMNS = ["id", "n_compared", "n_matched", "match_rate", "exact_prefix"]

PLAIN_GREEDY = {
    "do_sample": False,
    "num_beams": 1,
    "no_repeat_ngram_size": 0,
    "repetition_penalty": 1.0,
    "min_new_tokens": 0,
    "use_cache": True,
}


def cut_after_eos(tokens: Sequence[int], eos_id: int | None) -> list[int]:
    """Tokens up to and including the first EOS (all tokens when there is none)."""
    tokens = list(tokens)
    if eos_id is not None and eos_id in tokens:
        return tokens[: tokens.index(eos_id) + 1]
    return tokens


def greedy_generate(
    model,
    items: Sequence[Encoded],
    max_new_tokens: int,
    batch_size: int,
    pad_id: int,
    eos_id: int | None,
) -> list[list[int]]:
    """Greedy continuation of each item's prompt: new tokens only, cut after the first EOS; input order.

    Batches group prompts of similar length and are left-padded (:func:`encoding.collate_prompts`).
    """
    if max_new_tokens < 1 or batch_size < 1:
        raise ValueError("max_new_tokens and batch_size must be >= 1")
    model.eval()
    device = scoring.model_device(model)
    order = sorted(range(len(items)), key=lambda i: len(items[i].prompt_ids))
    results: list[list[int] | None] = [None] * len(items)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            batch_idx = order[start : start + batch_size]
            batch = encoding.collate_prompts([items[i] for i in batch_idx], pad_id)
            batch = {k: v.to(device) for k, v in batch.items()}
            out = model.generate(
                **batch,
                max_new_tokens=max_new_tokens,
                pad_token_id=pad_id,
                eos_token_id=eos_id,
                **PLAIN_GREEDY,
            )
            new_tokens = out[:, batch["input_ids"].shape[1] :].cpu().tolist()
            for slot, tokens in zip(batch_idx, new_tokens):
                results[slot] = cut_after_eos(tokens, eos_id)
    return results  # type: ignore[return-value]


def positional_match(generated: Sequence[int], reference: Sequence[int], k: int) -> tuple[int, int]:
    """``(n_compared, n_matched)`` over the first ``min(k, len(reference))`` reference positions."""
    if k < 1:
        raise ValueError("k must be >= 1")
    n_compared = min(k, len(reference))
    n_matched = sum(
        1 for position in range(min(n_compared, len(generated))) if generated[position] == reference[position]
    )
    return n_compared, n_matched


def memorization_table(
    model,
    items: Sequence[Encoded],
    k: int,
    batch_size: int,
    pad_id: int,
    eos_id: int | None,
) -> pd.DataFrame:
    """Per-example ``id, n_compared, n_matched, match_rate, exact_prefix`` (input order).

    ``exact_prefix`` is True when all compared positions match (exact k-extractability when the reference
    has at least ``k`` tokens).
    """
    generated = greedy_generate(
        model, items, max_new_tokens=k, batch_size=batch_size, pad_id=pad_id, eos_id=eos_id
    )
    rows = []
    for item, tokens in zip(items, generated):
        n_compared, n_matched = positional_match(tokens, item.response_ids, k)
        rows.append(
            {
                "id": item.id,
                "n_compared": n_compared,
                "n_matched": n_matched,
                "match_rate": n_matched / n_compared if n_compared else float("nan"),
                "exact_prefix": n_compared > 0 and n_matched == n_compared,
            }
        )
    frame = pd.DataFrame(rows, columns=MEMORIZATION_COLUMNS)
    dtypes = {"n_compared": "int64", "n_matched": "int64", "match_rate": "float64", "exact_prefix": bool}
    return frame.astype(dtypes)


def summarize_memorization(per_example: pd.DataFrame) -> dict[str, float | int]:
    """Mean per-example match rate of members and non-members, their gap, and exact-prefix rates.

    Keys: ``member_rate, nonmember_rate, gap`` (member - non-member), ``member_exact_rate,
    nonmember_exact_rate``, ``n_members, n_nonmembers``. A group without examples gives NaN rates.
    """
    for column in ("label", "match_rate", "exact_prefix"):
        if column not in per_example.columns:
            raise ValueError(f"memorization table lacks column {column!r}")
    members = per_example[per_example["label"] == 1]
    nonmembers = per_example[per_example["label"] == 0]

    def mean(values: pd.Series) -> float:
        return float(np.mean(values.to_numpy(dtype=np.float64))) if len(values) else float("nan")

    member_rate = mean(members["match_rate"])
    nonmember_rate = mean(nonmembers["match_rate"])
    return {
        "member_rate": member_rate,
        "nonmember_rate": nonmember_rate,
        "gap": member_rate - nonmember_rate,
        "member_exact_rate": mean(members["exact_prefix"]),
        "nonmember_exact_rate": mean(nonmembers["exact_prefix"]),
        "n_members": len(members),
        "n_nonmembers": len(nonmembers),
    }
