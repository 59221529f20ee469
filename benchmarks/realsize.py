"""KD training at real-model size: ours vs TRL ``GKDTrainer``, throughput, peak memory and utilisation.

    python -m benchmarks.realsize [--quick] [--threads N] [--archs gpt2,llama] [--readme PATH] [--json PATH]

Models (random init: speed does not depend on the weights), teacher -> student, one shared vocabulary:

- ``gpt2``:  GPT-2 small (12 x 768, vocab 50257, 124M parameters) -> 6 x 768 (distilgpt2's shape, 82M)
- ``llama``: SmolLM-135M's LLaMA shape (30 x 576, 9 heads / 3 KV heads, MLP 1536, vocab 49152, tied, 135M)
             -> the same with 15 blocks

Workload: random token ids, every example a 128-token prompt + 128-token response (256 tokens, the
instruction-data shape: loss on the response only), batch 4, AdamW, grad clip 1, cosine, fp32; 1 warm-up
step, then the steady steps are timed (``benchmarks.bench_kd.steady_seconds_per_step``). Sides, interleaved
per repeat: ours (``kd_loss_fn``, the fused chunked path the workflow now runs), ours with ``fused=False``
(the plain full-logits path it replaced; forward KL only) and TRL ``GKDTrainer`` (``lmbda=0``, ``beta=0`` =
forward KL, ``beta=0.5`` = JSD). Equivalence: our loss against TRL's ``generalized_jsd_loss`` on one batch.

Peak memory (``--archs`` first architecture, forward KL): one fresh process per side
(``python -m benchmarks.probe kd_step_memory``): build, one untimed step, reset the peak RSS, one step;
the TRL side is TRL's ``compute_loss`` formula in a plain loop (:class:`benchmarks.bench_kd.GKDComputeLoss`:
the same tensors as ``GKDTrainer``'s loss, without the Trainer), since a Trainer cannot be stopped between
steps to reset the peak.

Teacher-side work at real size (the ``gpt2`` teacher, GPT-2 small; :data:`TEACHER_WORK`), each pair
interleaved and checked for the same numbers:

- scoring: the one-pass scorer + every token-level attack (``bench_scoring.one_pass_scores``, what
  ``score_model`` + ``attack_metrics`` run) vs one full-vocabulary pass per attack (``per_attack_scores``),
  response tokens/s; and the peak memory of one scoring pass, ours (chunked) vs full ``[B, T, V]``
  log-softmax, one fresh process per side (``benchmarks.probe score_memory``);
- greedy generation: ``generation.generate`` (SeqKD outputs, on-policy samples, memorization) vs Hugging
  Face ``generate``, batched the same way, at batch 1, 16 and 64; tokens compared;
- MoPe with the paper's K = 10: forward hooks (ours) vs reloading the checkpoint per perturbation, with one
  reload and one scoring pass timed alongside (they bound the ratio).

Utilisation: model FLOPs per step = 6 N_s + 2 N_t per token over the whole batch (N = parameters incl. the
LM head; the usual MFU convention, counted the same for both sides, so work ours skips -- prompt-position
logits -- is not credited) / seconds per step / the measured fp32 matmul peak of this machine
(``torch.mm`` 2048 x 2048, best of 5, same threads), measured in the same run.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

for _key, _value in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                     "TRANSFORMERS_VERBOSITY": "error", "TRL_EXPERIMENTAL_SILENCE": "1"}.items():
    os.environ.setdefault(_key, _value)

import warnings  # noqa: E402

warnings.filterwarnings("ignore", category=FutureWarning)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks import common  # noqa: E402
from benchmarks.common import Row  # noqa: E402

START, END = "<!-- benchmarks:realsize:start -->", "<!-- benchmarks:realsize:end -->"
COMMAND = "python -m benchmarks.realsize"

ARCHS = {
    "gpt2": {
        "teacher": {"arch": "gpt2", "n_layer": 12, "n_embd": 768, "n_head": 12},
        "student": {"arch": "gpt2", "n_layer": 6, "n_embd": 768, "n_head": 12},
        "vocab": 50257,
        "label": "GPT-2 small 12x768 -> 6x768, vocab 50257",
    },
    "llama": {
        "teacher": {"arch": "llama", "layers": 30, "hidden": 576, "heads": 9, "kv_heads": 3, "mlp": 1536},
        "student": {"arch": "llama", "layers": 15, "hidden": 576, "heads": 9, "kv_heads": 3, "mlp": 1536},
        "vocab": 49152,
        "label": "LLaMA (SmolLM-135M shape) 30x576 -> 15x576, vocab 49152",
    },
}
QUICK_ARCHS = {
    "gpt2": {"teacher": {"arch": "gpt2", "n_layer": 2, "n_embd": 64, "n_head": 2},
             "student": {"arch": "gpt2", "n_layer": 1, "n_embd": 64, "n_head": 2}, "vocab": 5000,
             "label": "quick gpt2"},
    "llama": {"teacher": {"arch": "llama", "layers": 2, "hidden": 64, "heads": 2, "kv_heads": 1, "mlp": 128},
              "student": {"arch": "llama", "layers": 1, "hidden": 64, "heads": 2, "kv_heads": 1, "mlp": 128},
              "vocab": 5000, "label": "quick llama"},
}
WORKLOAD = {"full": {"prompt": 128, "response": 128, "batch": 4, "steps": 3, "warmup": 1, "repeats": 2},
            "quick": {"prompt": 12, "response": 12, "batch": 2, "steps": 2, "warmup": 1, "repeats": 1}}
#: the teacher-side work at real size (GPT-2 small, the ``gpt2`` teacher): scoring ``score_n`` examples of
#: ``prompt + response`` tokens in batches of ``score_batch``; greedy generation of ``gen_new`` tokens after
#: ``gen_prompt``-token prompts at each batch size (``max(batch, gen_min_prompts)`` prompts); MoPe with the
#: paper's K=10 on ``mope_n`` examples of ``mope_length`` tokens
TEACHER_WORK = {
    "full": {"score_n": 16, "score_batch": 8, "gen_prompt": 32, "gen_new": 32, "gen_batches": (1, 16, 64),
             "gen_min_prompts": 8, "mope_n": 8, "mope_length": 64, "mope_k": 10, "repeats": 2},
    "quick": {"score_n": 4, "score_batch": 2, "gen_prompt": 6, "gen_new": 4, "gen_batches": (1, 4),
              "gen_min_prompts": 2, "mope_n": 4, "mope_length": 12, "mope_k": 2, "repeats": 1},
}


def build(spec: dict, vocab: int, length: int, seed: int):
    """A random-init Hugging Face causal LM of ``spec``'s shape (train mode, dropout as the config's)."""
    import transformers as tf

    torch.manual_seed(seed)
    if spec["arch"] == "gpt2":
        config = tf.GPT2Config(vocab_size=vocab, n_positions=max(length, 8), n_embd=spec["n_embd"],
                               n_layer=spec["n_layer"], n_head=spec["n_head"], bos_token_id=0, eos_token_id=0,
                               pad_token_id=1)
        return tf.GPT2LMHeadModel(config)
    config = tf.LlamaConfig(vocab_size=vocab, hidden_size=spec["hidden"], intermediate_size=spec["mlp"],
                            num_hidden_layers=spec["layers"], num_attention_heads=spec["heads"],
                            num_key_value_heads=spec["kv_heads"], max_position_embeddings=max(length, 8),
                            tie_word_embeddings=True, bos_token_id=0, eos_token_id=0, pad_token_id=1)
    return tf.LlamaForCausalLM(config)


def random_items(n: int, prompt: int, response: int, vocab: int, seed: int = 0):
    from kdprivacy.encoding import Encoded

    rng = np.random.default_rng(seed)
    return [Encoded(f"r{i:04d}", tuple(int(x) for x in rng.integers(2, vocab, prompt)),
                    tuple(int(x) for x in rng.integers(2, vocab, response))) for i in range(n)]


class _PadOnly:
    """What ``GKDTrainer`` reads of a tokenizer when the data come tokenized with our collator."""

    def __init__(self, pad: int = 1, eos: int = 0):
        self.pad_token_id, self.eos_token_id = pad, eos


def matmul_peak(threads: int, size: int = 2048, repeats: int = 5) -> float:
    """Measured fp32 ``torch.mm`` FLOP/s (best of ``repeats``) at this process's thread count."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = min(_timed(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2 * size**3 / best


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _tokenizer():
    """A tokenizer object for GKDTrainer's ``processing_class``: the demo tokenizer of the quick mode (our
    collator does the padding; GKDTrainer only reads the pad/eos ids and saves it)."""
    return common.tokenizer(common.MODES["quick"])


