"""Precision and memory for large models: ``train.precision`` / ``evaluation.precision`` (fp32, bf16, fp16
autocast), ``train.gradient_checkpointing``, checkpoints saved in the base's dtype, and QLoRA
(``lora.quantization``: the adapter trained on a 4-/8-bit base, saved merged into the full-precision base).

Everything runs on the CPU: torch autocasts there too (bf16 and fp16), ``torch.amp.GradScaler`` works on
CPU tensors, and bitsandbytes >= 0.48 has CPU kernels for NF4 and LLM.int8.
"""

from __future__ import annotations

import copy
import hashlib
import json
import runpy
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from kdprivacy import config, models
from kdprivacy.mia import blocks, perturb, scoring
from kdprivacy.stats import NO_BOOTSTRAP
from kdprivacy import kd as registry
from kdprivacy.config import KD, Train
from kdprivacy.encoding import batch_indices
from kdprivacy.kd import fused
from kdprivacy.kd import kd as word_kd
from kdprivacy.kd import teacher as kd_teacher
from kdprivacy.train import jobs, loop, losses
from kdprivacy.train.runs import MethodRun, TeacherRun
from kdprivacy.encoding import collate, encode_frame

import toy

POOL_SIZES = {"private": 8, "nonmember": 6, "public": 8, "dev": 4, "pretrain": 4}
MAX_LENGTH, MAX_PROMPT = 64, 40
SPEC = {"arch": "gpt2", "n_layer": 2, "d_model": 32, "n_head": 4}
TRAIN = {"epochs": 2, "lr": 1e-2, "batch_size": 4}
REPO = Path(__file__).resolve().parents[1]
HALF = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _toy_manifest(seed: int = 0):
    return toy.manifest(POOL_SIZES, seed, response_words=(4, 7), context=False)


@pytest.fixture(scope="module")
def manifest_path(tmp_path_factory):
    return toy.write_manifest(tmp_path_factory, _toy_manifest())


@pytest.fixture(scope="module")
def tokenizer():
    return toy.tokenizer(_toy_manifest(), vocab_size=280, pools=None)


@pytest.fixture(scope="module")
def items(tokenizer):
    frame = _toy_manifest()
    return {pool: encode_frame(tokenizer, toy.select(frame, pool), MAX_LENGTH, MAX_PROMPT)
            for pool in POOL_SIZES}


def _model(tokenizer, seed=0, **spec):
    return models.build_from_scratch({**SPEC, **spec}, tokenizer, MAX_LENGTH, seed=seed)


@pytest.fixture(scope="module")
def base_dirs(tmp_path_factory, tokenizer):
    """Saved float32 bases of two architectures (GPT-2: Conv1D layers with biases; LLaMA: bias-free)."""
    out = {}
    for arch in ("gpt2", "llama"):
        out[arch] = tmp_path_factory.mktemp(f"base_{arch}")
        models.save_model(_model(tokenizer, arch=arch, d_model=64), tokenizer, out[arch])
    return out


def _states_equal(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


class Seen:
    """Forward hook on a module: per call, (training mode, autocast on, output dtype)."""

    def __init__(self, module):
        self.calls: list[tuple[bool, bool, torch.dtype]] = []
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, module, args, output):
        out = output if isinstance(output, torch.Tensor) else output[0]
        self.calls.append((module.training, torch.is_autocast_enabled("cpu"), out.dtype))

    def remove(self):
        self.handle.remove()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------------------ config
def test_precision_options_are_validated_and_named():
    assert Train(**TRAIN).precision == "fp32"
    assert Train(**TRAIN).gradient_checkpointing is False
    with pytest.raises(ValueError, match=r"precision\s+Input should be 'fp32', 'bf16' or 'fp16'"):
        Train.model_validate({**TRAIN, "precision": "fp8"})
    with pytest.raises(ValueError, match=r"gradient_checkpointing\s+Input should be a valid boolean"):
        Train.model_validate({**TRAIN, "gradient_checkpointing": "yes"})
    with pytest.raises(ValueError, match="quantization"):
        config.Lora(quantization="3bit")
    with pytest.raises(ValueError, match="precision"):
        models.autocast("half", "cpu")
    raw = {"families": {"f": {"bases": {"b": {"from_scratch": {"arch": "gpt2", "n_layer": 1, "d_model": 8,
                                                              "n_head": 2}}},
                              "teacher": {"base": "b", "train": {"precision": "fp8"},
                                          "lora": {"quantization": "2bit"}}}},
           "evaluation": {"precision": "tf32"}}
    with pytest.raises(config.ConfigError) as err:
        config.validate_config(raw)
    for key in ("families.f.teacher.train.precision", "families.f.teacher.lora.quantization",
                "evaluation.precision"):
        assert key in str(err.value)
    assert config.Train().precision == config.Evaluation().precision == "fp32"
    assert config.Lora().quantization is None
    assert config.Train(precision="bf16", gradient_checkpointing=True).gradient_checkpointing


