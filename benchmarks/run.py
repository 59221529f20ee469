"""Run the side-by-side benchmark suite and print ``item | ours | baseline | ratio | goal | met``.

    python -m benchmarks.run [--quick] [--demo-dir DIR] [--only ITEMS] [--threads N] [--json PATH]

Every item times the library's own code path and a baseline *in the same run*, interleaved, and reports
their ratio (this machine is shared and noisy; absolute seconds do not transfer). A full run (no
``--quick``/``--only``) writes its table and the machine it ran on into ``benchmarks/README.md`` between
the result markers; ``--quick`` is a tiny smoke run whose numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

for _key, _value in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                     "TRANSFORMERS_VERBOSITY": "error", "TRL_EXPERIMENTAL_SILENCE": "1"}.items():
    os.environ.setdefault(_key, _value)

import warnings  # noqa: E402

warnings.filterwarnings("ignore", category=FutureWarning)

from benchmarks import common  # noqa: E402
from benchmarks.common import Row  # noqa: E402

ITEMS = ("attacks", "memory", "mope", "blocks", "kd", "generation", "demo")
README = Path(__file__).resolve().parent / "README.md"
START, END = "<!-- benchmarks:results:start -->", "<!-- benchmarks:results:end -->"
COMMAND = "python -m benchmarks.run"


def _error_row(item: str, err: BaseException) -> Row:
    return Row(item, f"error: {type(err).__name__}: {err}"[:120], "--", None, "--", "--", "error",
               ["see the traceback on stderr"])


def _guard(rows: list[Row], item: str, fn) -> object:
    """Run one benchmark; an exception becomes an ``error`` row (the run goes on, the exit code says it)."""
    started = time.perf_counter()
    common.log(f"{item} ...")
    try:
        result = fn()
    except Exception as err:  # noqa: BLE001 - reported as a row, traceback on stderr
        traceback.print_exc()
        rows.append(_error_row(item, err))
        return None
    common.log(f"{item} done in {time.perf_counter() - started:.0f} s")
    return result


def run(args) -> tuple[list[Row], dict]:
    import torch

    torch.set_num_threads(args.threads)
    os.environ["KDP_BENCH_THREADS"] = str(args.threads)  # for the probe subprocesses
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    mode_name = "quick" if args.quick else "full"
    mode = common.MODES[mode_name]
    selected = set(args.only.split(",")) if args.only else set(ITEMS)
    unknown = selected - set(ITEMS)
    if unknown:
        raise SystemExit(f"unknown --only item(s) {sorted(unknown)}; choose from {', '.join(ITEMS)}")

    from benchmarks import bench_blocks, bench_demo, bench_generation, bench_kd, bench_mope, bench_scoring

    meta = {"mode": mode_name, "machine": common.machine_info(), "load_before": common.load_average()}
    started = time.perf_counter()
    probes = common.Probes(in_process=bool(mode["in_process_probes"]))
    if "memory" in selected:
        for impl in ("ours", "baseline"):
            probes.add(f"score-{impl}", "score_memory", bench_scoring.memory_probe_params(mode, impl))
    mope_impls = ("plain", "inplace", "reload") + (() if args.quick else ("block_inplace", "block_reload"))
    if "mope" in selected:
        for impl in mope_impls:
            probes.add(f"mope-{impl}", "mope_memory", bench_mope.memory_probe_params(mode, impl))
    if "blocks" in selected:
        for impl in ("ours", "baseline"):
            probes.add(f"lens-{impl}", "lens_memory", bench_blocks.memory_probe_params(mode, impl))

    rows: list[Row] = []
    if "attacks" in selected:
        row = _guard(rows, "attacks", lambda: bench_scoring.bench_attacks(mode))
        rows += [row] if row else []
    if "memory" in selected:
        row = _guard(rows, "memory (50k vocabulary)", lambda: bench_scoring.row_memory(
            mode, probes.result("score-ours"), probes.result("score-baseline")))
        rows += [row] if row else []
    if "mope" in selected:
        rows += _guard(rows, "mope", lambda: bench_mope.bench_mope(mode)) or []
        row = _guard(rows, "mope memory", lambda: bench_mope.row_memory(
            mode, {impl: probes.result(f"mope-{impl}") for impl in mope_impls}))
        rows += [row] if row else []
    if "blocks" in selected:
        row = _guard(rows, "per-block lens", lambda: bench_blocks.bench_blocks(mode))
        rows += [row] if row else []
        row = _guard(rows, "per-block lens memory", lambda: bench_blocks.row_memory(
            mode, probes.result("lens-ours"), probes.result("lens-baseline")))
        rows += [row] if row else []
    if "kd" in selected:
        result = _guard(rows, "kd", lambda: bench_kd.bench_kd(mode))
        if result:
            kd_rows, extra = result
            rows += kd_rows
            row = _guard(rows, "cached teacher", lambda: bench_kd.bench_cached_teacher(mode, extra))
            rows += [row] if row else []
    if "generation" in selected:
        rows += _guard(rows, "generation", lambda: bench_generation.bench_generation(mode)) or []
    if "demo" in selected:
        rows.append(bench_demo.row_demo(args.demo_dir))
    meta["seconds"] = time.perf_counter() - started
    meta["load_after"] = common.load_average()
    meta["threads"] = torch.get_num_threads()
    return rows, meta


# ------------------------------------------------------------------------------------------------ output
def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(rows: list[Row]) -> str:
    lines = ["| item | ours | baseline | ratio | goal | met |", "|---|---|---|---|---|---|"]
    for r in rows:
        cells = (r.item, r.ours, r.baseline, r.ratio_text, r.goal, r.met)
        lines.append("| " + " | ".join(_cell(x) for x in cells) + " |")
    return "\n".join(lines)


def notes(rows: list[Row]) -> str:
    out = []
    for r in rows:
        kept = [n for n in r.notes if n]
        if kept:
            out.append(f"- **{r.item}**: " + " · ".join(kept))
    return "\n".join(out)


def command_line(args) -> str:
    parts = [COMMAND]
    if args.quick:
        parts.append("--quick")
    if args.demo_dir:
        parts.append(f"--demo-dir {args.demo_dir}")
    if args.only:
        parts.append(f"--only {args.only}")
    if args.threads != 1:
        parts.append(f"--threads {args.threads}")
    return " ".join(parts)


def readme_block(rows: list[Row], meta: dict, args) -> str:
    machine = "\n".join(f"| {k} | {_cell(v)} |" for k, v in meta["machine"].items())
    n_met = sum(r.met == "yes" for r in rows)
    n_goal = sum(r.met in ("yes", "no") for r in rows)
    return "\n".join([
        START,
        (f"Last run: `{command_line(args)}` ({meta['mode']} mode), {meta['seconds'] / 60:.1f} min, "
         f"torch threads {meta['threads']}; load average (1/5/15 min) {meta['load_before']} before, "
         f"{meta['load_after']} after. Goals met: {n_met} of {n_goal}."),
        "",
        "| machine | |",
        "|---|---|",
        machine,
        "",
        table(rows),
        "",
        "Details (workload, spread of the repeats, equivalence checks):",
        "",
        notes(rows),
        END,
    ])


def write_readme(path: Path, block: str, start: str = START, end: str = END) -> None:
    """Replace the text between ``start`` and ``end`` in ``path`` by ``block`` (appended when absent)."""
    text = path.read_text() if path.exists() else f"# Benchmarks\n\n{start}\n{end}\n"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny smoke run (checks the harness; no timings)")
    parser.add_argument("--demo-dir", default=None,
                        help="directory where the demo ran: read its results/benchmarks/ "
                             "(never runs the demo)")
    parser.add_argument("--only", default=None, help=f"comma-separated subset of: {', '.join(ITEMS)}")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for every variant and probe (default 1: on a shared machine a "
                             "multi-threaded run is slowed far more, and more erratically, by other load)")
    parser.add_argument("--readme", type=Path, default=None,
                        help="write the results block here "
                             "(default: benchmarks/README.md on a full run only)")
    parser.add_argument("--json", type=Path, default=None, help="also write rows + machine info as JSON")
    args = parser.parse_args(argv)

    rows, meta = run(args)
    print(table(rows))
    print()
    print(notes(rows))
    print(f"\n{meta['mode']} mode, {meta['seconds']:.0f} s; "
          f"load average {meta['load_before']} -> {meta['load_after']}")
    readme = args.readme if args.readme is not None else (None if args.quick or args.only else README)
    if readme is not None:
        write_readme(readme, readme_block(rows, meta, args))
        print(f"results written to {readme}")
    if args.json is not None:
        args.json.write_text(json.dumps({"meta": meta, "rows": [r.as_dict() for r in rows]}, indent=2))
    return 1 if any(r.met == "error" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
