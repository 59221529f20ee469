"""Offline compute nodes: download_hub fetches every hub name of a config; jobs read only the cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dag import plan_jobs

from kdprivacy import config, hub
from kdprivacy.data.sources import load_source

REPO = Path(__file__).resolve().parents[1]
PAPER = {p.stem: config.load_yaml(str(p)) for p in sorted((REPO / "configs").glob("paper-*.yaml"))}


def test_paper_configs_name_every_hub_model_and_the_dataset():
    cfg = PAPER["paper-opt"]
    entries = hub.entries(cfg)
    models = {e["repo_id"] for e in entries if e["repo_type"] == "model"}
    assert models == {"facebook/opt-2.7b", "facebook/opt-1.3b", "facebook/opt-350m", "facebook/opt-125m",
                      "stabilityai/stablelm-3b-4e1t"}
    assert [e["repo_id"] for e in entries if e["repo_type"] == "dataset"] == ["databricks/databricks-dolly-15k"]
    llama = {e["repo_id"] for e in hub.entries(PAPER["paper-llama"])}
    assert {"openlm-research/open_llama_7b", "meta-llama/Llama-2-13b-hf"} <= llama


@pytest.mark.parametrize("name", sorted(PAPER))
def test_paper_configs_pin_every_hub_name_to_a_commit(name):
    assert hub.entries(PAPER[name]) and hub.unpinned(PAPER[name]) == []
    for entry in hub.entries(PAPER[name]):
        assert len(entry["revision"]) == 40 and int(entry["revision"], 16) >= 0, entry


def test_local_models_and_data_need_no_download(tmp_path):
    smoke = config.load_yaml(str(REPO / "configs" / "smoke.yaml"))
    assert hub.entries(smoke) == []
    raw = {"families": {"f": {"bases": {"t": {"name_or_path": str(tmp_path)}, "s": {"name_or_path": "./x/y"}},
                              "teacher": {"base": "t"}}},
           "attacks": {"names": ["loss"]}}
    assert hub.entries(config.validate_config(raw)) == []


def test_download_records_the_resolved_commit(tmp_path, monkeypatch):
    import huggingface_hub

    sha = "a" * 40
    calls = []

    def fake_snapshot(repo_id, revision=None, repo_type=None, cache_dir=None, ignore_patterns=None):
        calls.append((repo_id, revision, repo_type, tuple(ignore_patterns)))
        path = tmp_path / f"{repo_type}s--{repo_id.replace('/', '--')}" / "snapshots" / sha
        path.mkdir(parents=True)
        return str(path)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    out = hub.download([{"repo_id": "org/m", "revision": "main", "repo_type": "model"},
                        {"repo_id": "org/d", "revision": None, "repo_type": "dataset"}])
    assert [e["commit"] for e in out] == [sha, sha] and calls[0][:3] == ("org/m", "main", "model")
    assert "*.msgpack" in calls[0][3] and Path(out[1]["path"]).is_dir()
    assert hub.snapshot_of(out, "org/d", "dataset")["path"] == out[1]["path"]
    with pytest.raises(KeyError, match="org/zz"):
        hub.snapshot_of(out, "org/zz", "dataset")
    with pytest.raises(RuntimeError, match="asked for commit b{40}, got a{40}"):
        hub.download([{"repo_id": "org/x", "revision": "b" * 40, "repo_type": "model"}])


def test_offline_job_without_the_model_in_cache_names_it(tmp_path):
    """On an offline node a missing cache entry is an immediate error naming the model, never a hang."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    code = "from kdprivacy import models; models.load_base({'name_or_path': 'someorg/never-cached', 'revision': 'abc'})"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert proc.returncode != 0
    assert "'someorg/never-cached' (revision abc) is not in the Hugging Face cache" in proc.stderr
    assert str(tmp_path / "hf") in proc.stderr and "snakemake download_hub" in proc.stderr


def test_hub_dataset_reads_the_downloaded_snapshot_offline(tmp_path):
    snap = tmp_path / "datasets--org--dolly" / "snapshots" / ("c" * 40)
    snap.mkdir(parents=True)
    rows = [{"instruction": f"Q{i}", "context": "", "response": f"A{i}", "category": "open_qa"} for i in range(5)]
    (snap / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    frame = load_source(config.Data(source="hub", hub=config.HubSource(name="org/dolly")), snapshot=str(snap))
    assert frame["response"].tolist() == [f"A{i}" for i in range(5)]


def test_paper_dag_downloads_first(tmp_path):
    jobs = plan_jobs(REPO / "configs" / "paper-opt.yaml", tmp_path)
    by_rule = {}
    for job in jobs:
        by_rule.setdefault(job["rule"], []).append(job)
    assert len(by_rule["download_hub"]) == 1
    downloads = by_rule["download_hub"][0]["output"][0]
    assert by_rule["prepare_data"][0]["input"]["hub"] == downloads
    teacher = by_rule["train_teacher"][0]
    assert downloads in teacher["input"]["base"]
    assert all(downloads not in (j["input"].get("base") or []) for j in by_rule["train_student"]
               if j["params"]["cfg"]["base"]["name_or_path"].startswith("results/"))


def test_jobs_inherit_an_offline_environment_and_the_cache(tmp_path, monkeypatch):
    for var in ("HF_HOME", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    hub.set_environment(config.Hub(offline=False))
    assert "HF_HUB_OFFLINE" not in os.environ and "HF_HOME" not in os.environ
    monkeypatch.chdir(tmp_path)
    hub.set_environment(config.Hub(cache="hfcache"))
    assert os.environ["HF_HOME"] == str(tmp_path / "hfcache") and hub.offline()
    assert os.environ["HF_DATASETS_OFFLINE"] == "1"
