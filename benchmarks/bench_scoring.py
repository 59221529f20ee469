"""Scoring: every token-level attack from one pass, and the memory of scoring with a 50k vocabulary.

Ours: :func:`kdprivacy.mia.scoring.score_examples` (one forward pass per batch; LM head + chunked log-softmax at
response positions only) followed by :func:`kdprivacy.mia.attacks.compute_attacks` -- exactly what the
``score_model`` and ``attack_metrics`` rules run.

Baselines (written here, never used by the workflow):

- :func:`per_attack_scores`: the authors' structure -- one forward pass over the data *per attack*, each with
  the model's full ``[B, T, V]`` logits and a full-vocabulary log-softmax, keeping only what that attack
  reads; then the same attack functions. Same batches, same batch size, so the difference is the pass
  structure alone.
- :func:`full_vocab_statistics`: the same statistics as ours from one pass, but with ``log_softmax`` (and
  ``p``, ``mu``, ``sigma``) over the whole ``[B, T, V]`` batch at once (the memory baseline).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from benchmarks import common
from benchmarks.common import Row

ATTACKS = ("loss", "min_k", "min_k_pp", "zlib")
MIN_K = 0.2


# --------------------------------------------------------------------------------------------- baselines
def _full_pass(model, items, batch_size: int, pad_id: int, need_moments: bool):
    """One forward pass over ``items`` with full-vocabulary log-softmax over ``[B, T, V]`` per batch.

    Returns per item ``(token_logprobs, token_mu, token_sigma)`` (mu/sigma only when ``need_moments``).
    """
    from kdprivacy import encoding

    empty = np.zeros(0, dtype=np.float32)
    out = [(empty, empty, empty)] * len(items)
    model.eval()
    with torch.inference_mode():
        for idx in encoding.length_sorted_batches(items, batch_size):
            batch = encoding.collate([items[i] for i in idx], pad_id)
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                           use_cache=False).logits
            logp = torch.log_softmax(logits.float(), dim=-1)  # [B, T, V]
            logp, targets, mask = encoding.shift_for_causal_lm(
                logp, batch["input_ids"], batch["response_mask"])
            target_logp = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
            if need_moments:
                p = logp.exp()
                mu = torch.where(p > 0, p * logp, 0.0).sum(-1)
                var = torch.where(p > 0, p * (logp - mu.unsqueeze(-1)) ** 2, 0.0).sum(-1)
                sigma = var.clamp_min(0.0).sqrt()
            for row, slot in enumerate(idx):
                keep = mask[row].bool()
                lp = target_logp[row][keep].numpy().astype(np.float32)
                if need_moments:
                    out[slot] = (lp, mu[row][keep].numpy().astype(np.float32),
                                 sigma[row][keep].numpy().astype(np.float32))
                else:
                    out[slot] = (lp, lp, lp)  # mu/sigma unused by this attack
    return out


def _table(items, values) -> pd.DataFrame:
    return pd.DataFrame({
        "id": [item.id for item in items],
        "n_tokens": np.array([len(v[0]) for v in values], dtype=np.int64),
        "token_logprobs": [v[0] for v in values],
        "token_mu": [v[1] for v in values],
        "token_sigma": [v[2] for v in values],
    })


def per_attack_scores(model, items, texts, batch_size: int, pad_id: int) -> pd.DataFrame:
    """Baseline: one full-vocabulary forward pass per attack, then the library's attack function."""
    from kdprivacy.mia import attacks

    frames = []
    for name in ATTACKS:
        values = _full_pass(model, items, batch_size, pad_id, need_moments=(name == "min_k_pp"))
        frames.append(attacks.compute_attacks(_table(items, values), texts, [name], min_k=MIN_K))
    return pd.concat(frames, ignore_index=True)


def full_vocab_statistics(model, items, batch_size: int, pad_id: int) -> pd.DataFrame:
    """Baseline for memory: the statistics of ``score_examples`` via log-softmax over the whole batch."""
    return _table(items, _full_pass(model, items, batch_size, pad_id, need_moments=True))