# ------------------------------------------------------------------------------------------- autocast
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_training_steps_run_under_autocast(tokenizer, items, precision):
    """The student's (and a KD teacher's) forward in every training step runs in the 16-bit dtype; weights
    stay float32; the dev loss is computed in full precision."""
    pad = tokenizer.pad_token_id
    student, teacher = _model(tokenizer, seed=2), kd_teacher.freeze(_model(tokenizer, seed=1))
    # the fused KD loss's one-time chain check (one fp32 forward each) before the hooks count
    assert fused.head_chain(student, trainable=True) and fused.head_chain(teacher, trainable=False)
    seen_student, seen_teacher = Seen(student.lm_head), Seen(teacher.lm_head)
    cfg = Train(**TRAIN, precision=precision)
    student, history = word_kd.distill_kd(student, teacher, items["public"], items["dev"], cfg, KD(), pad)
    train_calls = [c for c in seen_student.calls if c[0]]
    assert len(train_calls) == 4 and all(on and dtype == HALF[precision] for _, on, dtype in train_calls)
    assert all(not on and dtype == torch.float32 for mode, on, dtype in seen_student.calls if not mode)
    assert len(seen_teacher.calls) == 4
    assert all(on and dtype == HALF[precision] for _, on, dtype in seen_teacher.calls)
    assert all(p.dtype == torch.float32 for p in student.parameters())
    assert np.isfinite(history["kd_loss"]).all() and np.isfinite(history["dev_loss"]).all()
    assert ("loss_scale" in history) == (precision == "fp16")


def test_cached_teacher_and_minillm_rollouts_use_the_training_precision(tokenizer, items):
    """The teacher pass of kd.teacher_top_k and MiniLLM's q_old / teacher log-probs (computed at rollout
    time, compared with the loss's q_θ) run in the training precision too."""
    pad = tokenizer.pad_token_id
    teacher = kd_teacher.freeze(_model(tokenizer, seed=1))
    seen = Seen(teacher.lm_head)
    cfg = Train(**TRAIN, precision="bf16")
    word_kd.distill_kd(_model(tokenizer, seed=2), teacher, items["public"], None, cfg, KD(teacher_top_k=8),
                        pad)
    assert len(seen.calls) == 2 and all(on and dtype == torch.bfloat16 for _, on, dtype in seen.calls)
    seen.calls.clear()
    cfg = {"train": {**TRAIN, "epochs": 1, "precision": "bf16"}, "kd": None, "method_params": None, "seed": 0,
           "generation": {"max_new_tokens": 4}, "max_length": MAX_LENGTH, "max_prompt_length": MAX_PROMPT}
    student = _model(tokenizer, seed=2)
    registry.train_method(student, teacher, items["public"], items["dev"], MethodRun(method="minillm", **cfg), pad,
                              eos_id=tokenizer.eos_token_id)
    rollout = [c for c in seen.calls if c[1]]  # sampling itself (generation) stays in full precision
    assert len(rollout) == 2 and all(dtype == torch.bfloat16 for *_, dtype in rollout)


def test_fp32_enters_no_autocast_and_matches_precision_unset(tokenizer, items, monkeypatch):
    pad = tokenizer.pad_token_id
    model = _model(tokenizer, dropout=0.1)
    reference, ref_history = loop.sft(model, items["private"], items["dev"], Train(**TRAIN), pad)

    def no_autocast(*args, **kwargs):
        raise AssertionError("fp32 must not enter torch.autocast")

    monkeypatch.setattr(torch, "autocast", no_autocast)
    model = _model(tokenizer, dropout=0.1)
    seen = Seen(model.lm_head)
    model, history = loop.sft(model, items["private"], items["dev"], Train(**TRAIN, precision="fp32"), pad)
    assert _states_equal(model, reference)
    pd.testing.assert_frame_equal(history, ref_history, check_exact=True)
    assert "loss_scale" not in history and all(not on and d == torch.float32 for _, on, d in seen.calls)