def kd_rows(arch: str, spec: dict, work: dict, peak: float) -> list[Row]:
    from benchmarks import bench_kd

    length = work["prompt"] + work["response"]
    steps = work["warmup"] + work["steps"] + 1
    items = random_items(steps * work["batch"], work["prompt"], work["response"], spec["vocab"])
    teacher0 = build(spec["teacher"], spec["vocab"], length, seed=1).eval()
    student0 = build(spec["student"], spec["vocab"], length, seed=2)
    n_t, n_s = common.n_params(teacher0), common.n_params(student0)
    mode = {"kd_batch": work["batch"], "max_length": length}
    tok = _tokenizer()
    pad = tok.pad_token_id
    tokens = work["batch"] * length
    flops = (6 * n_s + 2 * n_t) * tokens
    rows = []
    for name, (kd_cfg, beta) in bench_kd.OBJECTIVES.items():
        sides = ["ours", "trl"] + (["plain"] if name == "fkl" else [])
        per: dict[str, list[float]] = {side: [] for side in sides}
        for round_ in range(work["repeats"]):
            for side in sides if round_ % 2 == 0 else list(reversed(sides)):
                student, teacher = copy.deepcopy(student0), copy.deepcopy(teacher0)
                common.log(f"{arch} {name} {side} round {round_}")
                if side == "trl":
                    stamps = bench_kd.trl_step_times(student, teacher, items, mode, beta, tok)
                else:
                    stamps = bench_kd.ours_step_times(student, teacher, items, mode, kd_cfg, pad,
                                                      fused=(side == "ours"))
                per[side].append(bench_kd.steady_seconds_per_step(stamps, work["warmup"]))
                del student, teacher
                common.release_memory()
        med = {side: common.median(v) for side, v in per.items()}
        diff = bench_kd.same_loss(copy.deepcopy(student0).eval(), teacher0, items, kd_cfg, beta, pad)
        label = "forward KL" if name == "fkl" else "generalized JSD, beta 0.5"
        ratio = med["trl"] / med["ours"]
        best = min(per["trl"]) / min(per["ours"])
        notes = [
            f"{spec['label']} (teacher {n_t / 1e6:.0f}M, student {n_s / 1e6:.0f}M parameters); batch "
            f"{work['batch']} x ({work['prompt']} prompt + {work['response']} response tokens), fp32, "
            f"{work['steps']} steady steps after {work['warmup']} warm-up, n={work['repeats']} interleaved",
            "s/step " + "; ".join(f"{side} {', '.join(f'{x:.2f}' for x in v)}" for side, v in per.items())
            + f"; best-of-n ratio {best:.2f}x",
            f"utilisation (model FLOPs {flops / 1e12:.2f} TFLOP/step over the measured matmul peak "
            f"{peak / 1e9:.0f} GFLOP/s): ours {flops / med['ours'] / peak:.0%}, TRL {flops / med['trl'] / peak:.0%}"
            + (f", plain {flops / med['plain'] / peak:.0%}" if "plain" in med else ""),
            f"same objective: |our loss - TRL's generalized_jsd_loss| on one batch = {diff:.1e}",
        ]
        if "plain" in med:
            notes.append(f"the fused loss vs our plain full-logits path: {med['plain'] / med['ours']:.2f}x")
        rows.append(Row(
            item=f"KD step at real size, {arch} ({label})",
            ours=f"{work['batch'] / med['ours']:.2f} ex/s ({flops / med['ours'] / 1e9:.0f} GFLOP/s)",
            baseline=f"{work['batch'] / med['trl']:.2f} ex/s (TRL GKDTrainer)",
            ratio=ratio, ratio_text=f"{ratio:.2f}x throughput", goal=">= 1.5x", met=common.met(ratio >= 1.5),
            notes=notes,
        ))
    return rows


