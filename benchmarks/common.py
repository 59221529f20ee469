"""Shared pieces of the benchmark suite: workloads, interleaved timing, peak-memory probes, machine info.

Everything here only *prepares* inputs (a tokenizer, encoded examples, models built from configs) and
measures; the code under test is always the library function the workflow calls.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# ------------------------------------------------------------------------------------------------ workloads
# "full" is the documented run (numbers in README.md); "quick" only checks that the harness works.
# Model specs are the embedded demo's (config.yaml): teacher gpt2 4x256, students gpt2 2x128, vocab 4096,
# max_length 128 / prompt 64.
TEACHER = {"arch": "gpt2", "n_layer": 4, "d_model": 256, "n_head": 4}
STUDENT = {"arch": "gpt2", "n_layer": 2, "d_model": 128, "n_head": 4}

MODES = {
    "full": {
        "repeats": 3,
        "warmup": True,  # one untimed call of every variant before the timed rounds
        "vocab": 4096,
        "n_texts": 800,
        "max_length": 128,
        "max_prompt_length": 64,
        "teacher": TEACHER,
        "student": STUDENT,
        # scoring all token-level attacks
        "score_n": 64,
        "score_batch": 32,
        # MoPe (whole model) and per-block MoPe: demo K, teacher-size model
        "mope_n": 32,
        "mope_k": 4,
        "block_k": 2,
        "mope_batch": 32,
        "mope_mem_spec": {"arch": "gpt2", "n_layer": 6, "d_model": 512, "n_head": 8},
        # KD training step
        "kd_batch": 16,
        "kd_length": 80,
        "kd_steps": 6,
        "kd_warmup_steps": 1,
        "kd_repeats": 3,
        # off-policy KD from cached top-k teacher logits: whole student runs, then the loss attack
        "cache_members": 128,
        "cache_public": 256,
        "cache_teacher_epochs": 8,
        "cache_epochs": 3,
        "cache_top_k": 64,
        "cache_repeats": 2,
        # 50k-vocabulary scoring memory
        "mem_vocab": 50257,
        "mem_spec": {"arch": "gpt2", "n_layer": 2, "d_model": 128, "n_head": 4},
        "mem_batch": 16,
        "mem_n": 16,
        "mem_length": 128,
        "lens_mem_spec": {"arch": "gpt2", "n_layer": 4, "d_model": 128, "n_head": 4},  # per-block lens memory
        # generation
        "gen_n": 16,
        "gen_batch": 16,
        "gen_new_tokens": 32,
        # memory probes: one fresh process per variant
        "in_process_probes": False,
    },
    "quick": {
        "repeats": 1,
        "warmup": False,
        "vocab": 512,
        "n_texts": 200,
        "max_length": 64,
        "max_prompt_length": 40,
        "teacher": {"arch": "gpt2", "n_layer": 2, "d_model": 64, "n_head": 2},
        "student": {"arch": "gpt2", "n_layer": 1, "d_model": 32, "n_head": 2},
        "score_n": 8,
        "score_batch": 4,
        "mope_n": 4,
        "mope_k": 2,
        "block_k": 1,
        "mope_batch": 4,
        "mope_mem_spec": {"arch": "gpt2", "n_layer": 2, "d_model": 64, "n_head": 2},
        "kd_batch": 4,
        "kd_length": 48,
        "kd_steps": 3,
        "kd_warmup_steps": 1,
        "kd_repeats": 1,
        "cache_members": 16,
        "cache_public": 16,
        "cache_teacher_epochs": 1,
        "cache_epochs": 1,
        "cache_top_k": 16,
        "cache_repeats": 1,
        "mem_vocab": 50257,
        "mem_spec": {"arch": "gpt2", "n_layer": 1, "d_model": 32, "n_head": 2},
        "mem_batch": 4,
        "mem_n": 4,
        "mem_length": 48,
        "lens_mem_spec": {"arch": "gpt2", "n_layer": 2, "d_model": 32, "n_head": 2},
        "gen_n": 4,
        "gen_batch": 4,
        "gen_new_tokens": 6,
        # memory probes in this process (no per-process import cost; numbers are not to be read)
        "in_process_probes": True,
    },
}


@dataclass
class Row:
    """One line of the results table. ``ratio`` is always "how many times better ours is" (>1 = better)."""

    item: str
    ours: str
    baseline: str
    ratio: float | None
    ratio_text: str
    goal: str
    met: str  # "yes" | "no" | "n/a"
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "item": self.item, "ours": self.ours, "baseline": self.baseline, "ratio": self.ratio,
            "ratio_text": self.ratio_text, "goal": self.goal, "met": self.met, "notes": list(self.notes),
        }


def peak_memory_row(item: str, ours: dict, base: dict, notes: list[str]) -> Row:
    """A peak-memory row from two probe results (``extra_mb``): ratio = baseline / ours, met when ours is
    smaller (a bounded, chunked computation against one that materialises the full tensor)."""
    ratio = base["extra_mb"] / max(ours["extra_mb"], 1e-9)
    return Row(item=item, ours=f"{fmt_mb(ours['extra_mb'])} peak extra RSS",
               baseline=f"{fmt_mb(base['extra_mb'])} peak extra RSS", ratio=ratio,
               ratio_text=f"{ratio:.1f}x less memory", goal="bounded (chunked); state ratio",
               met=met(ours["extra_mb"] < base["extra_mb"]), notes=notes)


def met(ok: bool | None) -> str:
    return "n/a" if ok is None else ("yes" if ok else "no")


def speedup(ratio: float) -> str:
    return f"{ratio:.2f}x faster" if ratio >= 1 else f"{ratio:.2f}x (slower)"


def fmt_s(seconds: float) -> str:
    if seconds >= 100:
        return f"{seconds:.0f} s"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1000:.0f} ms"


def fmt_mb(mb: float) -> str:
    return f"{mb:.0f} MB" if mb >= 10 else f"{mb:.1f} MB"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------ timing
def interleaved(variants: dict[str, Callable[[], object]], repeats: int,
                warmup: bool | Callable[[], object] = True) -> dict[str, list[float]]:
    """Wall seconds of each variant, ``repeats`` times, interleaved (ABAB, order flipped every round) so a
    load change on this shared machine hits both sides alike. ``warmup``: True = one untimed call of every
    variant first; a callable = call that instead (e.g. every variant on a small slice); False = none."""
    names = list(variants)
    if callable(warmup):
        warmup()
    elif warmup:
        for name in names:
            variants[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeats):
        for name in names if round_ % 2 == 0 else reversed(names):
            gc.collect()
            started = time.perf_counter()
            variants[name]()
            times[name].append(time.perf_counter() - started)
    return times


def ratios(times: dict[str, list[float]], slow: str, fast: str) -> tuple[float, float]:
    """``(median(slow) / median(fast), min(slow) / min(fast))``: the reported ratio and the best-of-n one
    (contention only ever adds time, so the minima are the least disturbed pair)."""
    return median(times[slow]) / median(times[fast]), min(times[slow]) / min(times[fast])


def median(values) -> float:
    return float(statistics.median(values))


def spread(values) -> str:
    """``median (min-max, n=k)`` for the notes."""
    values = list(values)
    return f"{fmt_s(median(values))} (min {fmt_s(min(values))}, max {fmt_s(max(values))}, n={len(values)})"


# ------------------------------------------------------------------------------------------------ data
@cache
def _tokenizer(vocab: int, n_texts: int):
    from kdprivacy import encoding, models
    from kdprivacy.data.synthetic import generate_synthetic

    frame = generate_synthetic(n_texts, seed=4321)
    texts = [encoding.format_prompt(r.instruction, r.context) + r.response
             for r in frame.itertuples(index=False)]
    return models.train_tokenizer(texts, vocab, min_frequency=2)


def tokenizer(mode: dict):
    return _tokenizer(int(mode["vocab"]), int(mode["n_texts"]))


def items(mode: dict, n: int, seed: int = 7):
    """``n`` encoded synthetic Dolly-style examples (prompt + response), the demo's lengths."""
    from kdprivacy import encoding
    from kdprivacy.data.synthetic import generate_synthetic

    frame = generate_synthetic(n, seed=seed)
    frame.insert(0, "id", [f"ex{seed}-{i:05d}" for i in range(len(frame))])
    return encoding.encode_frame(tokenizer(mode), frame, int(mode["max_length"]),
                                 int(mode["max_prompt_length"]))


