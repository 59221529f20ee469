"""Memorization: one greedy continuation of each sample's prompt, compared with its true response.

One plain-greedy pass per model (:func:`kdprivacy.generation.generate` with ``generation.GREEDY``) with a
budget of ``max(k, longest reference response)`` new tokens (optionally capped by ``max_new_tokens``); every
metric below is derived from that single generation. Greedy decoding is deterministic, so its first ``k``
tokens are exactly what a ``k``-token run would produce: the paper's metric is unchanged by the longer
budget.

Metrics (per example, on members and non-members alike):

- **positional match** (the paper, study.md): the first ``k`` (32) generated tokens against the first ``k``
  reference response tokens, position by position; ``match_rate = n_matched / n_compared`` with
  ``n_compared = min(k, len(reference))``. The reference ends with EOS, which counts as a token to
  reproduce; a generation that stops early scores the missing positions as misses; nothing after the
  reference (padding) is ever compared. ``positions="fixed"`` (the authors' code, ``memorization.
  match_positions``): ``n_compared = k`` always, so the positions past a shorter reference count as misses.
- **exact extraction** (Carlini et al. 2023): ``exact_k`` = all ``n_compared`` positions match;
  ``exact_full`` = the generation reproduces the whole encoded reference (EOS included); NA when the
  reference is longer than the generation budget (it could not be reproduced within it).
- **approximate memorization** (Ippolito et al. 2023): ``rouge_l`` = ROUGE-L F in [0, 1]
  (:func:`kdprivacy.memorization.utility.rouge_l`, ``rouge-score`` tokenization) between the decoded generation and the
  true response text; ``approx_memorized = rouge_l >= rouge_threshold`` (default 0.5). When ``max_length``
  truncated the encoded reference (no final EOS), the reference text is the decoded truncated reference:
  the part a model was trained on, as for the token metrics.
- **private specifics** (data with ``secret``/``secret_kind`` columns, e.g. the synthetic generator):
  ``secret_hit`` = the example's ``secret`` string occurs verbatim in the decoded generation;
  **canary exposure** (Carlini et al. 2019): the response is scored with the true secret and with each of
  ``C`` candidates of the same format (:func:`kdprivacy.data.synthetic.secret_candidates`, seeded per example,
  excluding the true secret) substituted for every occurrence of the secret; score = total log-probability
  of the response tokens (EOS included) given the prompt, computed only when no variant is truncated by
  ``max_length``; ``secret_rank`` = 1 + #candidates scoring higher + #ties / 2 (1 = the true secret is the
  most likely); ``exposure = log2(C + 1) - log2(secret_rank)``, which is capped at ``log2(C + 1)`` (a
  secret above every candidate has that exposure however far above). ``exposure_extrapolated`` is Carlini
  et al.'s estimate of the exposure over the whole secret space (their section 4.3, distribution fitting):
  a skew-normal fitted to the ``C`` candidates' scores, ``-log2 Pr(candidate score >= true score)`` under
  the fit; not capped; NaN below :data:`MIN_EXTRAPOLATION_CANDIDATES` candidates or when they all score
  the same.
  ``secret_in_prompt`` flags examples whose secret appears in the instruction or context (closed QA,
  information extraction, summarization...): reproducing it there is copying, not memorization;
  ``secret_in_reference`` says whether the secret survives in the (possibly ``max_length``-truncated)
  reference text, i.e. whether a model could have been trained on it. Summaries of secret metrics use only
  the *learnable* examples (subset ``secret_learnable``: in the reference, not in the prompt); the others
  stay in the per-example table (in-prompt secrets are a positive control; their exposure is only computed
  with ``exposure_in_prompt``, as it costs ``C + 1`` scoring passes per example). Without secret columns
  these metrics are skipped (NA) and the reason is logged.

Decoding (pitfalls.md): the plain argmax of :mod:`kdprivacy.generation`'s decode loop, which calls the
model's forward itself, so no processor a saved ``generation_config`` might switch on (``no_repeat_ngram_size``
blocks verbatim reproduction) is ever applied. Generations are cut after their first EOS (kept); what
follows it is never compared.

Per-example table (:data:`MEMORIZATION_COLUMNS`, input order):

======================  ========  =========================================================================
column                  dtype     meaning
======================  ========  =========================================================================
id                      str       example id
n_reference             int64     tokens of the encoded reference response (EOS included unless truncated)
n_generated             int64     generated tokens (cut after the first EOS, EOS included)
n_compared              int64     ``min(k, n_reference)`` (``k`` with ``positions="fixed"``)
n_matched               int64     positions among the first ``n_compared`` where generation == reference
match_rate              float64   ``n_matched / n_compared`` (the paper's memorization accuracy per example)
exact_k                 bool      all ``min(k, n_reference)`` positions match
exact_full              boolean   generation == whole reference; NA when ``n_reference`` > generation budget
rouge_l                 float64   ROUGE-L F in [0, 1], decoded generation vs true response text
approx_memorized        bool      ``rouge_l >= rouge_threshold``
secret_in_prompt        boolean   the secret occurs in instruction or context; NA without a secret
secret_in_reference     boolean   the secret occurs in the reference text (after truncation); NA without one
secret_hit              boolean   the secret occurs in the decoded generation; NA without a secret
secret_rank             float64   average rank of the true secret among ``C + 1`` (NaN when not computed)
exposure                float64   ``log2(C + 1) - log2(secret_rank)``, capped at ``log2(C + 1)`` (or NaN)
exposure_extrapolated   float64   ``-log2 P(score >= true)``, skew-normal fit of the candidates' scores (or NaN)
n_candidates            int64     ``C`` for this example (0 when exposure was not computed)
generation              str       the decoded greedy generation
======================  ========  =========================================================================
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from kdprivacy import data, encoding, generation, stats
from kdprivacy.config import Memorization
from kdprivacy.data.synthetic import secret_candidates
from kdprivacy.encoding import Encoded
from kdprivacy.memorization import utility
from kdprivacy.mia import scoring

log = logging.getLogger(__name__)

MEMORIZATION_COLUMNS = [
    "id", "n_reference", "n_generated", "n_compared", "n_matched", "match_rate", "exact_k", "exact_full",
    "rouge_l", "approx_memorized", "secret_in_prompt", "secret_in_reference", "secret_hit", "secret_rank",
    "exposure", "exposure_extrapolated", "n_candidates", "generation",
]
_DTYPES = {
    "n_reference": "int64", "n_generated": "int64", "n_compared": "int64", "n_matched": "int64",
    "match_rate": "float64", "exact_k": bool, "exact_full": "boolean", "rouge_l": "float64",
    "approx_memorized": bool, "secret_in_prompt": "boolean", "secret_in_reference": "boolean",
    "secret_hit": "boolean", "secret_rank": "float64", "exposure": "float64",
    "exposure_extrapolated": "float64", "n_candidates": "int64", "generation": object,
}

# keyword defaults of the library calls: the config's defaults (their one home)
DEFAULT_K = Memorization.model_fields["first_k"].default
DEFAULT_ROUGE_THRESHOLD = Memorization.model_fields["rouge_threshold"].default
DEFAULT_N_CANDIDATES = Memorization.model_fields["n_candidates"].default

# (metric, column, subset) rows of :func:`memorization_summary`. Subset "secret_learnable": only examples
# whose secret is in the reference and not in the prompt (see the module docstring).
SUMMARY_METRICS = (
    ("match_rate", "match_rate", "all"),
    ("exact_k", "exact_k", "all"),
    ("exact_full", "exact_full", "all"),
    ("rouge_l", "rouge_l", "all"),
    ("approx_memorized", "approx_memorized", "all"),
    ("secret_hit", "secret_hit", "secret_learnable"),
    ("exposure", "exposure", "secret_learnable"),
    ("exposure_extrapolated", "exposure_extrapolated", "secret_learnable"),
    ("secret_rank", "secret_rank", "secret_learnable"),
)
SUMMARY_COLUMNS = [
    "metric", "subset", "member_rate", "member_ci_low", "member_ci_high", "nonmember_rate",
    "nonmember_ci_low", "nonmember_ci_high", "gap", "gap_ci_low", "gap_ci_high", "n_members", "n_nonmembers",
]


# ----------------------------------------------------------------------------------------------- generation
def generation_budget(items: Sequence[Encoded], k: int, max_new_tokens: int | None = None) -> int:
    """New tokens to generate: ``max(k, longest reference)``, the reference capped by ``max_new_tokens``."""
    if k < 1:
        raise ValueError("k must be >= 1")
    longest = max((len(item.response_ids) for item in items), default=1)
    if max_new_tokens is not None:
        if max_new_tokens < 1:
            raise ValueError("max_new_tokens must be >= 1 or None")
        longest = min(longest, int(max_new_tokens))
    return max(int(k), longest)


# ----------------------------------------------------------------------------------------------- metrics
MATCH_POSITIONS = ("reference", "fixed")
DEFAULT_MATCH_POSITIONS = Memorization.model_fields["match_positions"].default


def positional_match(
    generated: Sequence[int], reference: Sequence[int], k: int, positions: str = DEFAULT_MATCH_POSITIONS
) -> tuple[int, int]:
    """``(n_compared, n_matched)`` over the first ``min(k, len(reference))`` reference positions.

    ``positions="fixed"``: ``n_compared = k`` (the authors' fixed window; positions past the reference are
    misses), the matches counted as above.
    """
    if k < 1:
        raise ValueError("k must be >= 1")
    if positions not in MATCH_POSITIONS:
        raise ValueError(f"positions must be one of {MATCH_POSITIONS}, got {positions!r}")
    n_reference = min(k, len(reference))
    n_matched = sum(
        1 for position in range(min(n_reference, len(generated))) if generated[position] == reference[position]
    )
    return (int(k) if positions == "fixed" else n_reference), n_matched


def token_metrics(
    generated: Sequence[int], reference: Sequence[int], k: int, budget: int | None = None,
    positions: str = DEFAULT_MATCH_POSITIONS,
) -> dict:
    """Token-level metrics of one example (``n_reference`` ... ``exact_full``; see the module docstring).

    ``generated`` is already cut after its first EOS. ``budget`` is the generation budget (None = unlimited).
    ``positions``: :func:`positional_match`'s window (``exact_k`` is over the reference's positions either way).
    """
    generated, reference = list(generated), list(reference)
    n_compared, n_matched = positional_match(generated, reference, k, positions)
    if budget is not None and len(reference) > budget:
        exact_full = pd.NA
    else:
        exact_full = len(generated) >= len(reference) and generated[: len(reference)] == reference
    return {
        "n_reference": len(reference),
        "n_generated": len(generated),
        "n_compared": n_compared,
        "n_matched": n_matched,
        "match_rate": n_matched / n_compared if n_compared else float("nan"),
        "exact_k": n_compared > 0 and n_matched == min(k, len(reference)),
        "exact_full": exact_full,
    }


def text_metrics(generation: str, reference: str, rouge_threshold: float = DEFAULT_ROUGE_THRESHOLD,
                 stemmer: utility.Stemmer | None = None) -> dict:
    """``rouge_l`` (F in [0, 1]) and ``approx_memorized`` (``rouge_l >= rouge_threshold``)."""
    if not 0 <= rouge_threshold <= 1:
        raise ValueError(f"rouge_threshold must be in [0, 1], got {rouge_threshold}")
    score = utility.rouge_l(generation, reference, stemmer)
    return {"rouge_l": score, "approx_memorized": score >= rouge_threshold}


def has_secret(secret) -> bool:
    return isinstance(secret, str) and secret != ""


def secret_metrics(generation: str, secret, instruction: str = "", context: str = "",
                   reference: str | None = None) -> dict:
    """``secret_in_prompt``, ``secret_in_reference`` (NA when ``reference`` is None) and ``secret_hit``.

    Verbatim, case-sensitive substring tests; all NA without a secret.
    """
    if not has_secret(secret):
        return {"secret_in_prompt": pd.NA, "secret_in_reference": pd.NA, "secret_hit": pd.NA}
    return {
        "secret_in_prompt": secret in instruction or secret in context,
        "secret_in_reference": pd.NA if reference is None else secret in reference,
        "secret_hit": secret in generation,
    }


def reference_text(tokenizer, item: Encoded, response: str) -> str:
    """The true response text, or the decoded encoded reference when ``max_length`` truncated it."""
    if item.response_ids and item.response_ids[-1] == tokenizer.eos_token_id:
        return response
    return utility.decode_generation(tokenizer, item.response_ids)


def exposure_from_scores(true_score: float, candidate_scores) -> tuple[float, float]:
    """``(rank, exposure)`` of the true secret among ``C`` candidates (higher score = more likely).

    ``rank = 1 + #(candidates > true) + #(candidates == true) / 2``; ``exposure = log2(C + 1) - log2(rank)``,
    from 0 (least likely of all) to ``log2(C + 1)`` (most likely).
    """
    candidates = np.asarray(candidate_scores, dtype=np.float64).ravel()
    if candidates.size == 0:
        raise ValueError("need at least one candidate")
    if math.isnan(true_score) or np.isnan(candidates).any():
        raise ValueError("NaN likelihood score")
    rank = 1.0 + float((candidates > true_score).sum()) + float((candidates == true_score).sum()) / 2.0
    return rank, math.log2(candidates.size + 1) - math.log2(rank)


MIN_EXTRAPOLATION_CANDIDATES = 10


def extrapolated_exposure(true_score: float, candidate_scores) -> float:
    """Carlini et al. (2019, section 4.3) exposure by distribution fitting: a skew-normal fitted (maximum
    likelihood, ``scipy.stats.skewnorm``) to the candidates' scores, ``-log2`` of its probability that a
    candidate scores at least ``true_score`` (higher score = more likely). Not capped at ``log2(C + 1)``;
    NaN with fewer than :data:`MIN_EXTRAPOLATION_CANDIDATES` candidates or when they all score the same."""
    from scipy import stats as scipy_stats

    candidates = np.asarray(candidate_scores, dtype=np.float64).ravel()
    if math.isnan(true_score) or np.isnan(candidates).any():
        raise ValueError("NaN likelihood score")
    if candidates.size < MIN_EXTRAPOLATION_CANDIDATES or np.ptp(candidates) == 0:
        return math.nan
    shape, loc, scale = scipy_stats.skewnorm.fit(candidates)
    return float(max(0.0, -scipy_stats.skewnorm.logsf(true_score, shape, loc, scale) / math.log(2)))


def example_candidate_seed(seed: int, example_id: str) -> int:
    """Seed of an example's candidate draw: stable in the run seed and the example id, not in its position."""
    return int(hashlib.sha256(f"{int(seed)}:{example_id}".encode()).hexdigest()[:15], 16)