def _texts(items) -> dict[str, str]:
    """id -> a response "text" for Zlib (the random ids written out: what compresses is the token sequence)."""
    return {item.id: " ".join(map(str, item.response_ids)) for item in items}


def scoring_rows(spec: dict, work: dict, tw: dict, quick: bool) -> list[Row]:
    """One-pass scorer (ours) vs one full-vocabulary pass per attack, at the teacher's real size; and the
    peak memory of one scoring pass (ours chunked vs full ``[B, T, V]`` log-softmax), fresh processes."""
    from benchmarks import bench_scoring

    items = random_items(tw["score_n"], work["prompt"], work["response"], spec["vocab"], seed=5)
    texts = _texts(items)
    model = build(spec["teacher"], spec["vocab"], work["prompt"] + work["response"], seed=1).eval()
    bs, out = tw["score_batch"], {}
    times = common.interleaved({
        "ours": lambda: out.__setitem__("ours", bench_scoring.one_pass_scores(model, items, texts, bs, 1)),
        "baseline": lambda: out.__setitem__("baseline", bench_scoring.per_attack_scores(model, items, texts,
                                                                                         bs, 1)),
    }, tw["repeats"], warmup=lambda: bench_scoring.one_pass_scores(model, items[:bs], texts, bs, 1))
    a = out["ours"].sort_values(["attack", "id"])["score"].to_numpy()
    b = out["baseline"].sort_values(["attack", "id"])["score"].to_numpy()
    tokens = sum(len(i.response_ids) for i in items)
    t_o, t_b = common.median(times["ours"]), common.median(times["baseline"])
    _, best = common.ratios(times, "baseline", "ours")
    ratio = t_b / t_o
    label = f"{spec['label'].split(' ->')[0]} teacher ({common.n_params(model) / 1e6:.0f}M)"
    rows = [Row(
        item="scoring all token-level attacks at real size (loss, min_k, min_k_pp, zlib)",
        ours=f"{tokens / t_o:.0f} response tok/s (1 pass)",
        baseline=f"{tokens / t_b:.0f} tok/s ({len(bench_scoring.ATTACKS)} passes)",
        ratio=ratio, ratio_text=common.speedup(ratio), goal=">= 4x faster", met=common.met(ratio >= 4.0),
        notes=[
            f"{label}; {len(items)} examples x ({work['prompt']} prompt + {work['response']} response tokens), "
            f"batch {bs}, fp32; ours {common.spread(times['ours'])}; baseline {common.spread(times['baseline'])}; "
            f"best-of-n ratio {best:.2f}x",
            f"same scores: max |ours - baseline| = {float(np.nanmax(np.abs(a - b))):.1e}",
        ],
    )]
    del model
    common.release_memory()
    length = work["prompt"] + work["response"]
    params = {"vocab": spec["vocab"], "n": bs, "batch": bs, "length": length,
              "spec": {"d_model": spec["teacher"]["n_embd"], "n_layer": spec["teacher"]["n_layer"],
                       "n_head": spec["teacher"]["n_head"]}}
    from benchmarks import probe

    mem, where = {}, "in this process (quick mode)" if quick else "one fresh process per side"
    for impl in ("ours", "baseline"):
        if quick:
            mem[impl] = probe.score_memory({**params, "impl": impl})
        else:
            mem[impl] = common.finish_probe(common.start_probe("score_memory", {**params, "impl": impl}),
                                            timeout=1800)
    rows.append(common.peak_memory_row(f"scoring peak memory at real size, vocab {spec['vocab']}", mem["ours"],
                                       mem["baseline"], [
        f"{label}; one pass over batch {bs} x {length} tokens: one [B,T,V] float32 tensor = "
        f"{common.fmt_mb(bs * length * spec['vocab'] * 4 / 2**20)}; {where}; seconds of "
        f"that pass: ours {common.fmt_s(mem['ours']['seconds'])}, baseline {common.fmt_s(mem['baseline']['seconds'])}",
        f"same statistics: |sum of token log-probs, ours - baseline| = "
        f"{abs(mem['ours']['checksum'] - mem['baseline']['checksum']):.1e} (of {abs(mem['baseline']['checksum']):.4g})",
    ]))
    return rows


