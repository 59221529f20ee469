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
    path.write_text(f"Config MD5: {logged}\n...\nElapsed time: 0:09:30.0\n")
    row = bench_demo.row_demo(tmp_path)
    assert row.met == "yes" and "9.5 min" in row.ours and "older config" not in row.ours, row
    path.write_text(f"Config MD5: {logged}\n...\nElapsed time: 0:12:30.0\n")
    row = bench_demo.row_demo(tmp_path)  # over the 10-minute goal
    assert row.met == "no" and "12.5 min" in row.ours and "<= 10 min" in row.goal, row
    path.write_text(f"Config MD5: {'0' * 32}\n...\nElapsed time: 0:12:30.0\n")
    row = bench_demo.row_demo(tmp_path)
    assert row.met == "n/a" and "older config" in row.ours and any("STALE" in n for n in row.notes)


def test_realsize_quick_run_compares_against_trl_with_the_same_losses(tmp_path):
    """benchmarks.realsize --quick (tiny shapes, the real-size code path): a KD row per architecture and
    objective against TRL's GKDTrainer, our loss equal to TRL's formula, the memory probe's three losses equal,
    the block written between its own markers."""
    import json

    readme = tmp_path / "README.md"
    readme.write_text("x\n<!-- benchmarks:realsize:start -->\nSTALE\n<!-- benchmarks:realsize:end -->\ny\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.realsize", "--quick", "--readme", str(readme), "--json",
         str(tmp_path / "out.json")],
        check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = json.loads((tmp_path / "out.json").read_text())["rows"]
    items = [r["item"] for r in rows]
    for arch in ("gpt2", "llama"):
        for label in ("forward KL", "generalized JSD, beta 0.5"):
            assert f"KD step at real size, {arch} ({label})" in items
    kd = [r for r in rows if r["item"].startswith("KD step at real size")]
    assert len(kd) == 4
    for row in kd:
        assert "(TRL GKDTrainer)" in row["baseline"] and row["ratio"] > 0
        diff = re.search(r"generalized_jsd_loss\| on one batch = ([0-9.e+-]+)", " ".join(row["notes"]))
        assert diff and float(diff.group(1)) < 1e-5, row["notes"]
    by_item = {r["item"]: r for r in rows}
    scoring = by_item["scoring all token-level attacks at real size (loss, min_k, min_k_pp, zlib)"]
    assert float(re.search(r"max \|ours - baseline\| = ([0-9.e+-]+)", scoring["notes"][-1]).group(1)) < 1e-4
    assert "less memory" in by_item["scoring peak memory at real size, vocab 5000"]["ratio_text"]
    for batch in (1, 4):  # the quick mode's batch sizes; each row compares the tokens of both decoders
        same = re.search(r"(\d+)/(\d+) generations token-identical",
                         by_item[f"greedy generation at real size, batch {batch}"]["notes"][-1])
        assert same and same.group(1) == same.group(2)
    mope = by_item["MoPe at real size (K=2)"]
    assert float(re.search(r"max \|diff\| = ([0-9.e+-]+)", mope["notes"][0]).group(1)) < 1e-6
    assert "1 + reload/pass" in mope["notes"][1]
    memory = rows[-1]
    assert memory["item"].startswith("KD step peak memory at real size")
    losses = [float(x) for x in re.findall(r"(?:ours|plain|TRL formula) (\d+\.\d+)", memory["notes"][-1])]
    assert len(losses) == 3 and max(losses) - min(losses) < 1e-5, memory["notes"]
    text = readme.read_text()
    assert "STALE" not in text and text.startswith("x\n<!-- benchmarks:realsize:start -->\nLast run:")
    assert text.endswith("<!-- benchmarks:realsize:end -->\ny\n")


def test_gpu_check_runs_its_whole_code_path_on_cpu_at_toy_size(tmp_path):
    """benchmarks/gpu_check.py --cpu --tiny: every check but the 2-GPU one (which needs two CUDA devices), with
    the same code the GPU run takes; the losses of the three KD sides agree, 8-bit keeps the next token."""
    import json

    out = tmp_path / "gpu.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--cpu", "--tiny", "--json", str(out)],
                          check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "| check | result |" in proc.stdout
    result = json.loads(out.read_text())
    rows = {r["check"]: r for r in result["rows"]}
    for name in ("fkl", "jsd"):
        kd = rows[f"KD step bf16, {name}"]
        # the first step of every side: the same student on the same batch (bf16 autocast: ~1e-2 rounding)
        assert kd["loss_rel_diff_vs_trl"] < 0.03, kd
        assert abs(kd["ours_first_loss"] - kd["plain_first_loss"]) < 0.03 * abs(kd["plain_first_loss"]), kd
        assert kd["ours_s"] > 0 and kd["trl_s"] > 0
    int8 = rows["8-bit teacher forward"]
    assert int8["next_token_agreement"] > 0.9 and int8["max_abs_logprob_diff"] < 1.0
    gens = [r for k, r in rows.items() if k.startswith("generation batch")]
    assert [r["of"] for r in gens] == [1, 4] and all(r["identical"] == r["of"] for r in gens)
    assert "2-process data-parallel KD step" not in rows  # no GPU here
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check"], check=False, cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "no CUDA device" in proc.stderr