# --------------------------------------------------------------------------------------------- ours
def one_pass_scores(model, items, texts, batch_size: int, pad_id: int) -> pd.DataFrame:
    """Ours: what the workflow runs (score_model + attack_metrics)."""
    from kdprivacy.mia import attacks, scoring

    scores = scoring.score_examples(model, items, scoring.ScoringPass(batch_size, pad_id))
    return attacks.compute_attacks(scores, texts, list(ATTACKS), min_k=MIN_K)


# --------------------------------------------------------------------------------------------- benchmarks
def bench_attacks(mode: dict) -> Row:
    tok = common.tokenizer(mode)
    n = int(mode["score_n"])
    items = common.items(mode, n)
    texts = common.texts_of(n)
    model = common.model(mode, mode["teacher"])
    bs, pad = int(mode["score_batch"]), tok.pad_token_id
    results = {}

    def ours():
        results["ours"] = one_pass_scores(model, items, texts, bs, pad)

    def baseline():
        results["baseline"] = per_attack_scores(model, items, texts, bs, pad)

    def warm():  # first-call costs (lazy imports, allocator) on a slice, untimed
        one_pass_scores(model, items[:4], texts, bs, pad)
        per_attack_scores(model, items[:4], texts, bs, pad)

    times = common.interleaved({"ours": ours, "baseline": baseline}, int(mode["repeats"]),
                               warm if mode["warmup"] else False)
    t_ours, t_base = common.median(times["ours"]), common.median(times["baseline"])
    _, best = common.ratios(times, "baseline", "ours")
    a = results["ours"].sort_values(["attack", "id"])["score"].to_numpy()
    b = results["baseline"].sort_values(["attack", "id"])["score"].to_numpy()
    diff = float(np.nanmax(np.abs(a - b)))
    ratio = t_base / t_ours
    n_tokens = sum(len(i.response_ids) for i in items)
    return Row(
        item="scoring all token-level attacks (loss, min_k, min_k_pp, zlib)",
        ours=f"{common.fmt_s(t_ours)} (1 pass)",
        baseline=f"{common.fmt_s(t_base)} ({len(ATTACKS)} passes)",
        ratio=ratio, ratio_text=common.speedup(ratio),
        goal=">= 4x faster", met=common.met(ratio >= 4.0),
        notes=[
            f"{n} examples ({n_tokens} response tokens), batch {bs}, teacher-size gpt2 "
            f"{mode['teacher']['n_layer']}x{mode['teacher']['d_model']}, vocab {len(tok)}",
            f"ours {common.spread(times['ours'])}; baseline {common.spread(times['baseline'])}; "
            f"best-of-n ratio {best:.2f}x",
            f"same scores: max |ours - baseline| = {diff:.2e}",
        ],
    )


def memory_probe_params(mode: dict, impl: str) -> dict:
    return {
        "impl": impl, "vocab": int(mode["mem_vocab"]), "spec": mode["mem_spec"], "n": int(mode["mem_n"]),
        "batch": int(mode["mem_batch"]), "length": int(mode["mem_length"]),
    }


def row_memory(mode: dict, ours: dict, base: dict) -> Row:
    b, t, v = int(mode["mem_batch"]), int(mode["mem_length"]), int(mode["mem_vocab"])
    bt_v = b * t * v * 4 / 2**20
    return common.peak_memory_row(f"scoring peak memory, {v // 1000}k vocabulary", ours, base, [
        f"batch {b} x {t} tokens x vocab {v}: one [B,T,V] float32 tensor = {common.fmt_mb(bt_v)}; "
        f"ours chunks 512 response positions (one [512,V] float32 = "
        f"{common.fmt_mb(512 * v * 4 / 2**20)})",
        f"peak RSS above the loaded model, one fresh process per variant "
        f"({'VmHWM reset' if ours.get('hwm_reset') else 'ru_maxrss'}); time of that single pass: "
        f"ours {common.fmt_s(ours['seconds'])}, baseline {common.fmt_s(base['seconds'])}",
        f"same statistics: |sum of token log-probs, ours - baseline| = "
        f"{abs(ours['checksum'] - base['checksum']):.2e} (of {abs(base['checksum']):.4g})",
    ])