def generation_rows(spec: dict, tw: dict) -> list[Row]:
    """Greedy decoding at the teacher's real size: ours (``generation.generate``) vs Hugging Face
    ``generate``, batched the same way, at each batch size; tokens compared."""
    from benchmarks import bench_generation
    from kdprivacy import generation

    model = build(spec["teacher"], spec["vocab"], tw["gen_prompt"] + tw["gen_new"] + 8, seed=3).eval()
    rows = []
    for bs in tw["gen_batches"]:
        n = max(bs, tw["gen_min_prompts"])
        items = random_items(n, tw["gen_prompt"], 1, spec["vocab"], seed=11)
        out = {}
        times = common.interleaved({
            "ours": lambda: out.__setitem__("ours", generation.generate(
                model, items, tw["gen_new"], bs, 1, 0, generation.GREEDY)),
            "hf": lambda: out.__setitem__("hf", bench_generation.hf_greedy(model, items, tw["gen_new"], bs, 1, 0)),
        }, tw["repeats"], warmup=lambda: generation.generate(model, items[:bs], 2, bs, 1, 0, generation.GREEDY))
        same = sum(tuple(x) == tuple(y) for x, y in zip(out["ours"], out["hf"], strict=True))
        tok = {k: sum(len(t) for t in v) for k, v in out.items()}
        rate = {k: tok[k] / common.median(times[k]) for k in tok}
        ratio = rate["ours"] / rate["hf"]
        best = (tok["ours"] / min(times["ours"])) / (tok["hf"] / min(times["hf"]))
        rows.append(Row(
            item=f"greedy generation at real size, batch {bs}",
            ours=f"{rate['ours']:.0f} tok/s (generation.generate)",
            baseline=f"{rate['hf']:.0f} tok/s (Hugging Face generate)",
            ratio=ratio, ratio_text=f"{ratio:.2f}x tokens/s", goal="on par with HF (>= 0.9x)",
            met=common.met(ratio >= 0.9),
            notes=[
                f"{spec['label'].split(' ->')[0]} teacher, random init; {n} prompts of {tw['gen_prompt']} "
                f"tokens, {tw['gen_new']} new tokens max, both with a KV cache, fp32; ours "
                f"{common.spread(times['ours'])}; HF {common.spread(times['hf'])}; best-of-n ratio {best:.2f}x",
                f"{same}/{n} generations token-identical",
            ],
        ))
    return rows


