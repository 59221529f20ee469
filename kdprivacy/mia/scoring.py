"""One forward pass per batch: every token-level statistic the membership attacks need.

For each example, and for each of its *response* tokens ``x_t`` (study.md: scores use response tokens only),
:func:`score_examples` records

- ``token_logprobs``: ``log p(x_t | x_<t)``;
- ``token_mu``: ``mu_t = sum_v p_v log p_v``, the mean of ``log p(.)`` under the model's next-token
  distribution ``p = p(. | x_<t)``;
- ``token_sigma``: ``sigma_t = sqrt(sum_v p_v (log p_v - mu_t)^2)``, its standard deviation (Min-K%++).
  This is the same quantity as ``sqrt(sum_v p_v (log p_v)^2 - mu_t^2)`` but computed in the centred form,
  which does not cancel catastrophically in float32.

Memory is bounded independently of ``batch x seq x vocab``: the final hidden states of the response positions
are gathered first and the LM head + ``log_softmax`` run on chunks of at most ``position_chunk`` positions.
The hidden states are captured with a forward pre-hook on the model's output-embedding module, which also
shrinks the model's own LM-head call to one position; the first batch verifies that the model applies no
post-processing to the LM-head output (e.g. logit soft-capping). Models where that check fails, or whose
LM head is not reachable as a module, fall back to reading the full logits returned by the model (still
gathered at response positions before the chunked ``log_softmax``).

Every example is kept: one with no scorable response token gets ``n_tokens == 0`` and empty lists. The
first token of a sequence is never scorable (nothing predicts it), so a response starting at position 0
loses its first token; the prompt template makes that impossible in practice.

Any causal LM can be scored, whatever its tokenizer: each model tokenizes the same manifest text itself
(:func:`kdprivacy.encoding.encode_frame`), so a reference model with a different vocabulary yields its own
per-token statistics over its own response tokens; per-example quantities (mean NLL) are then comparable
example by example (reference attacks in :mod:`kdprivacy.mia.attacks`), token positions are not.

Short responses are kept and *counted*: :func:`short_counts` reports how many examples have no scored token
(every attack is then NaN and the metrics refuse it loudly) and how many have fewer than ``short_tokens``
(Min-K% reduces to a handful of tokens there; the attacks flag them, the metrics count them as ``n_short``).

:func:`mean_nll` is the lighter variant (target log-probabilities only) used by MoPe's repeated passes. Both
take one :class:`ScoringPass`: how the forward passes run (batch size, padding id, LM-head chunk, head mode,
precision).

Precision (``evaluation.precision``): ``"fp32"`` (default) runs plain float32; ``"bf16"`` / ``"fp16"`` run
each batch's forward and LM-head chunks under ``torch.autocast`` (:func:`kdprivacy.models.autocast`), and
the statistics are still computed in float32 from the upcast 16-bit logits (``logits.float()`` before
``log_softmax``).
:func:`population_set` picks the public/dev examples a calibrated attack (RMIA) compares against.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from kdprivacy import encoding, models
from kdprivacy.config import Attacks
from kdprivacy.encoding import Encoded

log = logging.getLogger(__name__)

SCORE_COLUMNS = ["id", "n_tokens", "token_logprobs", "token_mu", "token_sigma"]
MEMBER_POOL = "private"
NONMEMBER_POOL = "nonmember"
POPULATION_POOLS = ("dev",)
"""Default pools of the RMIA population. ``public`` is allowed but is the students' training data (see
:func:`population_set`); ``private``/``nonmember`` are never allowed."""
DEFAULT_SHORT_TOKENS = Attacks.model_fields["short_tokens"].default  # the config's default
"""A response with fewer scored tokens than this is flagged "short" (Min-K% at k=0.2 then uses one token)."""


# ----------------------------------------------------------------------------------------------------------
# Evaluation set shared by every scoring/generation rule
# ----------------------------------------------------------------------------------------------------------
def _subsample(frame: pd.DataFrame, limit: int | None, rng: np.random.Generator) -> pd.DataFrame:
    frame = frame.sort_values("id", kind="stable").reset_index(drop=True)
    if limit is None or limit >= len(frame):
        return frame
    if limit < 1:
        raise ValueError(f"sample size must be >= 1 or None, got {limit}")
    keep = np.sort(rng.choice(len(frame), size=int(limit), replace=False))
    return frame.iloc[keep].reset_index(drop=True)


def evaluation_set(
    manifest: pd.DataFrame, max_members: int | None, max_nonmembers: int | None, seed: int
) -> pd.DataFrame:
    """Members (pool ``private``, ``label`` 1) then non-members (pool ``nonmember``, ``label`` 0).

    Each group is sorted by id and, when larger than its ``max_*`` (``None`` = all), subsampled without
    replacement with a generator seeded by ``(seed, group)``; the chosen rows stay in id order. The result
    depends only on the manifest content and the arguments, so every model is scored on exactly the same
    examples.
    """
    for column in ("id", "pool"):
        if column not in manifest.columns:
            raise ValueError(f"manifest lacks column {column!r}")
    if manifest["id"].duplicated().any():
        raise ValueError("manifest ids are not unique")
    members_rng, nonmembers_rng = (np.random.default_rng([int(seed), group]) for group in (1, 0))
    members = _subsample(manifest[manifest["pool"] == MEMBER_POOL], max_members, members_rng)
    nonmembers = _subsample(manifest[manifest["pool"] == NONMEMBER_POOL], max_nonmembers, nonmembers_rng)
    if members.empty or nonmembers.empty:
        raise ValueError(
            f"evaluation set needs both pools: {len(members)} members ({MEMBER_POOL!r}), "
            f"{len(nonmembers)} non-members ({NONMEMBER_POOL!r})"
        )
    members = members.assign(label=1)
    nonmembers = nonmembers.assign(label=0)
    return pd.concat([members, nonmembers], ignore_index=True)


def population_set(
    manifest: pd.DataFrame,
    pools: Sequence[str] = POPULATION_POOLS,
    max_examples: int | None = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """The population sample ``z`` of a calibrated attack (RMIA): examples that are neither members nor
    non-members, sorted by id and (when more than ``max_examples``) subsampled with a generator seeded by
    ``(seed, 2)``; rows stay in id order, so every model scores the same population.

    ``pools`` may name ``dev``, ``public`` and ``pretrain`` only. ``dev`` (the default) is unseen by every
    model; ``public`` is the students' (and the No-KD control's) *training* data, so for a student target
    its population examples are training examples -- allowed for the teacher-only analyses, but not the
    default.
    """
    pools = list(pools)
    if not pools:
        raise ValueError("population pools must not be empty")
    forbidden = sorted({MEMBER_POOL, NONMEMBER_POOL} & set(pools))
    if forbidden:
        raise ValueError(
            f"population pools may not include {forbidden}: population examples must be "
            "neither members nor non-members"
        )
    unknown = sorted(set(pools) - {"dev", "public", "pretrain"})
    if unknown:
        raise ValueError(f"unknown population pool(s) {unknown}; allowed: dev, public, pretrain")
    if manifest["id"].duplicated().any():
        raise ValueError("manifest ids are not unique")
    frame = _subsample(
        manifest[manifest["pool"].isin(pools)], max_examples, np.random.default_rng([int(seed), 2])
    )
    if frame.empty:
        raise ValueError(f"the population pools {pools} hold no examples")
    return frame


def short_counts(n_tokens, short_tokens: int = DEFAULT_SHORT_TOKENS) -> dict[str, int]:
    """``{"n_examples", "n_empty" (no scored token), "n_short" (< short_tokens tokens, empty included)}``."""
    n = np.asarray(n_tokens, dtype=np.int64)
    return {
        "n_examples": int(n.size),
        "n_empty": int((n == 0).sum()),
        "n_short": int((n < short_tokens).sum()),
    }


# ----------------------------------------------------------------------------------------------------------
# Token statistics
# ----------------------------------------------------------------------------------------------------------
def token_statistics(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``(logprob of target, mu, sigma)`` per row of ``logits`` ``[n, vocab]`` (computed in float32).

    Vocabulary entries with probability 0 (e.g. logits of ``-inf``) contribute nothing to mu and sigma.
    """
    logp = torch.log_softmax(logits.float(), dim=-1)
    p = logp.exp()
    target_logp = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    positive = p > 0
    mu = torch.where(positive, p * logp, 0.0).sum(-1)
    var = torch.where(positive, p * (logp - mu.unsqueeze(-1)) ** 2, 0.0).sum(-1)
    return target_logp, mu, var.clamp_min(0.0).sqrt()