def test_fp16_loss_scale_skips_overflowing_steps(tokenizer, items, monkeypatch):
    """A step whose scaled gradients overflow fp16 is skipped (weights, AdamW state and the learning-rate
    schedule untouched) and halves the loss scale; gradients are unscaled before clipping."""
    pad = tokenizer.pad_token_id
    model = _model(tokenizer)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    reference = copy.deepcopy(model)
    states, norms = [], []
    clip = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda *a, **k: norms.append(float(clip(*a, **k))))

    def loss_fn(m, batch):
        loss, stats = losses.lm_loss(m, batch)
        return loss * (1e6 if not states else 1.0), stats  # the first step's gradients overflow

    def on_step(step):
        states.append({k: v.clone() for k, v in model.state_dict().items()})

    cfg = Train(**{**TRAIN, "epochs": 1, "precision": "fp16", "scheduler": "linear"})  # 2 steps
    model, history = loop.fit(model, items["private"], None, cfg, pad, loss_fn, on_step=on_step)
    assert all(torch.equal(states[0][k], initial[k]) for k in initial)  # skipped
    assert history["amp_skipped_steps"].tolist() == [1] and history["loss_scale"].tolist() == [2.0**15]
    # the clipped norm is the true one: the fp32 gradient norm of the same batch at the same weights
    second = list(batch_indices(len(items["private"]), 4, shuffle=True, seed=1))[1]
    loss, _ = losses.lm_loss(reference, collate([items["private"][i] for i in second], pad))
    loss.backward()
    want = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in reference.parameters()])).item()
    assert not np.isfinite(norms[0]) and norms[1] == pytest.approx(want, rel=0.02)
    # the second (first real) step ran at the schedule's first learning rate, not its second (0.5 lr):
    # AdamW's first update is lr * sign(grad)
    assert history["lr"].tolist() == [cfg.lr]
    delta = (states[1]["lm_head.weight"] - initial["lm_head.weight"]).abs()
    assert delta.max().item() == pytest.approx(cfg.lr, rel=1e-2)


# ------------------------------------------------------------------------------ gradient checkpointing
@pytest.mark.parametrize("arch, lora", [("gpt2", None), ("llama", config.Lora(r=4, alpha=8, dropout=0.0))])
def test_gradient_checkpointing_recomputes_and_changes_nothing(tokenizer, items, arch, lora):
    pytest.importorskip("peft")
    pad = tokenizer.pad_token_id

    def run(checkpointing):
        model = models.apply_lora(_model(tokenizer, arch=arch, dropout=0.1 if lora is None else 0.0), lora)
        hf = model.get_base_model() if lora else model
        block = (hf.transformer.h[0].attn if arch == "gpt2" else hf.model.layers[0].self_attn)
        calls = []
        block.register_forward_pre_hook(lambda m, a: calls.append(m.training))
        cfg = Train(**{**TRAIN, "epochs": 1, "gradient_checkpointing": checkpointing})
        model, history = loop.sft(model, items["private"], None, cfg, pad)
        return model, history, sum(calls), hf

    plain, plain_history, plain_calls, _ = run(False)
    checkpointed, history, calls, hf = run(True)
    assert plain_calls == 2 and calls == 4  # each training forward inside a block is recomputed in backward
    assert not any(getattr(m, "gradient_checkpointing", False) for m in hf.modules())  # off again
    assert not getattr(hf, "_require_grads_hooks", None)
    np.testing.assert_allclose(history["train_loss"], plain_history["train_loss"], rtol=1e-6)
    for (name, a), b in zip(checkpointed.state_dict().items(), plain.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)


# ------------------------------------------------------------------------------------ checkpoint dtype
def _spy_fit(monkeypatch, record):
    """``loop.fit`` wrapped: ``record(model)`` sees each model just before it trains."""
    original = loop.fit

    def spy(model, *args, **kwargs):
        record(model)
        return original(model, *args, **kwargs)

    monkeypatch.setattr(loop, "fit", spy)