def canary_exposure(
    model,
    tokenizer,
    frame: pd.DataFrame,
    n_candidates: int,
    seed: int,
    batch_size: int,
    max_length: int,
    max_prompt_length: int,
    include_in_prompt: bool = False,
    examples_per_pass: int = 16,
) -> pd.DataFrame:
    """``id, secret_rank, exposure, exposure_extrapolated, n_candidates`` per row of ``frame`` (module
    docstring).

    ``frame`` has ``id, instruction, context, response, secret, secret_kind``. Rows are NaN (``n_candidates``
    0) when the secret is empty, does not occur in the response, is of a kind without a candidate drawer,
    or when ``max_length`` truncates the response with the secret or with any candidate (a truncated
    variant is scored on fewer tokens, so the totals would not be comparable); reasons are logged as counts.
    Examples whose secret is in the instruction or context are skipped unless ``include_in_prompt`` (a
    positive control: copying, not memorization). Cost: ``C + 1`` scoring passes per scored example.
    """
    if n_candidates < 1:
        raise ValueError("n_candidates must be >= 1")
    results = {example_id: (math.nan, math.nan, 0, math.nan) for example_id in frame["id"]}
    skipped: dict[str, int] = {}
    pending: list[tuple[str, list[Encoded]]] = []

    def flush() -> None:
        items = [variant for _, variants in pending for variant in variants]
        scored = scoring.score_examples(model, items, scoring.ScoringPass(batch_size, tokenizer.pad_token_id))
        totals = [float(np.sum(np.asarray(v, dtype=np.float64))) for v in scored["token_logprobs"]]
        offset = 0
        for example_id, variants in pending:
            scores = totals[offset : offset + len(variants)]
            offset += len(variants)
            rank, exposure = exposure_from_scores(scores[0], scores[1:])
            results[example_id] = (rank, exposure, len(variants) - 1,
                                   extrapolated_exposure(scores[0], scores[1:]))
        pending.clear()

    for row in frame.itertuples(index=False):
        secret, kind = getattr(row, "secret", None), getattr(row, "secret_kind", None)
        if not has_secret(secret):
            skipped["no secret"] = skipped.get("no secret", 0) + 1
            continue
        if secret not in row.response:
            skipped["secret not in the response"] = skipped.get("secret not in the response", 0) + 1
            continue
        if not include_in_prompt and (secret in row.instruction or secret in row.context):
            reason = "secret in the prompt (copying, not memorization; include_in_prompt scores it)"
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        try:
            candidates = secret_candidates(
                kind, n_candidates, example_candidate_seed(seed, row.id), exclude=[secret]
            )
        except data.DataError as err:
            reason = f"no candidates ({err})"
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        prompt = encoding.format_prompt(row.instruction, row.context)
        variants = [
            encoding.encode_example(tokenizer, f"{row.id}#{j}", prompt,
                                    row.response.replace(secret, value), max_length, max_prompt_length)
            for j, value in enumerate([secret, *candidates])
        ]
        eos = tokenizer.eos_token_id
        if any(not v.response_ids or v.response_ids[-1] != eos for v in variants):
            # a truncated variant would be scored on fewer tokens (a higher total): totals not comparable
            reason = "the response with the secret or a candidate is truncated by max_length"
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        if any(v.response_ids == variants[0].response_ids for v in variants[1:]):
            reason = "a candidate encodes exactly like the true secret"
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        pending.append((row.id, variants))
        if len(pending) >= examples_per_pass:
            flush()
    if pending:
        flush()
    for reason, count in skipped.items():
        log.info("canary exposure not computed for %d example(s): %s", count, reason)
    ids = list(frame["id"])
    out = pd.DataFrame(
        {
            "id": ids,
            "secret_rank": [results[i][0] for i in ids],
            "exposure": [results[i][1] for i in ids],
            "exposure_extrapolated": [results[i][3] for i in ids],
            "n_candidates": [results[i][2] for i in ids],
        }
    )
    return out.astype({"secret_rank": "float64", "exposure": "float64", "exposure_extrapolated": "float64",
                       "n_candidates": "int64"})


