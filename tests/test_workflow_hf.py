"""The whole workflow on name_or_path models (configs/smoke-hf.yaml), as users run it on their checkpoints.

Every base is a local Hugging Face directory (tiny random-init stand-ins of GPT-2, OPT and LLaMA written with
``save_pretrained``), with ``revision`` and ``n_params`` set as in the paper configs; the LLaMA teacher trains
with LoRA, the OPT teacher is frozen in 8 bit for KD and generation, and the external reference has a
tokenizer of its own. Marked ``workflow`` (minutes on 2 cores).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from test_workflow import REPO, planned_jobs, smk

from kdprivacy import standins
from kdprivacy.config import load_yaml
from kdprivacy.mia.registry import BLOCK_SIGNAL_NAMES

pytestmark = pytest.mark.workflow

SMOKE_HF = REPO / "configs" / "smoke-hf.yaml"
CFG = load_yaml(str(SMOKE_HF))
ATTACKS = CFG.attacks.names


@pytest.fixture(scope="module")
def hf_run(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("smoke-hf")
    standins.write_smoke_hf(workdir / "hf")
    smk(workdir, configfile=SMOKE_HF)
    return workdir


def models_of(family):
    return ["teacher", *CFG.families[family].all_students()]


def test_every_family_model_and_attack_has_results(hf_run):
    tables = hf_run / "results" / "tables"
    mia = pd.read_csv(tables / "mia.csv")
    expected = {(f, m) for f in CFG.families for m in models_of(f)}
    assert set(zip(mia["family"], mia["model"])) == expected
    assert len(mia) == len(expected) * len(ATTACKS) and mia.loc[mia["note"].fillna("") == "", "auc"].between(0, 1).all()
    for name in ("memorization", "memorization_summary", "utility", "blocks", "inheritance", "mia_category",
                 "mia_paired", "blind_baseline", "findings", "paper_comparison", "data_card"):
        assert (tables / f"{name}.csv").exists(), name
    mem = pd.read_csv(tables / "memorization.csv")
    assert set(zip(mem["family"], mem["model"])) == expected
    blocks = pd.read_csv(tables / "blocks.csv")
    layers = {(f, m): (2 if m == "teacher" else 1) for f, m in expected}  # stand-ins: teachers 2, students 1
    assert blocks.groupby(["family", "model"])["block"].nunique().to_dict() == layers
    # every per-block signal (logit lens, probe, MoPe) for the teacher and every student, on a shared depth axis
    assert (blocks.groupby(["family", "model"])["signal"].apply(set) == set(BLOCK_SIGNAL_NAMES)).all()
    assert blocks.groupby(["family", "model", "signal"])["relative_depth"].max().eq(1.0).all()
    assert blocks["auc"].between(0, 1).all()
    spread = pd.read_csv(tables / "blocks_spread.csv")
    assert set(spread["signal"]) == set(BLOCK_SIGNAL_NAMES)
    figures = hf_run / "results" / "figures"
    for family in CFG.families:
        assert (figures / f"mia_auc_{family}_small.png").read_bytes()[:4] == b"\x89PNG"
    assert (hf_run / "results" / "summary.md").exists()


def test_lora_teacher_is_a_merged_checkpoint_with_its_adapter(hf_run):
    teacher = hf_run / "results" / "llama" / "seed0" / "models" / "teacher"
    assert (teacher / "adapter" / "adapter_model.safetensors").exists()
    trained = load_file(teacher / "model.safetensors")
    base = load_file(hf_run / "hf" / "llama-teacher" / "model.safetensors")
    assert set(trained) == set(base)  # a plain checkpoint, no peft names
    changed = [k for k in base if not torch.equal(base[k], trained[k])]
    assert changed and all("q_proj" in k or "v_proj" in k for k in changed), changed  # LoRA targets only


def test_quantized_teacher_and_foreign_reference_are_what_jobs_loaded(hf_run):
    logs = hf_run / "results" / "logs"
    kd_log = (logs / "train_student" / "opt" / "seed0" / "kd-small.log").read_text()
    assert "opt/seed0/models/teacher: OPTForCausalLM" in kd_log and "quantization 8bit" in kd_log
    assert kd_log.count("MatMul8bitLt") <= 1  # bitsandbytes' per-matmul warning logged once
    ref_log = (logs / "score_reference" / "llama" / "external.log").read_text()
    assert "vocabulary 500" in ref_log  # its own tokenizer, the same examples
    scores = pd.read_parquet(hf_run / "results" / "llama" / "references" / "external.parquet")
    target = pd.read_parquet(hf_run / "results" / "llama" / "seed0" / "scores" / "teacher.parquet")
    assert scores["id"].tolist() == target["id"].tolist()


def test_prompts_start_with_each_tokenizers_bos(hf_run):
    for family, bos in (("llama", "<s>"), ("opt", "</s>")):
        generations = pd.read_parquet(hf_run / "results" / family / "seed0" / "generations" / "teacher.parquet")
        tokenizer = json.loads((hf_run / "hf" / f"{family}-teacher" / "tokenizer.json").read_text())
        bos_id = next(t["id"] for t in tokenizer["added_tokens"] if t["content"] == bos)
        assert (generations["prompt_ids"].map(lambda ids: int(ids[0])) == bos_id).all(), family


def test_provenance_hashes_the_local_model_directories(hf_run):
    prov = json.loads((hf_run / "results" / "gpt2" / "seed0" / "models" / "teacher" / "provenance.json").read_text())
    base = prov["inputs"]["base"]
    assert base["path"].endswith("hf/gpt2-teacher") and len(base["sha256"]) == 64
    ref = prov["params"]["cfg"]["base"]
    assert ref["revision"] == "main" and "n_params" not in ref


def test_complete_hf_run_has_nothing_to_do(hf_run):
    assert planned_jobs(smk(hf_run, "-n", configfile=SMOKE_HF)) == {}
