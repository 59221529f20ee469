"""Reruns follow what users change outside results/: a data file or a local model edited in place.

Snakemake compares a directory input by its own mtime, which an in-place edit of a file inside does not
change; every external input is therefore also a content-hash param (``sources``), cached by size and mtime
(``provenance.input_hash``), and its hash is in the provenance of what it produced.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import yaml
from dag import plan_jobs
from safetensors.torch import load_file, save_file
from test_workflow import REPO, planned_jobs, smk

from kdprivacy import provenance, standins
from kdprivacy.data.synthetic import generate_synthetic

SMOKE_HF = REPO / "configs" / "smoke-hf.yaml"


def test_input_hash_follows_content_and_caches_by_stat(tmp_path, monkeypatch):
    root = tmp_path / "model"
    root.mkdir()
    (root / "a.bin").write_bytes(b"x" * 100)
    (root / "provenance.json").write_text("{}")  # never part of the hash
    cache = tmp_path / "cache.json"
    first = provenance.input_hash(root, cache)
    assert first == provenance.content_hash(root)
    calls = []
    real = provenance.content_hash
    monkeypatch.setattr(provenance, "content_hash", lambda p: calls.append(p) or real(p))
    assert provenance.input_hash(root, cache) == first and calls == []  # unchanged stats: from the cache
    (root / "a.bin").write_bytes(b"y" * 100)  # same size, new bytes, in place
    os.utime(root / "a.bin", ns=(1, 10**18))
    second = provenance.input_hash(root, cache)
    assert second != first and len(calls) == 1
    with pytest.raises(FileNotFoundError, match="does not exist"):
        provenance.input_hash(tmp_path / "missing", cache)


def test_training_jobs_carry_their_base_hashes(tmp_path):
    written = standins.write_smoke_hf(tmp_path / "hf")
    jobs = plan_jobs(SMOKE_HF, tmp_path)
    for job in jobs:
        if job["rule"] == "train_teacher":
            family = job["wildcards"]["family"]
            assert job["params"]["sources"] == {f"hf/{family}-teacher":
                                                provenance.content_hash(written[f"{family}-teacher"])}
        if job["rule"] == "train_student" and not job["params"]["cfg"]["base"]["name_or_path"].startswith("results"):
            assert list(job["params"]["sources"]) == [f"hf/{job['wildcards']['family']}-small"]


@pytest.mark.workflow
def test_editing_the_data_file_or_a_model_in_place_reruns_exactly_its_dependents(tmp_path):
    standins.write_smoke_hf(tmp_path / "hf", ["gpt2-teacher", "gpt2-small", "reference"])
    frame = generate_synthetic(300, 7)
    (tmp_path / "records.jsonl").write_text(frame.to_json(orient="records", lines=True))
    raw = yaml.safe_load(SMOKE_HF.read_text())
    raw["families"] = {"gpt2": raw["families"]["gpt2"]}
    raw["data"] = {**raw["data"], "source": "file", "file": {"path": "./records.jsonl"}}
    raw["data"].pop("synthetic")
    raw["data"]["split"] = {"seed": 0, "nonmember": 40, "dev": 20, "private": 40, "public": 40}
    configfile = tmp_path / "config.yaml"
    configfile.write_text(yaml.safe_dump(raw, sort_keys=False))
    target = "results/gpt2/references/external.parquet"
    smk(tmp_path, target, configfile=configfile)
    assert planned_jobs(smk(tmp_path, target, "-n", configfile=configfile)) == {}

    # the data file, edited in place (same length): the manifest and what reads it rerun
    text = (tmp_path / "records.jsonl").read_text()
    (tmp_path / "records.jsonl").write_text(text.replace("a", "e", 1))
    assert planned_jobs(smk(tmp_path, target, "-n", configfile=configfile)) == {
        "prepare_data": 1, "score_reference": 1}
    smk(tmp_path, target, configfile=configfile)
    manifest_prov = json.loads((tmp_path / "results" / "data" / "manifest.provenance.json").read_text())
    assert manifest_prov["inputs"]["data"]["sha256"] == provenance.content_hash(tmp_path / "records.jsonl")

    # the reference's weights, rewritten in place: only its scoring reruns
    weights = tmp_path / "hf" / "reference" / "model.safetensors"
    state = load_file(weights)
    save_file({k: v + 0.01 if v.is_floating_point() else v for k, v in state.items()}, weights,
              metadata={"format": "pt"})
    assert planned_jobs(smk(tmp_path, target, "-n", configfile=configfile)) == {"score_reference": 1}
    smk(tmp_path, target, configfile=configfile)
    prov = json.loads((tmp_path / "results" / "gpt2" / "references" / "external.parquet.provenance.json")
                      .read_text())
    assert prov["inputs"]["model"]["sha256"] == provenance.content_hash(tmp_path / "hf" / "reference")
    assert planned_jobs(smk(tmp_path, target, "-n", configfile=configfile)) == {}
    assert torch.is_tensor(next(iter(state.values())))
