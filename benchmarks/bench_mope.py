"""MoPe and per-block MoPe: seeded noise through forward hooks (ours) vs reloading the model per perturbation.

Ours: ``models.load_model`` once, then :func:`kdprivacy.mia.perturb.mope_scores` (whole model) or
:func:`kdprivacy.mia.blocks.block_mope` (one block at a time) -- what the ``mope`` and ``block_mope`` rules run.

Baseline (written here): the authors' loop -- ``load_model`` from disk for the unperturbed NLL, then for every
perturbation (``K``, or ``L x K`` per block) a fresh ``load_model`` from disk, the same seeded noise written in
place (:func:`kdprivacy.mia.perturb.add_noise`: the noise ours computes with, so the scores are identical), the same
:func:`kdprivacy.mia.scoring.mean_nll`, and the copy dropped. Only the way a perturbed model is obtained differs.
"""

from __future__ import annotations

import copy
import tempfile

import numpy as np

from benchmarks import common
from benchmarks.common import Row

SIGMA = 0.005  # config.yaml attacks.mope.sigma
BLOCK_SIGMA = 0.01  # config.yaml blocks.sigmas


# --------------------------------------------------------------------------------------------- baseline
def reload_mope(path, items, k: int, sigma: float, seed: int, batch_size: int, pad_id: int) -> np.ndarray:
    """Baseline MoPe: a fresh model from disk for every perturbation."""
    from kdprivacy import models
    from kdprivacy.mia import perturb, scoring

    model = models.load_model(str(path))
    base = scoring.mean_nll(model, items, scoring.ScoringPass(batch_size, pad_id))
    del model
    total = np.zeros(len(items))
    for index in range(k):
        model = models.load_model(str(path))
        perturb.add_noise(model, sigma, perturb.perturbation_seed(seed, index))
        total += scoring.mean_nll(model, items, scoring.ScoringPass(batch_size, pad_id)) - base
        del model
    return total / k


def reload_block_mope(path, items, labels, k: int, sigma: float, seed: int, batch_size: int, pad_id: int,
                      blocks=None) -> list[float]:
    """Baseline per-block MoPe: a fresh model from disk for every (block, perturbation); AUC per block."""
    from kdprivacy import models
    from kdprivacy.mia import metrics, perturb, scoring

    model = models.load_model(str(path))
    base = scoring.mean_nll(model, items, scoring.ScoringPass(batch_size, pad_id))
    indices = list(range(len(perturb.find_blocks(model)))) if blocks is None else list(blocks)
    del model
    aucs = []
    for block in indices:
        total = np.zeros(len(items))
        for draw in range(k):
            model = models.load_model(str(path))
            perturb.add_noise(model, sigma, perturb.perturbation_seed(seed, draw), perturb.block_params(model, block))
            total += scoring.mean_nll(model, items, scoring.ScoringPass(batch_size, pad_id)) - base
            del model
        aucs.append(metrics.roc_auc(total / k, np.asarray(labels)))
    return aucs


# --------------------------------------------------------------------------------------------- ours
def plain_scoring(path, items, batch_size: int, pad_id: int) -> np.ndarray:
    """The memory reference: load the model and score it once, no perturbation."""
    from kdprivacy import models
    from kdprivacy.mia import scoring

    return scoring.mean_nll(models.load_model(str(path)), items, scoring.ScoringPass(batch_size, pad_id))


def inplace_mope(path, items, k: int, sigma: float, seed: int, batch_size: int, pad_id: int) -> np.ndarray:
    from kdprivacy import models
    from kdprivacy.mia import perturb

    model = models.load_model(str(path))
    return perturb.mope_scores(model, items, k, sigma, seed, batch_size, pad_id)["mope"].to_numpy()