def texts_of(n: int, seed: int = 7) -> dict[str, str]:
    """id -> response text of :func:`items` (what Zlib compresses)."""
    from kdprivacy.data.synthetic import generate_synthetic

    frame = generate_synthetic(n, seed=seed)
    return {f"ex{seed}-{i:05d}": r for i, r in enumerate(frame["response"])}


def model(mode: dict, spec: dict, seed: int = 0):
    from kdprivacy import models

    return models.build_from_scratch(spec, tokenizer(mode), int(mode["max_length"]), seed).eval()


def n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


# ------------------------------------------------------------------------------------------------ memory
def _status_kb(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc), so RSS is the live memory."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS (Linux ``clear_refs`` 5); False if refused."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def rss_mb() -> float:
    kb = _status_kb("VmRSS")
    if kb is None:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return kb / 1024


def peak_rss_mb() -> float:
    kb = _status_kb("VmHWM")
    if kb is None:
        import resource

        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return kb / 1024


def start_probe(name: str, params: dict) -> subprocess.Popen:
    """``python -m benchmarks.probe NAME PARAMS``: one variant per fresh process (its own peak RSS)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks.probe", name, json.dumps(params)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def finish_probe(proc: subprocess.Popen, timeout: float = 300) -> dict:
    out, err = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"probe {proc.args[3]} failed ({proc.returncode}):\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1])


class Probes:
    """Memory probes: one fresh subprocess per variant, run one at a time (full mode), or -- quick mode, to
    skip the per-process import cost -- called in this process after a peak-RSS reset (same code, rougher)."""

    def __init__(self, in_process: bool):
        self.in_process = in_process
        self.done: dict[str, dict] = {}
        self.pending: dict[str, tuple[str, dict]] = {}

    def add(self, key: str, name: str, params: dict) -> None:
        self.pending[key] = (name, params)

    def result(self, key: str) -> dict:
        if key not in self.done:
            name, params = self.pending.pop(key)
            if self.in_process:
                from benchmarks import probe

                self.done[key] = {**probe.PROBES[name](params), "in_process": True}
            else:
                self.done[key] = finish_probe(start_probe(name, params))
        return self.done[key]


# ------------------------------------------------------------------------------------------------ machine
def _lscpu() -> dict[str, str]:
    try:
        text = subprocess.run(["lscpu"], check=False, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    out = {}
    for line in text.splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            out[key.strip()] = value.strip()
    return out


def _version(module: str) -> str:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # noqa: BLE001 - absent package
        return "not installed"


def machine_info() -> dict[str, str]:
    import torch

    cpu = _lscpu()
    mem_kb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    info = {
        "date (UTC)": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "CPU": cpu.get("Model name", platform.processor() or "unknown"),
        "Architecture": cpu.get("Architecture", platform.machine()),
        "CPU(s)": cpu.get("CPU(s)", str(os.cpu_count())),
        "Thread(s) per core": cpu.get("Thread(s) per core", "?"),
        "Core(s) per socket": cpu.get("Core(s) per socket", "?"),
        "Hypervisor": cpu.get("Hypervisor vendor", "none reported"),
        "Memory": f"{mem_kb / 1024 / 1024:.1f} GiB" if mem_kb else "unknown",
        "OS": platform.platform(),
        "Python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": _version("transformers"),
        "trl": _version("trl"),
        "GPU": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (CPU run)",
    }
    return info


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"