def _teacher_cfg(base, dtype="float32"):
    return TeacherRun(base=config.model_ref(str(base), dtype=dtype), train=TRAIN, seed=0, max_length=MAX_LENGTH,
                      max_prompt_length=MAX_PROMPT)


def test_checkpoint_is_saved_in_the_base_dtype(tmp_path, tokenizer, items, manifest_path, monkeypatch):
    """A bfloat16 base trains on float32 master weights and is saved as a bfloat16 checkpoint (half the
    bytes); a float32 base gives exactly the file plain SFT + save_model gives."""
    bf16_base = tmp_path / "bf16-base"
    models.save_model(_model(tokenizer, arch="llama").to(torch.bfloat16), tokenizer, bf16_base)
    trained_dtypes = []
    _spy_fit(monkeypatch, lambda model: trained_dtypes.append({p.dtype for p in model.parameters()}))
    sizes = {}
    for dtype in ("bfloat16", "float32"):
        model, tok, history = jobs.train_teacher_from_cfg(_teacher_cfg(bf16_base, dtype), manifest_path)
        assert trained_dtypes.pop() == {torch.float32}  # float32 master weights whatever the storage dtype
        out = tmp_path / dtype
        jobs.save_trained(out, model, tok, history)
        assert json.loads((out / "config.json").read_text())["dtype"] == dtype
        sizes[dtype] = (out / "model.safetensors").stat().st_size
        loaded = models.load_model(str(out), dtype=dtype)
        assert all(p.dtype == models.DTYPES[dtype] for p in loaded.parameters())
    assert sizes["bfloat16"] < 0.55 * sizes["float32"]

    # float32 (and from-scratch) bases: the saved file is bit-identical to training without the cast
    fp32_base = tmp_path / "fp32-base"
    models.save_model(_model(tokenizer), tokenizer, fp32_base)
    model, tok, history = jobs.train_teacher_from_cfg(_teacher_cfg(fp32_base), manifest_path)
    jobs.save_trained(tmp_path / "via-cfg", model, tok)
    plain, plain_tok = models.load_base({"name_or_path": str(fp32_base)})
    plain, _ = loop.sft(plain, items["private"], items["dev"], Train(**TRAIN), plain_tok.pad_token_id)
    models.save_model(plain, plain_tok, tmp_path / "plain")
    assert _sha(tmp_path / "via-cfg" / "model.safetensors") == _sha(tmp_path / "plain" / "model.safetensors")


# ---------------------------------------------------------------------------------------------- QLoRA
def _qlora_cfg(base_dir, quantization, **train):
    return TeacherRun(base=config.model_ref(str(base_dir)), train={**TRAIN, **train}, seed=0, max_length=MAX_LENGTH,
                      max_prompt_length=MAX_PROMPT, lora={"r": 4, "alpha": 16, "dropout": 0.0,
                                                          "target_modules": "all-linear", "quantization": quantization})


