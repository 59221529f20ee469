"""Per-block hidden-state signals: one hooked pass for every block (ours) vs one full pass per block.

Ours is :func:`kdprivacy.mia.probes.hidden_state_pass` -- what the ``per_block`` rule runs for the logit lens
and the probe's pooled states: one forward per batch with a hook on every block, the lens (final norm + LM
head) applied to the response positions only, in chunks. The baseline, written here, is the structure one
writes first: for each block a full forward pass with a hook on that block, the final norm and LM head over
the whole ``[B, T, H]`` output (full-vocabulary ``[B, T, V]`` logits), log-softmax, then the same attack
functions. Both must give the same lens scores and pooled states.
"""

from __future__ import annotations

import numpy as np
import torch

from benchmarks import common
from benchmarks.common import Row


def per_block_passes(model, items, batch_size: int, pad_id: int, min_k: float = 0.2):
    """Baseline: for each block, a full pass hooked on that block; full-vocabulary lens logits of its output.
    Returns ({signal: [n_blocks, n] scores}, [n_blocks] pooled [n, H] arrays) -- GPT-2 layout (``ln_f``)."""
    import pandas as pd

    from kdprivacy import encoding
    from kdprivacy.mia import attacks, perturb

    blocks = perturb.find_blocks(model)
    norm, head = model.transformer.ln_f, model.get_output_embeddings()
    context = attacks.AttackContext(texts={}, min_k=min_k, min_k_count="ceil")
    scores = {"lens_loss": [], "lens_min_k_pp": []}
    pooled_all = []
    model.eval()
    for _, block in blocks:
        captured = {}
        handle = block.register_forward_hook(lambda _m, _a, out: captured.__setitem__(
            "h", out[0] if isinstance(out, (tuple, list)) else out))
        stats: dict[int, tuple[np.ndarray, ...]] = {}
        pooled = np.zeros((len(items), model.config.n_embd), np.float32)
        try:
            with torch.inference_mode():
                for idx in encoding.length_sorted_batches(items, batch_size):
                    batch = encoding.collate([items[i] for i in idx], pad_id)
                    model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
                    hidden = captured["h"]
                    mask = batch["response_mask"].unsqueeze(-1).float()
                    pooled[idx] = ((hidden * mask).sum(1) / mask.sum(1)).numpy()
                    logp = torch.log_softmax(head(norm(hidden))[:, :-1].float(), dim=-1)  # [B, T-1, V]
                    p = logp.exp()
                    mu = (p * logp).sum(-1)
                    sigma = (p * (logp - mu.unsqueeze(-1)).pow(2)).sum(-1).sqrt()  # centred, as a variance should be
                    targets = batch["input_ids"][:, 1:]
                    token_lp = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
                    at = batch["response_mask"][:, 1:].bool()
                    for row, slot in enumerate(idx):
                        stats[slot] = tuple(x[row][at[row]].numpy().astype(np.float32) for x in (token_lp, mu, sigma))
        finally:
            handle.remove()
        table = pd.DataFrame({
            "id": [item.id for item in items], "n_tokens": [len(stats[i][0]) for i in range(len(items))],
            "token_logprobs": [stats[i][0] for i in range(len(items))],
            "token_mu": [stats[i][1] for i in range(len(items))],
            "token_sigma": [stats[i][2] for i in range(len(items))],
        })
        scores["lens_loss"].append(attacks.loss_score(table, context))
        scores["lens_min_k_pp"].append(attacks.min_k_pp_score(table, context))
        pooled_all.append(pooled)
    return {k: np.vstack(v) for k, v in scores.items()}, pooled_all


def ours(model, items, batch_size: int, pad_id: int):
    from kdprivacy.mia import probes, scoring

    out = probes.hidden_state_pass(model, items, scoring.ScoringPass(batch_size, pad_id))
    return out.lens, out.features


def bench_blocks(mode: dict) -> Row:
    tok = common.tokenizer(mode)
    n, bs = int(mode["mope_n"]), int(mode["mope_batch"])
    items = common.items(mode, n)
    model = common.model(mode, mode["teacher"])
    pad = tok.pad_token_id
    out = {}

    def warm():
        ours(model, items[:2], bs, pad)
        per_block_passes(model, items[:2], bs, pad)

    times = common.interleaved({
        "ours": lambda: out.__setitem__("ours", ours(model, items, bs, pad)),
        "baseline": lambda: out.__setitem__("baseline", per_block_passes(model, items, bs, pad)),
    }, int(mode["repeats"]), warm if mode["warmup"] else False)
    _, best = common.ratios(times, "baseline", "ours")
    (lens_o, pooled_o), (lens_b, pooled_b) = out["ours"], out["baseline"]
    lens_diff = max(float(np.max(np.abs(lens_o[s] - lens_b[s]))) for s in lens_b)
    pooled_diff = max(float(np.max(np.abs(a - b))) for a, b in zip(pooled_o, pooled_b))
    n_blocks = len(pooled_b)
    t_o, t_b = common.median(times["ours"]), common.median(times["baseline"])
    ratio = t_b / t_o
    goal = 2.0 if n_blocks >= 4 else 1.0
    return Row(
        item=f"per-block logit lens + pooled states ({n_blocks} blocks)",
        ours=f"{common.fmt_s(t_o)} (1 hooked pass)", baseline=f"{common.fmt_s(t_b)} ({n_blocks} full passes)",
        ratio=ratio, ratio_text=common.speedup(ratio), goal=f">= {goal:g}x faster", met=common.met(ratio >= goal),
        notes=[
            f"{n} examples, batch {bs}, gpt2 {mode['teacher']['n_layer']}x{mode['teacher']['d_model']}, vocab "
            f"{len(tok)}; lens = final norm + LM head at every block, then the loss and Min-K%++ attacks; "
            "ours projects the response positions only, chunked; the baseline the whole [B,T,V] per block",
            f"ours {common.spread(times['ours'])}; baseline {common.spread(times['baseline'])}; best-of-n ratio "
            f"{best:.2f}x",
            f"same results: max |lens score diff| = {lens_diff:.1e}, max |pooled state diff| = {pooled_diff:.1e}",
        ],
    )


def memory_probe_params(mode: dict, impl: str) -> dict:
    return {"impl": impl, "vocab": int(mode["mem_vocab"]), "spec": mode["lens_mem_spec"], "n": int(mode["mem_n"]),
            "batch": int(mode["mem_batch"]), "length": int(mode["mem_length"])}


def row_memory(mode: dict, ours_probe: dict, base: dict) -> Row:
    b, t, v = int(mode["mem_batch"]), int(mode["mem_length"]), int(mode["mem_vocab"])
    spec = mode["lens_mem_spec"]
    return common.peak_memory_row(f"per-block logit lens peak memory, {v // 1000}k vocabulary", ours_probe, base, [
        f"gpt2 {spec['n_layer']}x{spec['d_model']}, batch {b} x {t} tokens x vocab {v}: one [B,T,V] float32 "
        f"tensor = {common.fmt_mb(b * t * v * 4 / 2**20)}; one fresh process per variant; time: ours "
        f"{common.fmt_s(ours_probe['seconds'])}, baseline {common.fmt_s(base['seconds'])}",
        f"same lens scores: |sum, ours - baseline| = {abs(ours_probe['checksum'] - base['checksum']):.2e} "
        f"(of {abs(base['checksum']):.4g})",
    ])
