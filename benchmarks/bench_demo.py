"""The embedded demo end to end: read (never run) the Snakemake benchmark files of a finished demo.

``--demo-dir DIR``: the directory the demo ran in (``make demo`` / ``snakemake --cores 2``), holding
``results/benchmarks/**/*.tsv`` -- one file per job, written by Snakemake's ``benchmark:`` directive
(columns ``s``, ``max_rss`` in MB, ...). Reported: the sum of the jobs' wall seconds, the largest
``max_rss`` of any job, and, when ``DIR/.snakemake/log/`` holds the run's log, the log's span (start from
its file name, end from its last write), which is the end-to-end wall time including scheduling and the
jobs that have no ``benchmark:`` directive. Only jobs with a benchmark file are summed; with 2 cores, jobs
may overlap, so the sum is the serial (CPU-slot) time, not the wall clock.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from datetime import datetime
from pathlib import Path

import pandas as pd

from benchmarks import common
from benchmarks.common import REPO, Row

GOAL_SECONDS = 10 * 60  # issue #18 (was 15 min)


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def read_benchmarks(demo_dir) -> dict | None:
    root = Path(demo_dir) / "results" / "benchmarks"
    files = sorted(root.rglob("*.tsv")) if root.is_dir() else []
    if not files:
        return None
    total, peak, jobs = 0.0, 0.0, []
    for path in files:
        frame = pd.read_csv(path, sep="\t")
        if frame.empty or "s" not in frame.columns:
            continue
        seconds = _number(frame["s"].iloc[-1])
        rss = _number(frame["max_rss"].iloc[-1]) if "max_rss" in frame.columns else math.nan
        total += 0.0 if math.isnan(seconds) else seconds
        if not math.isnan(rss):
            peak = max(peak, rss)
        jobs.append((str(path.relative_to(root)), seconds, rss))
    return {"sum_s": total, "max_rss_mb": peak, "jobs": jobs, "n": len(jobs)}


def _elapsed(text: str) -> float | None:
    """Seconds of Snakemake's closing ``Elapsed time: H:MM:SS.ffffff`` line, if the run finished."""
    match = re.search(r"Elapsed time: (?:(\d+) days?, )?(\d+):(\d+):(\d+(?:\.\d+)?)", text)
    if not match:
        return None
    days, hours, minutes, seconds = match.groups()
    return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def log_span(demo_dir) -> dict | None:
    """The longest Snakemake run logged in ``DIR/.snakemake/log`` (the demo itself, not a later ``--report``
    or dry run): ``seconds`` (its ``Elapsed time`` line, else start from the file name to the last write),
    ``name``, ``config_md5`` (as logged) and ``finished``."""
    best = None
    for path in (Path(demo_dir) / ".snakemake" / "log").glob("*.snakemake.log"):
        text = path.read_text(errors="replace")
        seconds = _elapsed(text)
        finished = seconds is not None
        if seconds is None:
            try:
                started = datetime.strptime(path.name.split(".snakemake.log")[0], "%Y-%m-%dT%H%M%S.%f")
            except ValueError:
                continue
            seconds = path.stat().st_mtime - started.timestamp()
        md5 = re.search(r"Config MD5: ([0-9a-f]{32})", text)
        found = {"seconds": seconds, "name": path.name, "finished": finished,
                 "config_md5": md5.group(1) if md5 else None}
        if best is None or seconds > best["seconds"]:
            best = found
    return best


def current_config_md5() -> str | None:
    """``config.yaml``'s digest as Snakemake logs it (``Config MD5``: the MD5 of the parsed config dumped as
    JSON with sorted keys), so comments and formatting do not count."""
    import yaml

    path = REPO / "config.yaml"
    if not path.is_file():
        return None
    return hashlib.md5(json.dumps(yaml.safe_load(path.read_text()), sort_keys=True).encode("utf-8")).hexdigest()


def row_demo(demo_dir) -> Row:
    item = "embedded demo end to end (2 cores)"
    goal = f"<= {GOAL_SECONDS // 60} min wall; peak memory stated"
    if demo_dir is None:
        return Row(item, "not measured", "--", None, "--", goal, "n/a",
                   ["pass --demo-dir DIR (a directory where the demo ran) to read its results/benchmarks/"])
    found = read_benchmarks(demo_dir)
    if found is None:
        return Row(item, "not measured", "--", None, "--", goal, "n/a",
                   [f"no Snakemake benchmark files under {Path(demo_dir) / 'results' / 'benchmarks'}"])
    span = log_span(demo_dir)
    wall = span["seconds"] if span is not None else found["sum_s"]
    stale = span is not None and span["config_md5"] not in (None, current_config_md5())
    slowest = sorted(found["jobs"], key=lambda j: -(j[1] if not math.isnan(j[1]) else 0))[:3]
    notes = [
        (f"{found['n']} benchmarked jobs under {demo_dir}: sum of job wall times "
         f"{found['sum_s'] / 60:.1f} min, largest job max_rss {found['max_rss_mb']:.0f} MB"),
        (f"wall = Snakemake log {span['name']} ("
         + ("its Elapsed time" if span["finished"] else "start to last write; the run did not finish") + ")")
        if span is not None
        else "no .snakemake/log in the demo dir: wall = sum of benchmarked job times "
             "(excludes unbenchmarked jobs and scheduling)",
        "slowest jobs: " + "; ".join(f"{name} {s:.0f} s" for name, s, _ in slowest),
    ]
    if stale:
        notes.append(f"STALE: that run's config MD5 {span['config_md5']} is not the current config.yaml's "
                     f"({current_config_md5()}): an older demo or another config; rerun the demo, then "
                     "this suite")
    ok = wall <= GOAL_SECONDS and (span is None or span["finished"])
    return Row(
        item=item,
        ours=(f"{wall / 60:.1f} min wall, peak {found['max_rss_mb']:.0f} MB"
              + (" (older config)" if stale else "")),
        baseline="--", ratio=None, ratio_text="--", goal=goal, met="n/a" if stale else common.met(ok),
        notes=notes,
    )