def mope_rows(spec: dict, tw: dict) -> list[Row]:
    """MoPe (K = the paper's 10) at the teacher's real size: hooks (ours) vs a reload per perturbation, with
    the parts that bound the ratio (one reload, one scoring pass) measured alongside."""
    import tempfile

    from benchmarks import bench_mope
    from kdprivacy import models
    from kdprivacy.mia import perturb, scoring

    half = tw["mope_length"] // 2
    items = random_items(tw["mope_n"], half, tw["mope_length"] - half, spec["vocab"], seed=9)
    k, n, bs, out = tw["mope_k"], tw["mope_n"], tw["mope_n"], {}
    with tempfile.TemporaryDirectory(prefix="kdp-realsize-mope-") as tmp:
        model = build(spec["teacher"], spec["vocab"], tw["mope_length"], seed=1).eval()
        model.save_pretrained(tmp)
        size_mb = common.n_params(model) * 4 / 2**20
        del model
        times = common.interleaved({
            "ours": lambda: out.__setitem__("ours", bench_mope.inplace_mope(tmp, items, k, bench_mope.SIGMA, 0,
                                                                            bs, 1)),
            "baseline": lambda: out.__setitem__("baseline", bench_mope.reload_mope(tmp, items, k,
                                                                                   bench_mope.SIGMA, 0, bs, 1)),
        }, tw["repeats"], warmup=lambda: bench_mope.inplace_mope(tmp, items[:1], 1, bench_mope.SIGMA, 0, 1, 1))
        loaded = models.load_model(tmp)
        scratch = models.load_model(tmp)
        parts = common.interleaved({
            "reload": lambda: perturb.add_noise(models.load_model(tmp), bench_mope.SIGMA, 1),
            "noise": lambda: perturb.add_noise(scratch, bench_mope.SIGMA, 1),
            "nll": lambda: scoring.mean_nll(loaded, items, scoring.ScoringPass(bs, 1)),
        }, 3, warmup=True)
    t_o, t_b = common.median(times["ours"]), common.median(times["baseline"])
    _, best = common.ratios(times, "baseline", "ours")
    p_re, p_noise, p_nll = (common.median(parts[key]) for key in ("reload", "noise", "nll"))
    # ours per perturbation: one pass + one noise draw (once per batch; one batch here); the reload
    # baseline: one pass + reload + the same draw; both score once more unperturbed
    ceiling = (p_nll + p_re) / (p_nll + p_noise)
    ratio = t_b / t_o
    same = float(np.max(np.abs(out["ours"] - out["baseline"])))
    return [Row(
        item=f"MoPe at real size (K={k})",
        ours=f"{common.fmt_s(t_o)} (hooks)", baseline=f"{common.fmt_s(t_b)} (reload x{k + 1})",
        ratio=ratio, ratio_text=common.speedup(ratio), goal=">= 3x faster", met=common.met(ratio >= 3.0),
        notes=[
            f"{spec['label'].split(' ->')[0]} teacher ({size_mb:.0f} MB fp32 safetensors, page-cached); {n} "
            f"examples x {tw['mope_length']} tokens, batch {bs}; ours {common.spread(times['ours'])}; baseline "
            f"{common.spread(times['baseline'])}; best-of-n ratio {best:.2f}x; identical scores: max |diff| = "
            f"{same:.1e}",
            f"bound: both sides score K+1 times and draw the same noise; one reload + noise {common.fmt_s(p_re)}, "
            f"drawing every parameter's noise once {common.fmt_s(p_noise)}, one scoring pass {common.fmt_s(p_nll)}, "
            f"so hooks can beat reloads by at most (pass + reload + noise) / (pass + noise) = {ceiling:.2f}x "
            f"here (1 + reload/pass = {1 + p_re / p_nll:.2f}x even if the noise were free)",
        ],
    )]