@pytest.mark.parametrize("arch, quantization", [("gpt2", "4bit"), ("llama", "4bit"), ("llama", "8bit")])
def test_qlora_trains_on_a_quantized_base_and_saves_a_full_precision_merge(tmp_path, base_dirs, manifest_path,
                                                                            monkeypatch, arch, quantization):
    pytest.importorskip("bitsandbytes")
    pytest.importorskip("peft")
    import bitsandbytes as bnb
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    layer = bnb.nn.Linear4bit if quantization == "4bit" else bnb.nn.Linear8bitLt
    seen = []
    _spy_fit(monkeypatch, lambda model: seen.append((models.is_lora(model),
                                                      any(isinstance(m, layer) for m in model.modules()))))
    model, tok, history = jobs.train_teacher_from_cfg(_qlora_cfg(base_dirs[arch], quantization),
                                                          manifest_path)
    assert seen == [(True, True)]  # the adapter trained on the quantized base
    losses = history["train_loss"]
    assert np.isfinite(losses).all() and losses.iloc[-1] < losses.iloc[0]
    assert not models.is_lora(model) and not models.is_quantized(model)
    assert all(p.dtype == torch.float32 for p in model.parameters())

    out = tmp_path / "teacher"
    jobs.save_trained(out, model, tok, history)
    assert "quantization_config" not in json.loads((out / "config.json").read_text())
    adapter_config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    assert adapter_config["fan_in_fan_out"] == (arch == "gpt2")  # re-targeted at the Conv1D layers
    plain = AutoModelForCausalLM.from_pretrained(str(out)).eval()  # an ordinary checkpoint

    # merged = base + adapter applied in full precision, unmerged
    base = AutoModelForCausalLM.from_pretrained(str(base_dirs[arch])).eval()
    x = torch.randint(2, len(tok), (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        base_logits = base(x).logits
        with models._quiet_peft():
            unmerged = PeftModel.from_pretrained(base, str(out / "adapter")).eval()
        want = unmerged(x).logits
        got = plain(x).logits
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    assert (got - base_logits).abs().max().item() > 1e-3  # the adapter trained


def test_qlora_is_refused_where_it_makes_no_sense(base_dirs):
    pytest.importorskip("bitsandbytes")
    pytest.importorskip("peft")
    full = models.load_model(str(base_dirs["llama"]))
    with pytest.raises(ValueError, match="lora.quantization.*unquantized"):
        models.apply_lora(full, config.Lora(r=2, quantization="4bit"))
    quantized = models.load_model(str(base_dirs["llama"]), quantization="4bit")
    with pytest.raises(ValueError, match="needs lora.quantization"):
        models.apply_lora(quantized, config.Lora(r=2))
    wrapped = models.apply_lora(quantized, config.Lora(r=2, quantization="4bit"))
    with pytest.raises(ValueError, match="base_ref"):
        models.merge_lora(wrapped)
    with pytest.raises(ValueError, match="frozen"):  # the ref's own quantization stays for frozen models
        jobs.load_trainable({"name_or_path": str(base_dirs["llama"]), "quantization": "4bit"},
                            config.Lora(r=2, quantization="4bit"), 0, "the teacher base")


# -------------------------------------------------------------------------------------------- scoring
def test_scoring_precision(tokenizer, items):
    """Scoring forwards (score_examples, MoPe, per-block MoPe) run under autocast; the statistics are still
    float32, computed from the upcast logits; fp32 is the default and unchanged."""
    model = _model(tokenizer, seed=3).eval()
    evaluation = items["private"] + items["nonmember"]
    pad = tokenizer.pad_token_id
    seen = Seen(model.lm_head)
    default = scoring.score_examples(model, evaluation, scoring.ScoringPass(4, pad))
    fp32 = scoring.score_examples(model, evaluation, scoring.ScoringPass(4, pad, precision="fp32"))
    assert all(not on and d == torch.float32 for _, on, d in seen.calls)
    assert all(np.array_equal(a, b) for a, b in zip(default.token_logprobs, fp32.token_logprobs))
    seen.calls.clear()
    bf16 = scoring.score_examples(model, evaluation, scoring.ScoringPass(4, pad, precision="bf16"))
    assert seen.calls and all(on and d == torch.bfloat16 for _, on, d in seen.calls)
    columns = ("token_logprobs", "token_mu", "token_sigma")
    assert all(v.dtype == np.float32 for column in columns for v in bf16[column])
    diff = np.concatenate([a - b for a, b in zip(bf16.token_logprobs, fp32.token_logprobs)])
    assert 0 < np.abs(diff).max() < 0.1  # rounded in bfloat16, not wrong
    seen.calls.clear()
    table = perturb.mope_scores(model, evaluation, k=1, sigma=0.01, seed=0, batch_size=4, pad_id=pad,
                                precision="bf16")
    assert np.isfinite(table["mope"]).all() and all(on for _, on, _ in seen.calls)
    seen.calls.clear()
    labels = [1] * len(items["private"]) + [0] * len(items["nonmember"])
    per_block, _ = blocks.block_mope(model, evaluation, labels, k=1, batch_size=4, pad_id=pad, bootstrap=NO_BOOTSTRAP,
                                     precision="fp16")
    assert len(per_block) == 2 and all(on and d == torch.float16 for _, on, d in seen.calls)


def _script(name, cfg, inputs, outputs, rule):
    smk = types.SimpleNamespace(
        scriptdir=str(REPO / "scripts"), params=types.SimpleNamespace(cfg=cfg, code="test-code"),
        input=types.SimpleNamespace(**inputs, items=lambda: inputs.items()),
        output=types.SimpleNamespace(**outputs, items=lambda: outputs.items(), keys=lambda: outputs.keys()),
        log=[], threads=1, rule=rule, resources=types.SimpleNamespace(gpu=0),
    )
    runpy.run_path(str(REPO / "scripts" / name), init_globals={"snakemake": smk}, run_name="__main__")


def test_scoring_scripts_pass_the_precision(tmp_path, base_dirs, manifest_path, monkeypatch):
    asked = []
    original = models.autocast
    monkeypatch.setattr(models, "autocast", lambda precision, device: asked.append(precision) or original(
        precision, device))
    common = {"max_members": 4, "max_nonmembers": 4, "sample_seed": 0, "batch_size": 4,
              "max_length": MAX_LENGTH, "max_prompt_length": MAX_PROMPT, "precision": "bf16"}
    inputs = {"manifest": str(manifest_path), "model": str(base_dirs["gpt2"])}
    _script("score_model.py", {**common, "model": None, "short_tokens": 5}, inputs,
            {"scores": str(tmp_path / "scores.parquet")}, "score_model")
    assert set(asked) == {"bf16"}
    asked.clear()
    _script("mope.py", {**common, "k": 1, "sigma": 0.01, "seed": 0, "block": None}, inputs,
            {"mope": str(tmp_path / "mope.parquet")}, "mope")
    assert set(asked) == {"bf16"}
    asked.clear()
    blocks_cfg = {"signals": ["lens_loss", "lens_min_k_pp", "probe", "mope"], "k": 1, "sigmas": [0.01], "seed": 0,
                  "probe": {"folds": 2, "c": 1.0, "seed": 0, "population_negatives": False}, "min_k": 0.2,
                  "min_k_count": "ceil", "population": None, "n_bootstrap": 0, "bootstrap_seed": 0}
    _script("per_block.py", {**common, **blocks_cfg}, inputs,
            {"per_block": str(tmp_path / "blocks.csv"), "spread": str(tmp_path / "spread.csv"),
             "per_example": str(tmp_path / "blocks.parquet")}, "per_block")
    assert set(asked) == {"bf16"} and len(pd.read_csv(tmp_path / "blocks.csv")) == 2 * 4


# --------------------------------------------------------------------------------------- workflow params
def test_rules_carry_precision_and_the_base_dtype(tmp_path):
    """The planned jobs of configs/smoke-hf.yaml with bf16 settings: training jobs get train.precision and
    gradient_checkpointing, scoring jobs evaluation.precision, and a student starting from the init student
    of a bfloat16 base loads it with that dtype (so its checkpoint is saved in it too)."""
    import yaml

    from dag import plan_jobs
    from kdprivacy import standins

    standins.write_smoke_hf(tmp_path / "hf")
    raw = yaml.safe_load((REPO / "configs" / "smoke-hf.yaml").read_text())
    fam = raw["families"]["llama"]
    fam["bases"]["small"]["dtype"] = "bfloat16"
    fam["init"]["train"].update(precision="bf16", gradient_checkpointing=True)
    fam["teacher"]["lora"]["quantization"] = "4bit"
    raw["evaluation"] = {**raw.get("evaluation", {}), "precision": "bf16"}
    configfile = tmp_path / "config.yaml"
    configfile.write_text(yaml.safe_dump(raw, sort_keys=False))
    jobs = plan_jobs(configfile, tmp_path)
    by_rule: dict[str, list[dict]] = {}
    for job in jobs:
        by_rule.setdefault(job["rule"], []).append(job)
    for rule in ("score_model", "score_reference", "mope", "per_block"):
        assert by_rule[rule] and all(j["params"]["cfg"]["precision"] == "bf16" for j in by_rule[rule]), rule
    init = [j for j in by_rule["train_init"] if j["wildcards"]["family"] == "llama"]
    assert init and all(j["params"]["cfg"]["train"]["precision"] == "bf16" for j in init)
    assert all(j["params"]["cfg"]["train"]["gradient_checkpointing"] for j in init)
    teacher = [j for j in by_rule["train_teacher"] if j["wildcards"]["family"] == "llama"]
    assert teacher[0]["params"]["cfg"]["lora"]["quantization"] == "4bit"
    students = [j for j in by_rule["train_student"] if j["wildcards"]["family"] == "llama"]
    from_init = [j["params"]["cfg"]["base"] for j in students if j["params"]["cfg"]["init"] == "init"]
    assert from_init and all(r["dtype"] == "bfloat16" and "/init/" in r["name_or_path"] for r in from_init)
