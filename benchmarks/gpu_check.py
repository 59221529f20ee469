"""One-file GPU check: the CUDA-only paths at real-model size, one printed table, well under 10 minutes.

    python -m benchmarks.gpu_check [--json PATH]         # on a machine with a CUDA GPU
    python -m benchmarks.gpu_check --cpu --tiny          # the same code on CPU at toy size (tests it)

Rows (GPT-2 small teacher 12x768 -> student 6x768, vocab 50257, random init; batch 8 x (256 prompt + 256
response) tokens, unless ``--tiny``):

1. matmul peak: ``torch.mm`` 4096^2 in bf16 (and fp32), the denominator of the utilisation column;
2. KD step, bf16 autocast, forward KL and JSD(0.5): ours (``kd_loss_fn``, fused) vs the plain full-logits
   path vs TRL's ``compute_loss`` formula (``benchmarks.bench_kd.GKDComputeLoss``: GKDTrainer's loss without
   the Trainer) -- s/step, peak CUDA memory, utilisation, |loss difference|;
3. 8-bit teacher forward (bitsandbytes ``LLM.int8``, ``kdprivacy.models.load_model(quantization="8bit")``):
   time and memory vs the fp32/bf16 teacher, next-token agreement and max |log-prob difference|;
4. generation: ``kdprivacy.generation.generate`` vs Hugging Face ``generate`` at batch 1/16/64 (greedy,
   identical tokens counted);
5. a 2-process data-parallel KD step (``torch.distributed``, NCCL) if two GPUs are visible: the gradients of
   the two processes after all-reduce equal the single-process gradient of the whole batch.

Timing: CUDA events around each step after warm-up, median of ``repeats``; peaks from
``torch.cuda.max_memory_allocated`` reset before each side.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

for _key, _value in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                     "TRANSFORMERS_VERBOSITY": "error"}.items():
    os.environ.setdefault(_key, _value)

import torch  # noqa: E402

FULL = {"teacher": {"arch": "gpt2", "n_layer": 12, "n_embd": 768, "n_head": 12},
        "student": {"arch": "gpt2", "n_layer": 6, "n_embd": 768, "n_head": 12}, "vocab": 50257,
        "prompt": 256, "response": 256, "batch": 8, "steps": 5, "repeats": 3, "mm": 4096,
        "gen_prompt": 64, "gen_new": 64, "gen_batches": (1, 16, 64)}
TINY = {"teacher": {"arch": "gpt2", "n_layer": 2, "n_embd": 64, "n_head": 2},
        "student": {"arch": "gpt2", "n_layer": 1, "n_embd": 64, "n_head": 2}, "vocab": 3000,
        "prompt": 8, "response": 8, "batch": 2, "steps": 2, "repeats": 1, "mm": 128,
        "gen_prompt": 6, "gen_new": 4, "gen_batches": (1, 4)}


class Clock:
    """Wall seconds of ``fn()`` on ``device`` (CUDA synchronised before and after)."""

    def __init__(self, device: torch.device):
        self.device = device

    def __call__(self, fn) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        started = time.perf_counter()
        fn()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - started


def reset_peak(device):
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device)
    from benchmarks import common

    common.release_memory()
    common.reset_peak_rss()
    return common.rss_mb() * 2**20


def peak_extra_mb(device, before: float) -> float:
    if device.type == "cuda":
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    from benchmarks import common

    return common.peak_rss_mb() - before / 2**20


def matmul_peak(device, size: int, dtype) -> float:
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    clock = Clock(device)
    clock(lambda: torch.mm(a, b))
    return 2 * size**3 / min(clock(lambda: torch.mm(a, b)) for _ in range(5))


def kd_check(cfg: dict, device, precision: str, peak: float) -> list[dict]:
    from benchmarks import bench_kd, common, realsize
    from kdprivacy import models
    from kdprivacy.encoding import collate
    from kdprivacy.kd import objectives
    from kdprivacy.kd import teacher as kd_teacher
    from kdprivacy.train import loop

    length = cfg["prompt"] + cfg["response"]
    teacher = kd_teacher.freeze(realsize.build(cfg["teacher"], cfg["vocab"], length, seed=1).to(device))
    student0 = realsize.build(cfg["student"], cfg["vocab"], length, seed=2)
    batch = collate(realsize.random_items(cfg["batch"], cfg["prompt"], cfg["response"], cfg["vocab"]), 1)
    batch = {k: v.to(device) for k, v in batch.items()}
    labels = batch["input_ids"].masked_fill(batch["response_mask"] == 0, -100)
    flops = (6 * common.n_params(student0) + 2 * common.n_params(teacher)) * batch["input_ids"].numel()
    out = []
    for name, beta, spec in (("fkl", 0.0, ("fkl", {})), ("jsd", 0.5, ("jsd", {"beta": 0.5}))):
        divergence = objectives.get_objective(spec[0], **spec[1])
        result = {"check": f"KD step {precision}, {name}"}
        for side in ("ours", "plain", "trl"):
            student = __import__("copy").deepcopy(student0).to(device)
            opt = loop.make_optimizer(student, 1e-4, 0.01)
            fn = kd_teacher.kd_loss_fn(teacher, divergence, 0.0, fused=(side == "ours"))

            def loss_of():
                if side != "trl":
                    return fn(student, batch)[0]
                return bench_kd.GKDComputeLoss.loss(student, teacher, batch, labels, beta, upcast=True)

            def step():
                with models.autocast(precision, device):
                    loss = loss_of()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                result.setdefault(f"{side}_first_loss", float(loss))  # same student, same batch: comparable

            step()
            before = reset_peak(device)
            clock = Clock(device)
            times = [clock(step) for _ in range(cfg["steps"] * cfg["repeats"])]
            result[f"{side}_s"] = statistics.median(times)
            result[f"{side}_peak_mb"] = peak_extra_mb(device, before)
            result[f"{side}_util"] = flops / result[f"{side}_s"] / peak
            del student, opt
        result["loss_rel_diff_vs_trl"] = (abs(result["ours_first_loss"] - result["trl_first_loss"])
                                          / abs(result["trl_first_loss"]))
        result["speedup_vs_trl"] = result["trl_s"] / result["ours_s"]
        result["memory_vs_trl"] = result["trl_peak_mb"] / max(result["ours_peak_mb"], 1e-9)
        out.append(result)
    return out


def int8_check(cfg: dict, device) -> dict:
    from benchmarks import realsize
    from kdprivacy import models
    from kdprivacy.encoding import collate

    length = cfg["prompt"] + cfg["response"]
    batch = collate(realsize.random_items(cfg["batch"], cfg["prompt"], cfg["response"], cfg["vocab"]), 1)
    with tempfile.TemporaryDirectory(prefix="kdp-gpu-") as tmp:
        realsize.build(cfg["teacher"], cfg["vocab"], length, seed=1).save_pretrained(tmp)
        result = {"check": "8-bit teacher forward"}
        logps = {}
        for label, quant in (("full", None), ("int8", "8bit")):
            model = models.load_model(tmp, quantization=quant, device=device)
            ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
            with torch.no_grad():
                model(input_ids=ids[:1], attention_mask=mask[:1])
                before = reset_peak(device)
                clock = Clock(device)
                times = []
                for _ in range(cfg["repeats"]):
                    times.append(clock(lambda: logps.__setitem__(label, torch.log_softmax(
                        model(input_ids=ids, attention_mask=mask).logits.float(), -1))))
            result[f"{label}_s"] = statistics.median(times)
            result[f"{label}_peak_mb"] = peak_extra_mb(device, before)
            del model
        keep = batch["attention_mask"].to(device).bool()
        agree = (logps["full"].argmax(-1) == logps["int8"].argmax(-1))[keep].float().mean()
        result["next_token_agreement"] = float(agree)
        result["max_abs_logprob_diff"] = float((logps["full"] - logps["int8"]).abs()[keep].max())
    return result


def generation_check(cfg: dict, device) -> list[dict]:
    from benchmarks import bench_generation, realsize
    from kdprivacy import generation

    model = realsize.build(cfg["teacher"], cfg["vocab"], cfg["gen_prompt"] + cfg["gen_new"], seed=3)
    model = model.to(device).eval()
    rows = []
    for batch_size in cfg["gen_batches"]:
        items = realsize.random_items(batch_size, cfg["gen_prompt"], 1, cfg["vocab"], seed=batch_size)
        out, clock = {}, Clock(device)
        runs = {
            "ours": lambda: out.__setitem__("ours", generation.generate(
                model, items, cfg["gen_new"], batch_size, 1, None, generation.GREEDY)),
            "hf": lambda: out.__setitem__("hf", bench_generation.hf_greedy(
                model, items, cfg["gen_new"], batch_size, 1, None)),
        }
        for fn in runs.values():
            fn()
        times = {k: statistics.median(clock(fn) for _ in range(cfg["repeats"])) for k, fn in runs.items()}
        tokens = sum(len(t) for t in out["ours"])
        rows.append({"check": f"generation batch {batch_size}", "ours_tok_s": tokens / times["ours"],
                     "hf_tok_s": sum(len(t) for t in out["hf"]) / times["hf"],
                     "identical": sum(a == b for a, b in zip(out["ours"], out["hf"])), "of": batch_size})
    return rows


def _dp_worker(rank: int, world: int, cfg: dict, port: int, queue) -> None:
    import torch.distributed as dist

    from benchmarks import realsize
    from kdprivacy.encoding import collate
    from kdprivacy.kd import objectives
    from kdprivacy.kd import teacher as kd_teacher

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("nccl", rank=rank, world_size=world)
    device = torch.device("cuda", rank)
    length = cfg["prompt"] + cfg["response"]
    teacher = kd_teacher.freeze(realsize.build(cfg["teacher"], cfg["vocab"], length, seed=1).to(device))
    student = realsize.build(cfg["student"], cfg["vocab"], length, seed=2).to(device).eval()
    items = realsize.random_items(2 * cfg["batch"], cfg["prompt"], cfg["response"], cfg["vocab"])
    fn = kd_teacher.kd_loss_fn(teacher, objectives.get_objective("fkl"), 0.0)
    half = {k: v.to(device) for k, v in collate(items[rank::world], 1).items()}
    fn(student, half)[0].backward()
    grads = torch.cat([p.grad.flatten() for p in student.parameters()])
    dist.all_reduce(grads)
    grads /= world
    if rank == 0:
        student.zero_grad()
        whole = {k: v.to(device) for k, v in collate(items[0::2] + items[1::2], 1).items()}
        fn(student, whole)[0].backward()
        ref = torch.cat([p.grad.flatten() for p in student.parameters()])
        queue.put({"check": "2-process data-parallel KD step",
                   "max_rel_grad_diff": float((grads - ref).abs().max() / ref.abs().max())})
    dist.destroy_process_group()


def dp_check(cfg: dict) -> dict | None:
    if torch.cuda.device_count() < 2:
        return None
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_dp_worker, args=(r, 2, cfg, 29517, queue)) for r in range(2)]
    for p in procs:
        p.start()
    result = queue.get(timeout=600)
    for p in procs:
        p.join(timeout=60)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu", action="store_true", help="run on CPU (a smoke test of this script)")
    parser.add_argument("--tiny", action="store_true", help="toy shapes (seconds)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if not args.cpu and not torch.cuda.is_available():
        print("gpu_check: no CUDA device visible (use --cpu --tiny for a CPU smoke run)", file=sys.stderr)
        return 2
    device = torch.device("cpu" if args.cpu else "cuda")
    cfg = TINY if args.tiny else FULL
    started = time.perf_counter()
    half = torch.bfloat16
    results = {"device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
               "torch": torch.__version__}
    peak16 = matmul_peak(device, cfg["mm"], half)
    results["matmul_peak_bf16_tflops"] = peak16 / 1e12
    results["matmul_peak_fp32_tflops"] = matmul_peak(device, cfg["mm"], torch.float32) / 1e12
    rows = kd_check(cfg, device, "bf16", peak16)
    rows.append(int8_check(cfg, device))
    rows += generation_check(cfg, device)
    dp = dp_check(cfg) if device.type == "cuda" else None
    if dp is not None:
        rows.append(dp)
    results["rows"] = rows
    results["seconds"] = time.perf_counter() - started
    print(f"device {results['device']}, torch {results['torch']}; matmul peak bf16 "
          f"{results['matmul_peak_bf16_tflops']:.1f} TFLOP/s, fp32 {results['matmul_peak_fp32_tflops']:.1f}")
    print("| check | result |")
    print("|---|---|")
    for row in rows:
        values = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                           for k, v in row.items() if k != "check")
        print(f"| {row['check']} | {values} |")
    print(f"{results['seconds']:.0f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
