"""Student/teacher generation: batched with a KV cache (ours) vs one prompt at a time.

Ours: :func:`kdprivacy.generation.generate` (SeqKD teacher outputs, on-policy student samples), batched,
left-padded, one KV cache per batch (also the memorization and utility rules' greedy decoder); and
:func:`hf_greedy` (Hugging Face ``generate``, batched), for comparison.

Baseline (written here): one prompt at a time, greedy, with a KV cache (the authors' per-example
``generate`` calls) -- so the ratio isolates batching; decoding is the same plain argmax on both sides and
the tokens are compared.
"""

from __future__ import annotations

import torch

from benchmarks import common
from benchmarks.common import Row


def unbatched_greedy(model, items, max_new_tokens: int, eos_id: int | None) -> list[tuple[int, ...]]:
    """Baseline: for each prompt alone, prefill then one token per step with the model's KV cache."""
    import inspect

    cache = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    out = []
    model.eval()
    with torch.inference_mode():
        for item in items:
            ids = torch.tensor([item.prompt_ids], dtype=torch.long)
            result = model(input_ids=ids, use_cache=True)
            past, tokens = getattr(result, cache), []
            for _ in range(max_new_tokens):
                token = int(result.logits[0, -1].argmax())
                tokens.append(token)
                if token == eos_id or len(tokens) == max_new_tokens:
                    break
                result = model(input_ids=torch.tensor([[token]]), use_cache=True, **{cache: past})
                past = getattr(result, cache)
            out.append(tuple(tokens))
    return out


def hf_greedy(model, items, max_new_tokens: int, batch_size: int, pad_id: int, eos_id: int | None):
    """Hugging Face's batched greedy ``generate`` on left-padded prompts, shortest first."""
    from kdprivacy import encoding, generation

    order = sorted(range(len(items)), key=lambda i: len(items[i].prompt_ids))
    results = [None] * len(items)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = encoding.collate_prompts([items[i] for i in idx], pad_id)
            out = model.generate(**batch, max_new_tokens=max_new_tokens, pad_token_id=pad_id, eos_token_id=eos_id,
                                 do_sample=False, num_beams=1)
            for slot, tokens in zip(idx, out[:, batch["input_ids"].shape[1] :].tolist()):
                results[slot] = generation.cut_after_eos(tokens, eos_id)
    return results


def bench_generation(mode: dict) -> list[Row]:
    from kdprivacy import generation

    tok = common.tokenizer(mode)
    n, bs, new = int(mode["gen_n"]), int(mode["gen_batch"]), int(mode["gen_new_tokens"])
    items = common.items(mode, n, seed=13)
    model = common.model(mode, mode["teacher"], seed=3)
    pad, eos = tok.pad_token_id, tok.eos_token_id
    out = {}

    def warm():
        generation.generate(model, items[:2], 2, bs, pad, eos, generation.GREEDY)
        hf_greedy(model, items[:2], 2, bs, pad, eos)
        unbatched_greedy(model, items[:2], 2, eos)

    times = common.interleaved({
        "ours": lambda: out.__setitem__("ours", generation.generate(
            model, items, new, bs, pad, eos, generation.GREEDY)),
        "memorization": lambda: out.__setitem__("memorization", hf_greedy(
            model, items, new, bs, pad, eos)),
        "baseline": lambda: out.__setitem__("baseline", unbatched_greedy(model, items, new, eos)),
    }, int(mode["repeats"]), warm if mode["warmup"] else False)
    base_tokens = sum(len(t) for t in out["baseline"])
    t_base = common.median(times["baseline"])
    rows = []
    for key, label in (("ours", "generation.generate"), ("memorization", "Hugging Face generate")):
        toks = sum(len(t) for t in out[key])
        same = sum(tuple(a) == tuple(b) for a, b in zip(out[key], out["baseline"], strict=True))
        t = common.median(times[key])
        ratio = (toks / t) / (base_tokens / t_base)
        best = (toks / min(times[key])) / (base_tokens / min(times["baseline"]))
        rows.append(Row(
            item=f"generation, greedy ({label})",
            ours=f"{toks / t:.0f} tok/s (batch {bs})",
            baseline=f"{base_tokens / t_base:.0f} tok/s (1 prompt at a time)",
            ratio=ratio, ratio_text=f"{ratio:.1f}x tokens/s", goal="batched + KV cache; state ratio",
            met=common.met(ratio > 1.0),
            notes=[
                f"{n} prompts, {new} new tokens max, teacher-size gpt2 {mode['teacher']['n_layer']}x"
                f"{mode['teacher']['d_model']} (random init), both sides use a KV cache",
                f"{label} {common.spread(times[key])}; baseline {common.spread(times['baseline'])}; "
                f"best-of-n ratio {best:.1f}x; {same}/{n} generations identical to the baseline's",
            ],
        ))
    return rows
