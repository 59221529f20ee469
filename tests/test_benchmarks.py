"""The benchmark harness (benchmarks/): a tiny ``--quick`` run prints the ratio table (no timing asserts)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HEADER = "| item | ours | baseline | ratio | goal | met |"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    demo = tmp / "demo"
    bench = demo / "results" / "benchmarks" / "score_model" / "gpt2"
    bench.mkdir(parents=True)
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    (bench / "teacher.tsv").write_text(header + "61.5\t0:01:01\t812.4\t2600\t700\t750\t0\t0\t95\t60\n")
    (bench / "kd-small.tsv").write_text(header + "30.0\t0:00:30\t640.0\t2600\t500\t550\t0\t0\t90\t29\n")
    readme = tmp / "README.md"
    readme.write_text("# x\n\nbefore\n<!-- benchmarks:results:start -->\nSTALE-RESULTS-42\n"
                      "<!-- benchmarks:results:end -->\nafter\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--demo-dir", str(demo), "--readme", str(readme),
         "--json", str(tmp / "out.json")],
        check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    return proc, readme, tmp


def test_quick_run_prints_a_ratio_per_item(quick_run):
    proc, _, _ = quick_run
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = proc.stdout.splitlines()
    assert HEADER in lines
    rows = [line for line in lines[lines.index(HEADER) + 2:] if line.startswith("| ")]
    items = " ".join(row.split(" | ")[0] for row in rows)
    for needle in ("token-level attacks", "50k vocabulary", "MoPe, whole model", "per-block MoPe",
                   "MoPe memory", "per-block logit lens + pooled",
                   "per-block logit lens peak memory", "forward KL", "generalized JSD", "cached top-k", "generation", "demo"):
        assert needle in items, (needle, items)
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split(" | ")]
        assert len(cells) == 6, row
        assert cells[5] in {"yes", "no", "n/a"}, row  # never "error"
    with_ratio = [row for row in rows if re.search(r"\d+(\.\d+)?x\b", row.split(" | ")[3])]
    assert len(with_ratio) >= 10, rows


def test_quick_run_reads_the_demo_benchmarks_and_writes_between_markers(quick_run):
    proc, readme, tmp = quick_run
    assert proc.returncode == 0, proc.stderr[-4000:]
    demo_row = next(line for line in proc.stdout.splitlines() if line.startswith("| embedded demo"))
    assert "812 MB" in demo_row  # max of the jobs' max_rss
    assert "1.5 min" in demo_row  # 61.5 s + 30 s, no Snakemake log in the fake demo dir
    text = readme.read_text()
    assert text.startswith("# x\n\nbefore\n<!-- benchmarks:results:start -->")
    assert text.endswith("<!-- benchmarks:results:end -->\nafter\n")
    assert "STALE-RESULTS-42" not in text and HEADER in text and "| CPU |" in text
    assert (tmp / "out.json").is_file()


def test_demo_row_matches_the_config_md5_snakemake_logs(tmp_path, monkeypatch):
    """The staleness check must compute the digest the way Snakemake logs it (parsed config as sorted JSON),
    not of the file's bytes: a comment-only edit is not a different config."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))
    import json

    import yaml

    from benchmarks import bench_demo

    raw = yaml.safe_load((bench_demo.REPO / "config.yaml").read_text())
    logged = __import__("hashlib").md5(json.dumps(raw, sort_keys=True).encode()).hexdigest()
    bench = tmp_path / "results" / "benchmarks"
    bench.mkdir(parents=True)
    (bench / "job.tsv").write_text("s\th:m:s\tmax_rss\n600.0\t0:10:00\t900.0\n")
    log = tmp_path / ".snakemake" / "log"
    log.mkdir(parents=True)
    path = log / "2026-11-28T134215.893275.snakemake.log"
    path.write_text(f"Config MD5: {logged}\n...\nElapsed time: 0:12:30.0\n")
    row = bench_demo.row_demo(tmp_path)
    assert row.met == "yes" and "12.5 min" in row.ours and "older config" not in row.ours, row
    path.write_text(f"Config MD5: {'0' * 32}\n...\nElapsed time: 0:12:30.0\n")
    row = bench_demo.row_demo(tmp_path)
    assert row.met == "n/a" and "older config" in row.ours and any("STALE" in n for n in row.notes)