def frame_has_secrets(frame: pd.DataFrame) -> bool:
    return "secret" in frame.columns and "secret_kind" in frame.columns


def memorization_table(
    model,
    tokenizer,
    frame: pd.DataFrame,
    k: int = DEFAULT_K,
    batch_size: int = 32,
    max_length: int = 512,
    max_prompt_length: int = 256,
    rouge_threshold: float = DEFAULT_ROUGE_THRESHOLD,
    n_candidates: int = DEFAULT_N_CANDIDATES,
    candidate_seed: int = 0,
    max_new_tokens: int | None = None,
    stemmer: utility.Stemmer | None = None,
    exposure_in_prompt: bool = False,
    match_positions: str = DEFAULT_MATCH_POSITIONS,
) -> pd.DataFrame:
    """Every memorization metric of every row of ``frame`` from one greedy pass (``MEMORIZATION_COLUMNS``).

    ``frame``: ``id, instruction, context, response`` (+ ``secret, secret_kind``), e.g. the shared
    :func:`kdprivacy.mia.scoring.evaluation_set`. ``n_candidates = 0`` skips canary exposure; ``exposure_in_prompt``
    also scores examples whose secret is in the prompt (:func:`canary_exposure`); ``match_positions``:
    :func:`positional_match`'s window. Rows in input order.
    """
    if frame["id"].duplicated().any():
        raise ValueError("example ids are not unique")
    items = encoding.encode_frame(tokenizer, frame, max_length, max_prompt_length)
    budget = generation_budget(items, k, max_new_tokens)
    log.info("greedy generation of %d examples, up to %d new tokens", len(items), budget)
    generated = generation.generate(model, items, max_new_tokens=budget, batch_size=batch_size,
                                    pad_id=tokenizer.pad_token_id, eos_id=tokenizer.eos_token_id,
                                    sampling=generation.GREEDY)
    texts = [utility.decode_generation(tokenizer, tokens) for tokens in generated]
    secrets = frame_has_secrets(frame)
    if not secrets:
        log.info("no 'secret'/'secret_kind' columns in the data: secret hit rate and canary exposure skipped")
    rows = []
    for row, item, tokens, text in zip(frame.itertuples(index=False), items, generated, texts):
        secret = row.secret if secrets else None
        reference = reference_text(tokenizer, item, row.response)
        rows.append({
            "id": item.id,
            **token_metrics(tokens, item.response_ids, k, budget, match_positions),
            **text_metrics(text, reference, rouge_threshold, stemmer),
            **secret_metrics(text, secret, row.instruction, row.context, reference),
            "generation": text,
        })
    table = pd.DataFrame(rows)
    if secrets and n_candidates > 0:
        exposure = canary_exposure(model, tokenizer, frame, n_candidates, candidate_seed, batch_size,
                                   max_length, max_prompt_length, include_in_prompt=exposure_in_prompt)
        table = table.merge(exposure, on="id", how="left", validate="one_to_one")
    else:
        if secrets:
            log.info("n_candidates = 0: canary exposure skipped")
        table = table.assign(secret_rank=math.nan, exposure=math.nan, exposure_extrapolated=math.nan,
                             n_candidates=0)
    return table[MEMORIZATION_COLUMNS].astype(_DTYPES)


