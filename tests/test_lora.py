"""LoRA (peft) for teacher SFT and students: only the adapter trains, outputs are merged checkpoints that every
downstream step loads with ``models.load_model(dir)`` and scores exactly like the in-memory trained model;
the adapter itself is kept in ``<dir>/adapter`` (and loads too)."""

from __future__ import annotations

import json
import os
import runpy
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from pydantic import ValidationError

from kdprivacy import models
from kdprivacy.config import Lora, Train
from kdprivacy.mia import scoring
from kdprivacy.train import jobs, loop, pools
from kdprivacy.train.runs import TeacherRun
from kdprivacy.encoding import encode_frame

import toy

pytest.importorskip("peft")

POOL_SIZES = {"private": 8, "nonmember": 4, "public": 8, "dev": 4, "pretrain": 8}
MAX_LENGTH, MAX_PROMPT = 64, 40
LORA = {"r": 4, "alpha": 16, "dropout": 0.1, "target_modules": None}
REPO = Path(__file__).resolve().parents[1]


def _toy_manifest(seed: int = 0):
    return toy.manifest(POOL_SIZES, seed, response_words=(4, 7), context=False)


@pytest.fixture(scope="module")
def manifest_path(tmp_path_factory):
    return toy.write_manifest(tmp_path_factory, _toy_manifest())


@pytest.fixture(scope="module")
def tokenizer():
    return toy.tokenizer(_toy_manifest(), vocab_size=280, pools=None)


@pytest.fixture(scope="module")
def base_dirs(tmp_path_factory, tokenizer):
    out = {}
    for arch in ("gpt2", "opt", "llama"):
        model = models.build_from_scratch({"arch": arch, "n_layer": 2, "d_model": 32, "n_head": 4}, tokenizer,
                                          MAX_LENGTH, seed=0)
        out[arch] = tmp_path_factory.mktemp(f"base_{arch}")
        models.save_model(model, tokenizer, out[arch])
    return out


def _teacher_cfg(base_dir, lora=LORA, **train):
    return TeacherRun.model_validate({"base": {"name_or_path": str(base_dir)}, "seed": 0, "max_length": MAX_LENGTH,
                                      "train": {"epochs": 2, "lr": 1e-2, "batch_size": 4, **train},
                                      "max_prompt_length": MAX_PROMPT, "lora": lora})


def test_lora_config():
    """The LoRA block is config.Lora (its defaults live there only); apply_lora takes it validated."""
    assert Lora().model_dump() == {"r": 16, "alpha": 64, "dropout": 0.1, "target_modules": None,
                                   "quantization": None}
    assert Lora.model_validate({"target_modules": ["q_proj"]}).target_modules == ["q_proj"]
    for bad in ({"rank": 4}, {"r": 0}, {"dropout": 1.0}, {"target_modules": "all"}):
        with pytest.raises(ValidationError):
            Lora.model_validate(bad)
    with pytest.raises(ValueError, match="non-empty list"):  # an empty target list would adapt nothing
        models.apply_lora(None, Lora(target_modules=[]))