def inference_device() -> torch.device:
    """The first CUDA device when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_for_inference(path) -> tuple:
    """``(model, tokenizer)`` of a model directory, the model on :func:`inference_device`."""
    tokenizer = models.load_tokenizer(path)
    model = models.load_model(path)
    model.to(inference_device())
    return model, tokenizer


def model_device(model) -> torch.device:
    """Where a model's inputs go (``model.device`` for Hugging Face models, else its first parameter's)."""
    device = getattr(model, "device", None)
    if isinstance(device, torch.device):
        return device
    return next(model.parameters()).device


class _HeadCapture:
    """Forward pre-hook on the LM head: keep the full hidden states, let the model project one position."""

    def __init__(self, head: torch.nn.Module):
        self.head = head
        self.hidden: torch.Tensor | None = None
        self.handle = head.register_forward_pre_hook(self._hook)

    def _hook(self, module, args):
        hidden = args[0]
        self.hidden = hidden
        return (hidden[..., :1, :],) + tuple(args[1:])

    def remove(self) -> None:
        self.handle.remove()


def _forward_hidden(model, head, batch) -> torch.Tensor | None:
    """Final hidden states ``[B, T, H]`` via the LM-head hook, or ``None`` if they cannot be trusted."""
    capture = _HeadCapture(head)
    try:
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
    finally:
        capture.remove()
    hidden = capture.hidden
    if hidden is None or hidden.dim() != 3 or hidden.shape[:2] != batch["input_ids"].shape:
        return None
    logits = getattr(out, "logits", None)
    if logits is None or logits.shape[1] != 1:
        return None
    if not torch.allclose(head(hidden[:, :1]).float(), logits.float(), rtol=1e-4, atol=1e-4):
        return None
    return hidden


@dataclass(frozen=True)
class ScoringPass:
    """How :func:`score_examples` and :func:`mean_nll` run the model: ``batch_size`` items a forward pass,
    right-padded with ``pad_id``.

    ``position_chunk`` bounds how many response positions go through the LM head and ``log_softmax`` at
    once (peak extra memory ~ ``position_chunk x vocab`` floats). ``head_mode``: ``"auto"`` (hidden states
    through the LM head, verified; falls back to full logits) or ``"full"`` (always use the model's logits).
    ``precision``: ``"fp32"`` | ``"bf16"`` | ``"fp16"`` (module docstring).
    """

    batch_size: int
    pad_id: int
    position_chunk: int = 512
    head_mode: str = "auto"
    precision: str = "fp32"


def _iterate_response_statistics(model, items, scoring_pass: ScoringPass, statistic):
    """Run the model over ``items`` and yield ``(item index, tuple of float32 arrays)`` per item.

    ``statistic(logits [n, V], targets [n]) -> tuple of [n] tensors`` is applied chunk by chunk to the
    response positions (see the module docstring for the memory bound). Forward and LM head run under
    :func:`kdprivacy.models.autocast` ``(precision)``, entered per batch (never across a ``yield``).
    """
    batch_size, pad_id, head_mode = scoring_pass.batch_size, scoring_pass.pad_id, scoring_pass.head_mode
    position_chunk, precision = scoring_pass.position_chunk, scoring_pass.precision
    if head_mode not in ("auto", "full"):
        raise ValueError(f"head_mode must be 'auto' or 'full', got {head_mode!r}")
    if batch_size < 1 or position_chunk < 1:
        raise ValueError("batch_size and position_chunk must be >= 1")
    ids = [item.id for item in items]
    if len(set(ids)) != len(ids):
        raise ValueError("item ids are not unique")
    model.eval()
    device = model_device(model)
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    use_head = head_mode == "auto" and isinstance(head, torch.nn.Module)

    models.autocast(precision, device)  # refuse an impossible precision before any work
    with torch.inference_mode():
        for batch_idx in encoding.length_sorted_batches(items, batch_size):
            batch = encoding.collate([items[i] for i in batch_idx], pad_id)
            batch = {k: v.to(device) for k, v in batch.items()}
            with models.autocast(precision, device):
                hidden = _forward_hidden(model, head, batch) if use_head else None
                if use_head and hidden is None:
                    log.warning("LM-head hidden-state capture not usable for this model; using full logits")
                    use_head = False
                if hidden is None:
                    states = model(
                        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False
                    ).logits
                else:
                    states = hidden
                _, targets, target_mask = encoding.shift_for_causal_lm(
                    states, batch["input_ids"], batch["response_mask"]
                )
                rows, cols = target_mask.nonzero(as_tuple=True)  # row-major: each row's positions in order
                gathered = states[rows, cols]  # [N, H] or [N, V]
                gathered_targets = targets[rows, cols]
                parts: list[list[torch.Tensor]] | None = None
                for start in range(0, gathered.shape[0], position_chunk):
                    chunk = gathered[start : start + position_chunk]
                    logits = head(chunk) if hidden is not None else chunk
                    values = statistic(logits, gathered_targets[start : start + position_chunk])
                    if parts is None:
                        parts = [[] for _ in values]
                    for part, value in zip(parts, values):
                        part.append(value.float().cpu())
            counts = torch.bincount(rows, minlength=len(batch_idx)).cpu().tolist()
            flat = [torch.cat(p).numpy().astype(np.float32) for p in parts] if parts else None
            offset = 0
            for slot, n in zip(batch_idx, counts):
                if flat is None:
                    yield slot, None
                else:
                    yield slot, tuple(f[offset : offset + n].copy() for f in flat)
                offset += n


def score_examples(model, items: Sequence[Encoded], scoring_pass: ScoringPass) -> pd.DataFrame:
    """Score the response tokens of ``items``; one row per item, in input order (columns ``SCORE_COLUMNS``).

    ``scoring_pass``: batch size, padding id, LM-head chunk, head mode and precision (:class:`ScoringPass`).
    """
    empty = np.zeros(0, dtype=np.float32)
    results: list[tuple[np.ndarray, ...]] = [(empty, empty, empty)] * len(items)
    for slot, values in _iterate_response_statistics(model, items, scoring_pass, token_statistics):
        if values is not None:
            results[slot] = values
    frame = pd.DataFrame(
        {
            "id": [item.id for item in items],
            "n_tokens": [len(r[0]) for r in results],
            "token_logprobs": [r[0] for r in results],
            "token_mu": [r[1] for r in results],
            "token_sigma": [r[2] for r in results],
        }
    )
    frame["n_tokens"] = frame["n_tokens"].astype("int64")
    return frame[SCORE_COLUMNS]


def _target_logprob(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor]:
    logp = torch.log_softmax(logits.float(), dim=-1)
    return (logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1),)


def mean_nll(model, items: Sequence[Encoded], scoring_pass: ScoringPass) -> np.ndarray:
    """Per-item mean negative log-likelihood of the response tokens (float64; NaN for 0 tokens).

    Same forward pass (``scoring_pass``), masking and precision as :func:`score_examples` without mu/sigma:
    ``-mean(token_logprobs)``.
    """
    out = np.full(len(items), np.nan, dtype=np.float64)
    for slot, values in _iterate_response_statistics(model, items, scoring_pass, _target_logprob):
        if values is not None and values[0].size:
            out[slot] = -float(values[0].astype(np.float64).mean())
    return out
