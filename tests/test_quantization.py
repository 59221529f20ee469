"""Quantized frozen teachers (bitsandbytes through transformers' BitsAndBytesConfig) on the CPU.

bitsandbytes >= 0.48 ships CPU kernels for LLM.int8 (8-bit) and NF4 (4-bit), so the whole path — load a saved
teacher quantized, score with it, distil from it, let it answer prompts — runs here without a GPU.

Tolerances (tiny random models, logits of order 1): 8-bit logits are within 0.05 of full precision and the
next-token KL(full ‖ 8-bit) is below 1e-3 nats per position (measured: ~0.005-0.01 and ~2e-5); 4-bit NF4 is
coarser: KL below 0.05 (measured ~3e-3).
"""

from __future__ import annotations


import numpy as np
import pytest
import torch

from kdprivacy import models
from kdprivacy.mia import scoring
from kdprivacy.config import Lora, Train
from kdprivacy.kd import generations
from kdprivacy.train import jobs, loop, pools
from kdprivacy.train.runs import StudentRun, TeacherGenerationRun, TeacherRun

import toy

pytest.importorskip("bitsandbytes")
pytest.importorskip("accelerate")
pytest.importorskip("peft")  # the KD test trains a LoRA student

POOL_SIZES = {"private": 8, "nonmember": 4, "public": 8, "dev": 4, "pretrain": 8}
MAX_LENGTH, MAX_PROMPT = 64, 40


def _toy_manifest(seed: int = 0):
    return toy.manifest(POOL_SIZES, seed, response_words=(4, 7), context=False)


@pytest.fixture(scope="module")
def manifest_path(tmp_path_factory):
    return toy.write_manifest(tmp_path_factory, _toy_manifest())


@pytest.fixture(scope="module")
def tokenizer():
    return toy.tokenizer(_toy_manifest(), vocab_size=280, pools=None)


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def teacher_dir(request, tmp_path_factory, tokenizer, manifest_path):
    """A tiny teacher, briefly trained (so its logits are not flat), saved as an ordinary checkpoint."""
    model = models.build_from_scratch({"arch": request.param, "n_layer": 2, "d_model": 64, "n_head": 4},
                                      tokenizer, MAX_LENGTH, seed=1)
    items = pools.load_items(manifest_path, ["private"], tokenizer, MAX_LENGTH, MAX_PROMPT)
    model, _ = loop.sft(model, items, None, Train(epochs=3, lr=5e-3, batch_size=4), tokenizer.pad_token_id)
    out = tmp_path_factory.mktemp(f"teacher_{request.param}")
    models.save_model(model, tokenizer, out)
    return out


def _kl(p_logits, q_logits) -> float:
    p = torch.log_softmax(p_logits.float(), -1)
    q = torch.log_softmax(q_logits.float(), -1)
    return float((p.exp() * (p - q)).sum(-1).mean())