@pytest.mark.parametrize("arch, target, expect", [
    ("gpt2", None, {"c_attn"}),  # peft's per-architecture defaults
    ("opt", None, {"q_proj", "v_proj"}),
    ("llama", "all-linear", {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}),
])
def test_lora_teacher_output_is_a_merged_checkpoint(tmp_path, base_dirs, manifest_path, tokenizer, arch, target, expect):
    cfg = _teacher_cfg(base_dirs[arch], {**LORA, "target_modules": target})
    model, tok, history = jobs.train_teacher_from_cfg(cfg, manifest_path)
    assert not models.is_lora(model) and history["train_loss"].notna().all()
    config, adapter_state = models.lora_adapter(model)
    assert {name.split(".")[-1] for name in config.target_modules} == expect  # all-linear: resolved to names
    assert adapter_state and all("lora_" in k for k in adapter_state)

    out = tmp_path / "teacher"
    jobs.save_trained(out, model, tok, history)
    assert (out / "config.json").is_file() and not (out / "adapter_config.json").exists()
    assert (out / "adapter" / "adapter_config.json").is_file()
    assert (out / "adapter" / "adapter_model.safetensors").is_file()

    # downstream rules load the directory like any model and score it exactly like the in-memory model
    loaded = models.load_model(str(out))
    x = torch.randint(2, len(tok), (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model.eval()(x).logits, loaded(x).logits)
    items = encode_frame(tok, _toy_manifest().query("pool == 'private'"), MAX_LENGTH, MAX_PROMPT)
    a = scoring.score_examples(model, items, scoring.ScoringPass(4, tok.pad_token_id))
    b = scoring.score_examples(loaded, items, scoring.ScoringPass(4, tok.pad_token_id))
    assert all(np.array_equal(u, v) for u, v in zip(a.token_logprobs, b.token_logprobs))

    # only the targeted modules changed; everything else is still the base
    base = models.load_model(str(base_dirs[arch]))
    changed = {name for name, p in loaded.state_dict().items() if not torch.equal(p, base.state_dict()[name])}
    assert changed and all(any(f".{t}." in name for t in expect) for name in changed)

    # the adapter directory alone also loads (base named in adapter_config.json + merge)
    assert json.loads((out / "adapter" / "adapter_config.json").read_text())["r"] == LORA["r"]
    from_adapter = models.load_model(str(out / "adapter"))
    with torch.no_grad():
        torch.testing.assert_close(from_adapter(x).logits, loaded(x).logits, rtol=0, atol=1e-6)


def test_merged_model_matches_unmerged_adapter(base_dirs, manifest_path, tokenizer):
    """Merging changes nothing but floating-point rounding (in float32: < 1e-5 on these logits)."""
    model, tok = models.load_base({"name_or_path": str(base_dirs["llama"])})
    model = models.apply_lora(model, Lora(**LORA), seed=0)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    items = pools.load_items(manifest_path, ["private"], tok, MAX_LENGTH, MAX_PROMPT)
    model, _ = loop.sft(model, items, None, Train(epochs=2, lr=1e-2, batch_size=4), tok.pad_token_id)
    x = torch.randint(2, len(tok), (2, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        unmerged = model(x).logits
        merged = models.merge_lora(model)
        torch.testing.assert_close(merged(x).logits, unmerged, rtol=0, atol=1e-5)


def test_lora_training_is_deterministic(base_dirs, manifest_path):
    cfg = _teacher_cfg(base_dirs["gpt2"], epochs=1)
    a, _, _ = jobs.train_teacher_from_cfg(cfg, manifest_path)
    b, _, _ = jobs.train_teacher_from_cfg(cfg, manifest_path)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def _run_student_script(tmp_path, cfg, inputs, name):
    out = tmp_path / name
    smk = types.SimpleNamespace(scriptdir=str(REPO / "scripts"), params=types.SimpleNamespace(cfg=cfg, code="test-code"),
               input=types.SimpleNamespace(**inputs, items=lambda: inputs.items()),
               output=types.SimpleNamespace(dir=str(out)), log=[], threads=1, rule=name)
    runpy.run_path(str(REPO / "scripts" / "train_student.py"), init_globals={"snakemake": smk}, run_name="__main__")
    return out


@pytest.mark.parametrize("method, params", [("nokd", None), ("distillm", {"init_threshold": 1.0})])
def test_lora_students_through_the_script(tmp_path, base_dirs, manifest_path, method, params):
    teacher = base_dirs["gpt2"]
    cfg = {"base": {"name_or_path": str(base_dirs["gpt2"])}, "method": method,
           "teacher": {"name_or_path": str(teacher)} if method != "nokd" else None,
           "train": {"epochs": 1, "lr": 1e-2, "batch_size": 4}, "kd": None,
           "generation": {"max_new_tokens": 4} if method != "nokd" else None, "method_params": params, "seed": 0,
           "max_length": MAX_LENGTH, "max_prompt_length": MAX_PROMPT, "lora": LORA}
    out = _run_student_script(tmp_path, cfg, {"manifest": str(manifest_path), "base": str(base_dirs["gpt2"])}, method)
    assert (out / "adapter" / "adapter_config.json").is_file() and not (tmp_path / f"{method}.resume").exists()
    log = pd.read_csv(out / "train_log.csv")
    if method == "distillm":
        assert log["frac_sgo_batches"].iloc[0] == 1.0  # LoRA student sampled its own outputs
    models.load_model(str(out))


def test_saved_adapter_config_does_not_depend_on_the_hash_seed(tmp_path):
    """peft writes target_modules (a set) in hash order; save_adapter sorts it: the same adapter is the same
    bytes in every process (PYTHONHASHSEED differs between the workflow's jobs)."""
    import subprocess
    import sys

    code = (
        "import sys, torch; from peft import LoraConfig; from kdprivacy import models; "
        "cfg = LoraConfig(r=2, lora_alpha=4, target_modules=['q_proj', 'v_proj', 'k_proj', 'o_proj', 'up_proj']); "
        "models.save_adapter(cfg, {'w': torch.zeros(1)}, sys.argv[1])"
    )
    written = []
    for seed in ("1", "2", "3"):
        out = tmp_path / seed
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run([sys.executable, "-c", code, str(out)], check=True, env=env)
        written.append((out / "adapter_config.json").read_bytes())
    assert len(set(written)) == 1
    assert json.loads(written[0])["target_modules"] == ["k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]