# ----------------------------------------------------------------------------------------------- summaries
def _values(frame: pd.DataFrame, column: str) -> np.ndarray:
    """Float values of a (possibly nullable) column, NA dropped."""
    values = frame[column].astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)
    return values[~np.isnan(values)]


def _group_stats(members: np.ndarray, nonmembers: np.ndarray, bootstrap: stats.Bootstrap) -> dict:
    def mean(x):
        return float(x.mean()) if x.size else float("nan")

    out = {"member_rate": mean(members), "nonmember_rate": mean(nonmembers)}
    out["gap"] = out["member_rate"] - out["nonmember_rate"]
    if bootstrap.n > 0:
        rng = np.random.default_rng(bootstrap.seed)
        boot_m = stats.bootstrap_means(members, bootstrap.n, rng)
        boot_n = stats.bootstrap_means(nonmembers, bootstrap.n, rng)
        out["member_ci_low"], out["member_ci_high"] = stats.percentile_ci(boot_m, bootstrap.level)
        out["nonmember_ci_low"], out["nonmember_ci_high"] = stats.percentile_ci(boot_n, bootstrap.level)
        out["gap_ci_low"], out["gap_ci_high"] = stats.percentile_ci(boot_m - boot_n, bootstrap.level)
    else:
        for key in ("member", "nonmember", "gap"):
            out[f"{key}_ci_low"] = out[f"{key}_ci_high"] = float("nan")
    out["n_members"], out["n_nonmembers"] = int(members.size), int(nonmembers.size)
    return out