@pytest.mark.parametrize("quantization, max_abs, max_kl", [("8bit", 0.05, 1e-3), ("4bit", None, 0.05)])
def test_quantized_logits_close_to_full_precision(teacher_dir, quantization, max_abs, max_kl):
    import bitsandbytes as bnb

    full = models.load_model(str(teacher_dir))
    quant = models.load_model(str(teacher_dir), quantization=quantization)
    assert models.is_quantized(quant) and not models.is_quantized(full)
    layer = bnb.nn.Linear8bitLt if quantization == "8bit" else bnb.nn.Linear4bit
    assert any(isinstance(m, layer) for m in quant.modules())
    # the output head stays full width: KD compares full-vocabulary distributions
    assert not isinstance(quant.get_output_embeddings(), (bnb.nn.Linear8bitLt, bnb.nn.Linear4bit))
    x = torch.randint(2, len(full.get_input_embeddings().weight), (3, 20), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = full(x).logits, quant(x).logits
    assert a.shape == b.shape
    if max_abs is not None:
        assert (a - b).abs().max().item() < max_abs
    assert _kl(a, b) < max_kl


def test_8bit_teacher_scoring(teacher_dir, tokenizer, manifest_path):
    """The attack scores of an 8-bit teacher match the full-precision ones closely."""
    items = pools.load_items(manifest_path, ["private", "nonmember"], tokenizer, MAX_LENGTH, MAX_PROMPT)
    scoring_pass = scoring.ScoringPass(4, tokenizer.pad_token_id)
    full = scoring.score_examples(models.load_model(str(teacher_dir)), items, scoring_pass)
    quantized = models.load_model(str(teacher_dir), quantization="8bit")
    quant = scoring.score_examples(quantized, items, scoring_pass)
    assert list(full.id) == list(quant.id) and list(full.n_tokens) == list(quant.n_tokens)
    diff = np.concatenate([a - b for a, b in zip(full.token_logprobs, quant.token_logprobs)])
    assert np.abs(diff).max() < 0.05


def test_kd_student_with_8bit_teacher(teacher_dir, tokenizer, manifest_path):
    """train_student_from_cfg with a teacher ref that asks for 8 bits: a KD run and an on-policy run."""
    cfg = {
        "base": {"name_or_path": str(teacher_dir)}, "method": "kd",
        "teacher": {"name_or_path": str(teacher_dir), "quantization": "8bit"},
        "train": {"epochs": 1, "lr": 1e-3, "batch_size": 4}, "kd": {"objective": "fkl"}, "seed": 0,
        "max_length": MAX_LENGTH, "max_prompt_length": MAX_PROMPT,
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": "all-linear"},
    }
    model, _, history = jobs.train_student_from_cfg(StudentRun.model_validate(cfg), manifest_path)
    assert np.isfinite(history["kd_loss"]).all() and history["kd_loss"].iloc[0] > 0
    assert not models.is_quantized(model) and not models.is_lora(model)  # merged, full precision
    gkd = {**cfg, "method": "gkd", "kd": None, "method_params": {"lmbda": 1.0}, "generation": {"max_new_tokens": 4}}
    _, _, history = jobs.train_student_from_cfg(StudentRun.model_validate(gkd), manifest_path)
    assert history["frac_sgo_batches"].tolist() == [1.0]


def test_8bit_teacher_generation(teacher_dir, manifest_path):
    """SeqKD data from an 8-bit teacher (the generate_teacher rule's library call)."""
    cfg = {"teacher": {"name_or_path": str(teacher_dir), "quantization": "8bit"},
           "generation": {"max_new_tokens": 4, "batch_size": 8}, "seed": 0, "max_length": MAX_LENGTH,
           "max_prompt_length": MAX_PROMPT}
    frame, summary = generations.generate_teacher(TeacherGenerationRun.model_validate(cfg), manifest_path)
    assert summary["n"] == POOL_SIZES["public"] and frame["response_ids"].map(len).between(1, 4).all()


def test_quantization_is_for_frozen_models_only(teacher_dir, manifest_path):
    with pytest.raises(ValueError, match="unknown quantization"):
        models.load_model(str(teacher_dir), quantization="3bit")
    with pytest.raises(ValueError, match="allowed"):
        models.load_base({"name_or_path": str(teacher_dir), "quantize": "8bit"})
    cfg = {"base": {"name_or_path": str(teacher_dir), "quantization": "8bit"}, "train": {"epochs": 1, "lr": 1e-3,
           "batch_size": 4}, "seed": 0, "max_length": MAX_LENGTH, "max_prompt_length": MAX_PROMPT}
    with pytest.raises(ValueError, match="frozen"):
        jobs.train_teacher_from_cfg(TeacherRun.model_validate(cfg), manifest_path)
    with pytest.raises(ValueError, match="quantized"):
        models.apply_lora(models.load_model(str(teacher_dir), quantization="8bit"), Lora(r=2))