def memory_params(arch: str, spec: dict, work: dict, impl: str) -> dict:
    return {"impl": impl, "arch": arch, "spec": spec, "prompt": work["prompt"], "response": work["response"],
            "batch": work["batch"]}


def kd_step_memory(params: dict) -> dict:
    """Probe body (benchmarks.probe): peak RSS of one KD step (forward KL) after an untimed one."""
    from benchmarks import bench_kd
    from kdprivacy.encoding import collate
    from kdprivacy.kd import objectives
    from kdprivacy.kd import teacher as kd_teacher
    from kdprivacy.train import loop

    spec, length = params["spec"], params["prompt"] + params["response"]
    teacher = kd_teacher.freeze(build(spec["teacher"], spec["vocab"], length, seed=1))
    student = build(spec["student"], spec["vocab"], length, seed=2)
    batch = collate(random_items(params["batch"], params["prompt"], params["response"], spec["vocab"]), 1)
    opt = loop.make_optimizer(student, 1e-4, 0.01)
    if params["impl"] == "trl":
        labels = batch["input_ids"].masked_fill(batch["response_mask"] == 0, -100)

        def loss_of():
            return bench_kd.GKDComputeLoss.loss(student, teacher, batch, labels, 0.0)
    else:
        fn = kd_teacher.kd_loss_fn(teacher, objectives.get_objective("fkl"), 0.0, fused=params["impl"] == "ours")

        def loss_of():
            return fn(student, batch)[0]

    def step():
        loss = loss_of()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss)

    step()  # optimizer state, allocator, lazy buffers: outside the measurement
    from benchmarks.probe import _measure

    out = _measure(step)
    out["loss"] = out.pop("value")
    return out