def subset_rows(per_example: pd.DataFrame, subset: str) -> pd.DataFrame:
    """Rows of a summary subset: ``all``, or ``secret_learnable``.

    ``secret_learnable``: ``secret_in_prompt`` False and (when the column exists) ``secret_in_reference``
    True; rows where either is NA are left out.
    """
    if subset == "all":
        return per_example
    if subset == "secret_learnable":
        keep = per_example["secret_in_prompt"].astype("boolean").eq(False).fillna(False)
        if "secret_in_reference" in per_example.columns:
            keep &= per_example["secret_in_reference"].astype("boolean").eq(True).fillna(False)
        return per_example[keep.to_numpy(dtype=bool)]
    raise ValueError(f"unknown subset {subset!r}")


def memorization_summary(
    per_example: pd.DataFrame, bootstrap: stats.Bootstrap = stats.Bootstrap()
) -> pd.DataFrame:
    """Tidy summary, one row per metric (``SUMMARY_COLUMNS``): member / non-member mean, gap, seeded CIs.

    ``*_rate`` is the mean of the metric (a rate for 0/1 metrics; mean exposure and mean rank for those).
    NA values are left out per metric and ``n_members``/``n_nonmembers`` say how many were used; metrics
    whose column is absent are skipped. CIs: percentile bootstrap, members and non-members resampled
    separately, seeded with ``bootstrap.seed``; the gap CI uses the same replicates (NaN when
    ``bootstrap.n == 0``).
    """
    if "label" not in per_example.columns:
        raise ValueError("memorization table lacks column 'label'")
    rows = []
    for metric, column, subset in SUMMARY_METRICS:
        if column not in per_example.columns:
            continue
        if subset == "secret_learnable" and "secret_in_prompt" not in per_example.columns:
            continue
        frame = subset_rows(per_example, subset)
        members = _values(frame[frame["label"] == 1], column)
        nonmembers = _values(frame[frame["label"] == 0], column)
        rows.append({"metric": metric, "subset": subset,
                     **_group_stats(members, nonmembers, bootstrap)})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def summarize_memorization(
    per_example: pd.DataFrame, bootstrap: stats.Bootstrap = stats.Bootstrap()
) -> dict[str, float | int]:
    """The paper's numbers as one flat row: mean match rate of members / non-members, gap, CIs, exact rates.

    Keys: ``member_rate, nonmember_rate, gap`` (member - non-member), ``member_rate_ci_low/high,
    nonmember_rate_ci_low/high, gap_ci_low/high`` (seeded bootstrap; NaN when ``bootstrap.n == 0``),
    ``member_exact_rate, nonmember_exact_rate`` (``exact_k``), ``n_members, n_nonmembers``. A group without
    examples gives NaN rates. Every other metric: :func:`memorization_summary`.
    """
    exact = "exact_k" if "exact_k" in per_example.columns else "exact_prefix"  # tables written before exact_k
    for column in ("label", "match_rate", exact):
        if column not in per_example.columns:
            raise ValueError(f"memorization table lacks column {column!r}")
    members = per_example[per_example["label"] == 1]
    nonmembers = per_example[per_example["label"] == 0]
    group = _group_stats(_values(members, "match_rate"), _values(nonmembers, "match_rate"), bootstrap)
    exact_m, exact_n = _values(members, exact), _values(nonmembers, exact)
    return {
        "member_rate": group["member_rate"],
        "nonmember_rate": group["nonmember_rate"],
        "gap": group["gap"],
        "member_rate_ci_low": group["member_ci_low"],
        "member_rate_ci_high": group["member_ci_high"],
        "nonmember_rate_ci_low": group["nonmember_ci_low"],
        "nonmember_rate_ci_high": group["nonmember_ci_high"],
        "gap_ci_low": group["gap_ci_low"],
        "gap_ci_high": group["gap_ci_high"],
        "member_exact_rate": float(exact_m.mean()) if exact_m.size else float("nan"),
        "nonmember_exact_rate": float(exact_n.mean()) if exact_n.size else float("nan"),
        "n_members": len(members),
        "n_nonmembers": len(nonmembers),
    }