def inplace_block_mope(path, items, labels, k: int, sigma: float, seed: int, batch_size: int, pad_id: int,
                       blocks=None) -> list[float]:
    from kdprivacy.mia import blocks as blocks_module
    from kdprivacy import models
    from kdprivacy.stats import NO_BOOTSTRAP

    model = models.load_model(str(path))
    per_block, _ = blocks_module.block_mope(model, items, labels, k=k, sigmas=[sigma], seed=seed,
                                            batch_size=batch_size, pad_id=pad_id, bootstrap=NO_BOOTSTRAP,
                                            blocks=blocks)
    return per_block["auc"].tolist()


# --------------------------------------------------------------------------------------------- benchmarks
def bench_mope(mode: dict) -> list[Row]:
    from kdprivacy import models
    from kdprivacy.mia import perturb, scoring

    tok = common.tokenizer(mode)
    n, k, kb, bs = int(mode["mope_n"]), int(mode["mope_k"]), int(mode["block_k"]), int(mode["mope_batch"])
    items = common.items(mode, n)
    labels = np.array([1] * (n // 2) + [0] * (n - n // 2))
    model = common.model(mode, mode["teacher"])
    n_blocks = len(perturb.find_blocks(model))
    pad = tok.pad_token_id
    repeats = int(mode["repeats"])
    rows = []
    with tempfile.TemporaryDirectory(prefix="kdp-bench-mope-") as tmp:
        models.save_model(model, tok, tmp)
        out = {}

        def warm():
            inplace_mope(tmp, items[:2], 1, SIGMA, 0, bs, pad)
            reload_mope(tmp, items[:2], 1, SIGMA, 0, bs, pad)

        times = common.interleaved({
            "ours": lambda: out.__setitem__("ours", inplace_mope(tmp, items, k, SIGMA, 0, bs, pad)),
            "baseline": lambda: out.__setitem__("baseline", reload_mope(tmp, items, k, SIGMA, 0, bs, pad)),
        }, repeats, warm if mode["warmup"] else False)
        _, best = common.ratios(times, "baseline", "ours")
        same = float(np.max(np.abs(out["ours"] - out["baseline"])))
        # components: what one perturbation costs besides scoring
        loaded = models.load_model(tmp)

        scratch = copy.deepcopy(loaded)

        def noise_once():  # what the hooks add per forward call: every parameter's noise, once
            perturb.add_noise(scratch, SIGMA, 1)

        def reload_and_noise():
            fresh = models.load_model(tmp)
            perturb.add_noise(fresh, SIGMA, 1)

        parts = common.interleaved({
            "inplace": noise_once, "reload": reload_and_noise,
            "nll": lambda: scoring.mean_nll(loaded, items, scoring.ScoringPass(bs, pad)),
        }, max(repeats, 3) if mode["warmup"] else 1, mode["warmup"])
        p_in, p_re, p_nll = (common.median(parts[x]) for x in ("inplace", "reload", "nll"))
        t_o, t_b = common.median(times["ours"]), common.median(times["baseline"])
        ratio = t_b / t_o
        size_mb = common.n_params(loaded) * 4 / 2**20
        rows.append(Row(
            item=f"MoPe, whole model (K={k})",
            ours=f"{common.fmt_s(t_o)} (hooks)", baseline=f"{common.fmt_s(t_b)} (reload x{k + 1})",
            ratio=ratio, ratio_text=common.speedup(ratio), goal=">= 3x faster", met=common.met(ratio >= 3.0),
            notes=[
                f"{n} examples, batch {bs}, gpt2 {mode['teacher']['n_layer']}x{mode['teacher']['d_model']} "
                f"({size_mb:.0f} MB fp32); both sides include loading the model once",
                f"ours {common.spread(times['ours'])}; baseline {common.spread(times['baseline'])}; "
                f"best-of-n ratio {best:.2f}x; identical scores: max |diff| = {same:.1e}",
                (f"per perturbation: drawing every parameter's noise once {common.fmt_s(p_in)} (ours draws it "
                 f"once per batch, {-(-n // bs)} batch(es) here) vs reload + noise {common.fmt_s(p_re)}; one "
                 f"scoring pass {common.fmt_s(p_nll)} -- the scoring passes dominate both sides: the "
                 "end-to-end ratio grows with the cost of a reload and shrinks with the number of scored "
                 "examples"),
            ],
        ))
        # per-block
        blocks_out = {}
        times_b = common.interleaved({
            "ours": lambda: blocks_out.__setitem__(
                "ours", inplace_block_mope(tmp, items, labels, kb, BLOCK_SIGMA, 0, bs, pad)),
            "baseline": lambda: blocks_out.__setitem__(
                "baseline", reload_block_mope(tmp, items, labels, kb, BLOCK_SIGMA, 0, bs, pad)),
        }, max(1, repeats - 1), warmup=False)
        t_o, t_b = common.median(times_b["ours"]), common.median(times_b["baseline"])
        _, best = common.ratios(times_b, "baseline", "ours")
        ratio = t_b / t_o
        auc_diff = float(np.max(np.abs(np.array(blocks_out["ours"]) - np.array(blocks_out["baseline"]))))
        rows.append(Row(
            item=f"per-block MoPe ({n_blocks} blocks x K={kb})",
            ours=f"{common.fmt_s(t_o)} (hooks)",
            baseline=f"{common.fmt_s(t_b)} (reload x{n_blocks * kb + 1})",
            ratio=ratio, ratio_text=common.speedup(ratio), goal=">= 3x faster", met=common.met(ratio >= 3.0),
            notes=[
                f"same model and examples, sigma {BLOCK_SIGMA}, no bootstrap on either side; "
                f"ours {common.spread(times_b['ours'])}; baseline {common.spread(times_b['baseline'])}; "
                f"best-of-n ratio {best:.2f}x; identical per-block AUCs: max |diff| = {auc_diff:.1e}",
            ],
        ))
    return rows


def memory_probe_params(mode: dict, impl: str) -> dict:
    return {"impl": impl, "spec": mode["mope_mem_spec"], "vocab": int(mode["vocab"]),
            "n": 4, "batch": 4, "length": int(mode["max_length"]) // 2, "k": 2}


def row_memory(mode: dict, probes: dict[str, dict]) -> Row:
    """MoPe's memory beyond what scoring the model costs anyway (the ``plain`` probe: load + one pass)."""
    plain, ours, base = probes["plain"], probes["inplace"], probes["reload"]
    size = ours["model_mb"]

    def over(probe: dict) -> float:
        return (probe["extra_mb"] - plain["extra_mb"]) / size

    where = "in this process (quick mode)" if ours.get("in_process") else "one fresh process per variant"
    notes = [
        f"gpt2 {mode['mope_mem_spec']['n_layer']}x{mode['mope_mem_spec']['d_model']} ({size:.0f} MB fp32), "
        f"K=2 on 4 short examples; peak RSS of load + MoPe minus peak RSS of load + one plain scoring pass "
        f"({common.fmt_mb(plain['extra_mb'])}), in units of one model; {where}",
        "ours never writes the weights: perturbed values exist for one module at a time, while it runs "
        "(no backup copy); the reload baseline holds one model at a time",
    ]
    if "block_inplace" in probes:
        notes.append(
            f"per-block MoPe (block 0): ours {over(probes['block_inplace']):+.2f} models, reload baseline "
            f"{over(probes['block_reload']):+.2f} models"
        )
    o, b = over(ours), over(base)
    return Row(
        item="MoPe memory (whole model)",
        ours=f"{o:+.2f} models ({common.fmt_mb(ours['extra_mb'] - plain['extra_mb'])})",
        baseline=f"{b:+.2f} models ({common.fmt_mb(base['extra_mb'] - plain['extra_mb'])})",
        ratio=None, ratio_text=f"{o - b:+.2f} models vs baseline",
        goal="no extra model copy", met=common.met(o < 0.5),
        notes=notes,
    )