def run(args) -> tuple[list[Row], dict]:
    torch.set_num_threads(args.threads)
    os.environ["KDP_BENCH_THREADS"] = str(args.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    work = WORKLOAD["quick" if args.quick else "full"]
    table = QUICK_ARCHS if args.quick else ARCHS
    archs = [a for a in args.archs.split(",") if a]
    unknown = sorted(set(archs) - set(table))
    if unknown:
        raise SystemExit(f"unknown architecture(s) {unknown}; choose from {', '.join(table)}")
    meta = {"mode": "quick" if args.quick else "full", "machine": common.machine_info(),
            "load_before": common.load_average()}
    started = time.perf_counter()
    if not __import__("benchmarks.bench_kd", fromlist=["x"]).trl_available():
        raise SystemExit("TRL is not installed: pip install trl (the baseline of every row here)")
    peak = matmul_peak(args.threads, 256 if args.quick else 2048)
    meta["matmul_peak_gflops"] = peak / 1e9
    rows: list[Row] = []
    mem = {}
    first = archs[0]
    for impl in ("ours", "plain", "trl"):
        params = memory_params(first, table[first], work, impl)
        if args.quick:
            mem[impl] = kd_step_memory(params)
        else:
            mem[impl] = common.finish_probe(common.start_probe("kd_step_memory", params), timeout=1800)
    for arch in archs:
        rows += kd_rows(arch, table[arch], work, peak)
    teacher_work = TEACHER_WORK["quick" if args.quick else "full"]
    if "gpt2" in archs:
        common.log("scoring")
        rows += scoring_rows(table["gpt2"], work, teacher_work, args.quick)
        common.log("generation")
        rows += generation_rows(table["gpt2"], teacher_work)
        common.log("mope")
        rows += mope_rows(table["gpt2"], teacher_work)
    ratio = mem["trl"]["extra_mb"] / max(mem["ours"]["extra_mb"], 1e-9)
    rows.append(Row(
        item=f"KD step peak memory at real size, {first} (forward KL)",
        ours=f"{common.fmt_mb(mem['ours']['extra_mb'])} peak extra RSS",
        baseline=f"{common.fmt_mb(mem['trl']['extra_mb'])} (TRL's loss formula)",
        ratio=ratio, ratio_text=f"{ratio:.1f}x less memory", goal="less than TRL",
        met=common.met(mem["ours"]["extra_mb"] < mem["trl"]["extra_mb"]),
        notes=[
            f"{table[first]['label']}; batch {work['batch']} x {work['prompt'] + work['response']} tokens: one "
            f"[B,T,V] float32 tensor = {common.fmt_mb(work['batch'] * (work['prompt'] + work['response']) * table[first]['vocab'] * 4 / 2**20)}",
            f"one step after an untimed one, one fresh process per side; our plain full-logits path "
            f"{common.fmt_mb(mem['plain']['extra_mb'])}",
            f"same loss on that batch: ours {mem['ours']['loss']:.6f}, plain {mem['plain']['loss']:.6f}, "
            f"TRL formula {mem['trl']['loss']:.6f}",
        ],
    ))
    meta["seconds"] = time.perf_counter() - started
    meta["load_after"] = common.load_average()
    meta["threads"] = torch.get_num_threads()
    return rows, meta


def main(argv=None) -> int:
    from benchmarks import run as suite

    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (checks the harness)")
    parser.add_argument("--archs", default="gpt2,llama", help="comma-separated: gpt2, llama")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2: every core here)")
    parser.add_argument("--readme", type=Path, default=None,
                        help="write the results block here (default: benchmarks/README.md on a full run)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    rows, meta = run(args)
    print(suite.table(rows))
    print()
    print(suite.notes(rows))
    readme = args.readme if args.readme is not None else (None if args.quick else suite.README)
    if readme is not None:
        line = (f"Last run: `{COMMAND}{' --quick' if args.quick else ''} --threads {args.threads} --archs "
                f"{args.archs}`, {meta['seconds'] / 60:.1f} min; measured fp32 matmul peak "
                f"{meta['matmul_peak_gflops']:.0f} GFLOP/s; load average {meta['load_before']} before, "
                f"{meta['load_after']} after; {meta['machine']['CPU']}, {meta['machine']['CPU(s)']} CPUs, "
                f"torch {meta['machine']['torch']}, transformers {meta['machine']['transformers']}, trl "
                f"{meta['machine']['trl']}, GPU: {meta['machine']['GPU']}.")
        block = "\n".join([START, line, "", suite.table(rows), "", suite.notes(rows), END])
        suite.write_readme(readme, block, START, END)
        print(f"results written to {readme}")
    if args.json is not None:
        args.json.write_text(json.dumps({"meta": meta, "rows": [r.as_dict() for r in rows]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
