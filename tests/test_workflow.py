"""The workflow end to end on configs/smoke.yaml, as a user runs it: outputs, report, reruns, lint.

Marked ``workflow`` (minutes on 2 cores). One module-scoped run is shared by most tests.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from kdprivacy.config import load_yaml
from kdprivacy.mia.registry import BLOCK_SIGNAL_NAMES

pytestmark = pytest.mark.workflow

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "configs" / "smoke.yaml"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
MODELS = ("teacher", *load_yaml(str(SMOKE)).families["gpt2"].all_students())


def smk(workdir: Path, *args: str, configfile: Path = SMOKE, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
           "--configfile", str(configfile), "--cores", "2", *args]
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=1800)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc


def planned_jobs(proc: subprocess.CompletedProcess) -> dict[str, int]:
    """Parse the 'Job stats' table of a dry run into {rule: count}."""
    text = proc.stdout + proc.stderr
    if "Nothing to be done" in text:
        return {}
    block = text.split("Job stats:", 1)[1]
    jobs = {}
    for line in block.splitlines()[3:]:
        match = re.match(r"^(\S+)\s+(\d+)$", line.strip())
        if not match:
            break
        jobs[match.group(1)] = int(match.group(2))
    jobs.pop("total", None)
    return jobs


def write_config(tmp_path: Path, edit) -> Path:
    raw = yaml.safe_load(SMOKE.read_text())
    edit(raw)
    path = tmp_path / "edited.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("smoke")
    smk(workdir)
    return workdir


def test_tables_figure_and_provenance(run_dir):
    tables = run_dir / "results" / "tables"
    mia = pd.read_csv(tables / "mia.csv")
    attacks = yaml.safe_load(SMOKE.read_text()).get("attacks", {}).get("names", ["loss", "min_k", "min_k_pp", "zlib"])
    assert set(mia["model"]) == set(MODELS)
    assert len(mia) == len(MODELS) * len(attacks)
    tested = mia["note"].isna() | (mia["note"] == "")  # an NA cell carries its reason (e.g. No-KD ref_nokd)
    assert mia.loc[tested, "auc"].between(0, 1).all() and mia.loc[~tested, "auc"].isna().all()
    assert (mia["n_members"] == 60).all() and (mia["n_nonmembers"] == 60).all()
    # 60 non-members: TPR at 1% FPR needs >= 100 of them, so it must not be reported.
    assert mia["tpr_at_fpr_0.01"].isna().all()
    mem = pd.read_csv(tables / "memorization.csv")
    assert set(mem["model"]) == set(MODELS)
    assert {"member_rate", "nonmember_rate", "gap"} <= set(mem.columns)
    card = pd.read_csv(tables / "data_card.csv")
    assert card.query("category == 'ALL' and pool == 'private'")["n_examples"].item() == 60
    png = run_dir / "results" / "figures" / "mia_auc_heatmap.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for model in MODELS:
        mdir = run_dir / "results" / "gpt2" / "seed0" / "models" / model
        assert (mdir / "model.safetensors").exists() and (mdir / "config.json").exists()
        prov = yaml.safe_load((mdir / "provenance.json").read_text())
        assert prov["params"]["cfg"]["seed"] == 0 and prov["params"]["code"]
        assert prov["inputs"]["manifest"]["sha256"] and "torch" in prov["packages"]


def test_memorization_blocks_utility_tables(run_dir):
    tables = run_dir / "results" / "tables"
    blocks = pd.read_csv(tables / "blocks.csv")
    smoke = load_yaml(str(SMOKE))
    n_layers = {"teacher": smoke.families["gpt2"].bases["teacher"].from_scratch.n_layer}
    n_layers |= {m: smoke.families["gpt2"].bases[s.base].from_scratch.n_layer
                 for m, (s, _, _) in smoke.families["gpt2"].all_students().items()}
    assert blocks.groupby("model")["block"].nunique().to_dict() == n_layers
    assert blocks["auc"].between(0, 1).all()
    assert (blocks.groupby("model")["signal"].apply(set) == set(BLOCK_SIGNAL_NAMES)).all()
    assert blocks.loc[blocks["signal"] == "probe", "access"].str.contains("upper-bound").all()
    summary = pd.read_csv(tables / "memorization_summary.csv")
    assert {"match_rate", "exact_k", "rouge_l", "approx_memorized"} <= set(summary["metric"])
    inheritance = pd.read_csv(tables / "inheritance.csv")
    assert set(inheritance["model"]) == set(MODELS) - {"teacher"}
    assert (inheritance[["both", "teacher_only", "student_only", "neither"]].sum(axis=1) == inheritance["n"]).all()
    assert set(pd.read_csv(tables / "utility.csv")["model"]) == set(MODELS)
    assert "spearman" in pd.read_csv(tables / "membership_vs_memorization.csv")


def test_ablation_axes_land_in_tables(run_dir):
    mia = pd.read_csv(run_dir / "results" / "tables" / "mia.csv")
    axes = mia.dropna(subset=["ablation"]).groupby("ablation")["ablation_value"].agg(lambda v: sorted(set(v)))
    assert sorted(axes["objective"]) == ["rkl"]
    assert sorted(float(v) for v in axes["sgo_ratio"]) == [0.0]
    assert mia.loc[mia["model"] == "kd-small.obj-rkl", "method"].eq("kd").all()


def test_kd_method_mechanisms_are_alive(run_dir):
    models = run_dir / "results" / "gpt2" / "seed0" / "models"
    log = {m: pd.read_csv(models / m / "train_log.csv") for m in MODELS if m != "teacher"}
    assert (log["seqkd-small"]["frac_differs_from_gt"] > 0.5).all()
    assert (log["imitkd-small"]["frac_sgo_batches"] == 1.0).all()
    assert (log["imitkd-small.sgo-0"]["frac_sgo_batches"] == 0.0).all()
    assert (log["gkd-small"]["n_sgo_generated"] > 0).all()
    assert log["minillm-small"]["reward"].notna().all() and log["minillm-small"]["clip_frac"].between(0, 1).all()
    assert "sgo_threshold" in log["distillm-small"] and log["distillm-small"]["sgo_threshold"].notna().all()
    prov = yaml.safe_load((models / "gkd-small" / "provenance.json").read_text())
    assert prov["params"]["cfg"]["init"] == "init" and "/init/small" in prov["params"]["cfg"]["base"]["name_or_path"]
    generations = pd.read_parquet(run_dir / "results" / "gpt2" / "seed0" / "generations" / "teacher.parquet")
    manifest = pd.read_parquet(run_dir / "results" / "data" / "manifest.parquet").set_index("id")
    assert set(manifest.loc[generations["id"], "pool"]) == {"public"}


def test_figures_findings_and_summary(run_dir):
    figures = run_dir / "results" / "figures"
    expected = ["mia_auc_gpt2_small", "mia_auc_baselines", "risk_by_category", "roc_loglog", "memorization_rate",
                "memorization_gap", "membership_vs_memorization", "utility_rouge_l", "privacy_vs_utility",
                "blocks_depth", "ablation_objective", "ablation_sgo"]
    for name in expected:
        assert (figures / f"{name}.png").read_bytes()[:4] == b"\x89PNG", name
    findings = pd.read_csv(run_dir / "results" / "tables" / "findings.csv")
    assert {"nokd_near_chance", "teacher_leaks_more_than_students"} <= set(findings["claim"])
    # A from-scratch run maps to no paper cell: the comparison table is empty, never invented.
    assert pd.read_csv(run_dir / "results" / "tables" / "paper_comparison.csv").empty
    summary = (run_dir / "results" / "summary.md").read_text()
    for link in re.findall(r"\]\(([^)]+)\)", summary):
        assert (run_dir / "results" / link).exists(), link


def test_report_builds(run_dir):
    smk(run_dir, "--report", "report.html")
    html = (run_dir / "report.html").read_text(errors="replace")
    for name in ("mia_auc_heatmap", "ablation_objective", "blocks_depth", "risk_by_category"):
        assert name in html, name
    # the tidy tables are in the report too (category "Tables"), not only the figures
    for name in ("mia.csv", "findings.csv", "memorization.csv", "utility.csv", "blocks.csv"):
        assert name in html, name


def test_complete_run_has_nothing_to_do(run_dir):
    assert planned_jobs(smk(run_dir, "-n")) == {}


def test_student_hparam_change_reruns_only_that_student(run_dir, tmp_path):
    # seqkd-small has no ablation copies (kd-small's objective copy would rightly follow kd-small's lr).
    def edit(raw):
        raw["families"]["gpt2"]["students"]["seqkd-small"]["train"]["lr"] = 5e-4

    jobs = planned_jobs(smk(run_dir, "-n", configfile=write_config(tmp_path, edit)))
    assert jobs.get("train_student") == 1
    assert jobs.get("score_model") == 1 and jobs.get("memorization") == 1
    for upstream in ("prepare_data", "train_tokenizer", "pretrain_base", "train_teacher"):
        assert upstream not in jobs, jobs


def test_same_seed_reproduces_manifest_and_tables(run_dir, tmp_path):
    """A second run from scratch (without the ablation copies and the per-block/utility stages, to save
    time; they do not feed these tables) gives bit-identical manifest, MIA and memorization numbers."""

    def lighter(raw):
        del raw["families"]["gpt2"]["ablations"]
        raw["blocks"] = {"enabled": False}
        raw["utility"] = {"enabled": False}

    smk(tmp_path, configfile=write_config(tmp_path, lighter))
    rel = "results/data/manifest.parquet"
    assert pd.read_parquet(run_dir / rel).equals(pd.read_parquet(tmp_path / rel))
    for table in ("mia.csv", "memorization.csv", "memorization_summary.csv", "data_card.csv"):
        first = pd.read_csv(run_dir / "results" / "tables" / table)
        second = pd.read_csv(tmp_path / "results" / "tables" / table)
        if "model" in first:
            first = first[first["model"].isin(second["model"])].reset_index(drop=True)
        assert len(second) > 0
        # dtype may differ (an all-empty ablation column reads as float); values must be bit-identical.
        pd.testing.assert_frame_equal(first, second, check_exact=True, check_dtype=False)


def test_other_split_seed_changes_split(run_dir, tmp_path):
    cfg = write_config(tmp_path, lambda raw: raw["data"]["split"].update(seed=1))
    smk(tmp_path, "results/data/manifest.parquet", configfile=cfg)
    a = pd.read_parquet(run_dir / "results/data/manifest.parquet").set_index("id")["pool"]
    b = pd.read_parquet(tmp_path / "results/data/manifest.parquet").set_index("id")["pool"]
    assert set(a.index) == set(b.index)
    assert (a != b.loc[a.index]).mean() > 0.2


def test_bad_config_stops_before_any_job(tmp_path):
    cfg = write_config(tmp_path, lambda raw: raw["families"]["gpt2"]["teacher"]["train"].update(lr=-1))
    proc = smk(tmp_path, configfile=cfg, check=False)
    assert proc.returncode != 0
    assert "families.gpt2.teacher.train.lr" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()


def test_lint_is_clean(tmp_path):
    proc = smk(tmp_path, "--lint", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Lints for" not in out, out[-4000:]


def test_snakefmt_clean():
    # plain `snakefmt --check .` in the repository: the line length comes from pyproject.toml [tool.snakefmt]
    proc = subprocess.run([sys.executable, "-m", "snakefmt", "--check", "."], cwd=REPO, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    checked = re.search(r"All (\d+) file\(s\) would be left unchanged", proc.stdout + proc.stderr)
    assert checked and int(checked.group(1)) == 1 + len(list((REPO / "rules").glob("*.smk")))


@pytest.mark.parametrize("name", ["paper-gpt2", "paper-opt", "paper-llama"])
def test_paper_configs_plan_offline_with_the_slurm_profile(name, tmp_path):
    """The full paper DAG plans offline (nothing touches the hub) and the SLURM profile applies to it."""
    proc = smk(tmp_path, "-n", "--workflow-profile", str(REPO / "profiles" / "slurm"),
               configfile=REPO / "configs" / f"{name}.yaml")
    jobs = planned_jobs(proc)
    assert jobs["train_student"] >= 14 and jobs["train_teacher"] >= 1 and jobs["attack_metrics"] >= 15
    assert "slurm_partition=gpu" in proc.stdout + proc.stderr
