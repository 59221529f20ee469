"""One memory variant in a fresh process: ``python -m benchmarks.probe NAME PARAMS_JSON`` -> one JSON line.

The process prepares its inputs, frees what it can, resets its peak RSS (Linux ``/proc/self/clear_refs``; if
that is refused, ``ru_maxrss`` is used and the preparation is kept small), runs exactly one variant and
reports ``extra_mb`` = peak RSS during the variant minus RSS just before it.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

import numpy as np
import torch

from benchmarks import common


def _random_items(n: int, length: int, vocab: int, seed: int = 0):
    from kdprivacy.encoding import Encoded

    rng = np.random.default_rng(seed)
    half = length // 2
    return [
        Encoded(f"r{i:04d}", tuple(int(x) for x in rng.integers(2, vocab, half)),
                tuple(int(x) for x in rng.integers(2, vocab, length - half)))
        for i in range(n)
    ]


def _gpt2(spec: dict, vocab: int, length: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=vocab, n_positions=max(length, 8), n_embd=spec["d_model"],
                        n_layer=spec["n_layer"], n_head=spec["n_head"], bos_token_id=0, eos_token_id=0,
                        pad_token_id=1)
    return GPT2LMHeadModel(config).eval()


def _measure(fn) -> dict:
    common.release_memory()
    reset = common.reset_peak_rss()
    before = common.rss_mb()
    started = time.perf_counter()
    value = fn()
    seconds = time.perf_counter() - started
    peak = common.peak_rss_mb()
    return {"extra_mb": peak - before, "rss_before_mb": before, "peak_mb": peak, "seconds": seconds,
            "hwm_reset": reset, "value": value}


def score_memory(params: dict) -> dict:
    """Scoring with a large vocabulary: ours (chunked) or the full-vocabulary baseline."""
    from benchmarks import bench_scoring
    from kdprivacy.mia import scoring

    items = _random_items(params["n"], params["length"], params["vocab"])
    model = _gpt2(params["spec"], params["vocab"], params["length"])
    with torch.inference_mode():  # build the model's lazily created state outside the measurement
        model(input_ids=torch.zeros((1, 4), dtype=torch.long))
    if params["impl"] == "ours":
        def run():
            table = scoring.score_examples(model, items, scoring.ScoringPass(params["batch"], pad_id=1))
            return float(sum(float(np.sum(v, dtype=np.float64)) for v in table["token_logprobs"]))
    else:
        def run():
            table = bench_scoring.full_vocab_statistics(model, items, params["batch"], pad_id=1)
            return float(sum(float(np.sum(v, dtype=np.float64)) for v in table["token_logprobs"]))
    out = _measure(run)
    out["checksum"] = out.pop("value")
    return out


def mope_memory(params: dict) -> dict:
    """MoPe with the model loaded from disk: in place (ours) or reloaded per perturbation (baseline)."""
    from benchmarks import bench_mope

    items = _random_items(params["n"], params["length"], params["vocab"])
    labels = np.array([1, 0] * (len(items) // 2))
    with tempfile.TemporaryDirectory(prefix="kdp-probe-") as tmp:
        model = _gpt2(params["spec"], params["vocab"], params["length"])
        model_mb = common.n_params(model) * 4 / 2**20
        model.save_pretrained(tmp)
        del model
        from kdprivacy import models

        models.load_model(tmp)  # import the loading code path before the measurement
        k, impl = params["k"], params["impl"]
        batch, sigma, block_sigma = params["batch"], bench_mope.SIGMA, bench_mope.BLOCK_SIGMA
        runs = {
            "plain": lambda: bench_mope.plain_scoring(tmp, items, batch, 1),
            "inplace": lambda: bench_mope.inplace_mope(tmp, items, k, sigma, 0, batch, 1),
            "reload": lambda: bench_mope.reload_mope(tmp, items, k, sigma, 0, batch, 1),
            "block_inplace": lambda: bench_mope.inplace_block_mope(
                tmp, items, labels, k, block_sigma, 0, batch, 1, blocks=[0]),
            "block_reload": lambda: bench_mope.reload_block_mope(
                tmp, items, labels, k, block_sigma, 0, batch, 1, blocks=[0]),
        }
        out = _measure(runs[impl])
    out.pop("value")
    out["model_mb"] = model_mb
    return out


def lens_memory(params: dict) -> dict:
    """Per-block logit lens with a large vocabulary: one hooked pass (ours) or a full pass per block."""
    from benchmarks import bench_blocks

    items = _random_items(params["n"], params["length"], params["vocab"])
    model = _gpt2(params["spec"], params["vocab"], params["length"])
    with torch.inference_mode():
        model(input_ids=torch.zeros((1, 4), dtype=torch.long))
    run = bench_blocks.ours if params["impl"] == "ours" else bench_blocks.per_block_passes
    out = _measure(lambda: run(model, items, params["batch"], 1))
    lens, _ = out.pop("value")
    out["checksum"] = float(sum(float(np.nansum(v, dtype=np.float64)) for v in lens.values()))
    return out


def kd_step_memory(params: dict) -> dict:
    """One real-size KD step (benchmarks.realsize)."""
    from benchmarks import realsize

    return realsize.kd_step_memory(params)


PROBES = {"score_memory": score_memory, "mope_memory": mope_memory, "lens_memory": lens_memory,
          "kd_step_memory": kd_step_memory}


def main(argv: list[str]) -> int:
    name, params = argv[0], json.loads(argv[1])
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    torch.set_num_threads(int(os.environ.get("KDP_BENCH_THREADS", torch.get_num_threads())))
    print(json.dumps(PROBES[name](params)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
