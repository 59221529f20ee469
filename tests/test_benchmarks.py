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
                   "MoPe memory", "forward KL", "generalized JSD", "cached top-k", "generation", "demo"):
        assert needle in items, (needle, items)
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split(" | ")]
        assert len(cells) == 6, row
        assert cells[5] in {"yes", "no", "n/a"}, row  # never "error"
    with_ratio = [row for row in rows if re.search(r"\d+(\.\d+)?x\b", row.split(" | ")[3])]
    assert len(with_ratio) >= 8, rows


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
