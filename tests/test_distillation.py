"""The six KD methods (plus No-KD) on a tiny teacher/student: each runs, and its history shows the mechanism."""

from __future__ import annotations

import copy
import logging
import math
import types

import pytest
import torch

from kdprivacy import encoding, generation, models
from kdprivacy import kd as registry
from kdprivacy.config import Generation, Train
from kdprivacy.kd import distillm, generations, minillm, sampling
from kdprivacy.kd import teacher as kd_teacher
from kdprivacy.train import jobs, loop, losses, pools
from kdprivacy.train.runs import MethodRun, StudentRun, TeacherGenerationRun, resolved_generation
from kdprivacy.encoding import Encoded, encode_frame

import toy

LOG = logging.getLogger("test")
POOL_SIZES = {"private": 16, "nonmember": 8, "public": 16, "dev": 8, "pretrain": 8}
SPEC = {"arch": "gpt2", "n_layer": 2, "d_model": 32, "n_head": 4}
MAX_LENGTH, MAX_PROMPT = 96, 48
NEW_TOKENS = 10
LENGTHS = {"max_length": MAX_LENGTH, "max_prompt_length": MAX_PROMPT}


def _toy_manifest(seed: int = 0):
    return toy.manifest(POOL_SIZES, seed)


@pytest.fixture(scope="module")
def manifest():
    return _toy_manifest()


@pytest.fixture(scope="module")
def tokenizer(manifest):
    return toy.tokenizer(manifest, vocab_size=300)


@pytest.fixture(scope="module")
def items(manifest, tokenizer):
    return {pool: encode_frame(tokenizer, toy.select(manifest, pool), MAX_LENGTH, MAX_PROMPT) for pool in POOL_SIZES}


def _model(tokenizer, seed=0, **spec):
    return models.build_from_scratch({**SPEC, **spec}, tokenizer, max_positions=MAX_LENGTH, seed=seed)


@pytest.fixture(scope="module")
def teacher(tokenizer, items):
    model, _ = loop.sft(_model(tokenizer, seed=1), items["private"], None,
                          Train(epochs=6, lr=5e-3, batch_size=8), tokenizer.pad_token_id)
    return kd_teacher.freeze(model)


@pytest.fixture(scope="module")
def student0(tokenizer):
    return _model(tokenizer, seed=2).eval()


def _cfg(method, epochs=2, batch_size=4, params=None, kd=None, lr=3e-3, **gen):
    return {
        "method": method,
        "train": {"epochs": epochs, "lr": lr, "batch_size": batch_size},
        "kd": kd,
        "generation": {"max_new_tokens": NEW_TOKENS, **gen},
        "method_params": params,
        "seed": 0,
        "max_length": MAX_LENGTH,
        "max_prompt_length": MAX_PROMPT,
    }


def _run(method, student0, teacher, items, tokenizer, cfg, **kw):
    run = MethodRun.model_validate({**cfg, "method": method})
    return registry.train_method(
        copy.deepcopy(student0), teacher, kw.pop("train", items["public"]), items["dev"], run,
        tokenizer.pad_token_id, LOG, eos_id=tokenizer.eos_token_id, **kw,
    )


def _patch_dev_loss(monkeypatch, fn):
    """Every dev-loss evaluation (the loop's per-epoch one and DistiLLM's starting one) returns ``fn()``."""
    monkeypatch.setattr(losses, "mean_nll", fn)
    monkeypatch.setattr(loop, "mean_nll", fn)


def _teacher_generations(teacher, items, tokenizer):
    tokens = generation.generate(teacher, items["public"], NEW_TOKENS, 8, tokenizer.pad_token_id,
                                 tokenizer.eos_token_id, generation.Sampling(True, seed=0))
    return generation.with_responses(items["public"], tokens, MAX_LENGTH)


# ------------------------------------------------------------------------------------- config / units
def test_registry_and_config_validation():
    assert tuple(registry.METHODS) == ("nokd", "kd", "seqkd", "imitkd", "gkd", "minillm", "distillm")
    assert {name for name, spec in registry.METHODS.items() if spec.params is None} == {"nokd", "kd"}
    assert MethodRun(method="gkd", **LENGTHS).params.model_dump() == {"lmbda": 0.5, "beta": 0.5,
                                                                      "temperature_in_loss": True,
                                                                      "disable_dropout": True}
    assert MethodRun(method="gkd", **LENGTHS, method_params={"lmbda": 0.2, "beta": None}).params.lmbda == 0.2
    with pytest.raises(ValueError, match="lambda"):
        MethodRun(method="gkd", **LENGTHS, method_params={"lambda": 0.5})
    with pytest.raises(ValueError, match="sgo_ratio"):
        MethodRun(method="imitkd", **LENGTHS, method_params={"sgo_ratio": 1.5})
    with pytest.raises(ValueError, match="loss"):
        MethodRun(method="seqkd", method_params={"loss": "mse"})
    with pytest.raises(ValueError, match="method"):
        MethodRun(method="dpo")
    with pytest.raises(ValueError, match="needs max_length"):
        MethodRun(method="gkd")
    with pytest.raises(ValueError, match="takes no method_params"):
        MethodRun(method="kd", method_params={"beta": 0.5})
    gen = resolved_generation(Generation(), 96, 48, 8)
    assert gen.max_new_tokens == 48 and gen.batch_size == 8 and gen.do_sample is True
    with pytest.raises(ValueError, match="num_beams"):
        Generation.model_validate({"num_beams": 4})
    with pytest.raises(ValueError, match="unknown student method"):
        registry.train_method(None, None, [], [], types.SimpleNamespace(method="dpo"), 0)
    with pytest.raises(ValueError, match="only used by seqkd"):
        registry.train_method(None, None, [], [], MethodRun(method="kd"), 0, teacher_generations=[])


def test_adaptive_threshold_schedule():
    step = distillm.adaptive_threshold
    assert step(0.2, prev_loss=1.0, curr_loss=1.2, step=0.1, eps=0.1) == pytest.approx(0.3)  # worse by 0.2 > eps
    assert step(0.2, prev_loss=1.0, curr_loss=1.1, step=0.1, eps=0.1) == 0.2  # worse by exactly eps: no raise
    assert step(0.2, prev_loss=1.0, curr_loss=0.7, step=0.1, eps=0.0) == 0.2  # better
    assert step(0.2, prev_loss=1.0, curr_loss=1.0001, step=0.1, eps=0.0) == pytest.approx(0.3)
    assert step(0.95, prev_loss=1.0, curr_loss=2.0, step=0.1, eps=0.1) == 1.0  # capped
    assert step(0.2, prev_loss=math.nan, curr_loss=2.0, step=0.1, eps=0.1) == 0.2


def test_future_mean_rewards():
    rewards = torch.tensor([[1.0, 2.0, 3.0, 9.0], [4.0, 5.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 0], [0, 1, 1, 1]])
    norm = minillm.future_mean_rewards(rewards, mask, length_norm=True)
    assert norm.tolist() == [[2.5, 3.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
    raw = minillm.future_mean_rewards(rewards, mask, length_norm=False)
    assert raw.tolist() == [[5.0, 3.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
    rewards[1] = torch.tensor([0.0, 1.0, 2.0, 6.0])
    assert minillm.future_mean_rewards(rewards, mask)[1].tolist() == [0.0, 4.0, 6.0, 0.0]


def test_future_mean_rewards_discounted():
    """LMOps' discount (protocol: paper, gamma 0.95): A_t = sum_{t'>t} gamma^(t'-t-1) r_t' / #(t' > t)."""
    rewards = torch.tensor([[1.0, 2.0, 3.0, 9.0], [0.0, 1.0, 2.0, 6.0]])
    mask = torch.tensor([[1, 1, 1, 0], [0, 1, 1, 1]])
    g = 0.5
    raw = minillm.future_mean_rewards(rewards, mask, length_norm=False, gamma=g)
    assert raw.tolist() == [[2.0 + g * 3.0, 3.0, 0.0, 0.0], [0.0, 2.0 + g * 6.0, 6.0, 0.0]]
    norm = minillm.future_mean_rewards(rewards, mask, length_norm=True, gamma=g)
    assert norm.tolist() == [[(2.0 + g * 3.0) / 2, 3.0, 0.0, 0.0], [0.0, (2.0 + g * 6.0) / 2, 6.0, 0.0]]
    # gamma 1 is the undiscounted sum (the loop and the cumulative-sum path agree); gamma 0 the next reward
    loop = minillm.future_mean_rewards(rewards, mask, gamma=1.0 - 1e-12)
    assert torch.allclose(loop, minillm.future_mean_rewards(rewards, mask), atol=1e-9)
    assert minillm.future_mean_rewards(rewards, mask, length_norm=False, gamma=0.0).tolist() == [
        [2.0, 3.0, 0.0, 0.0], [0.0, 2.0, 6.0, 0.0]]


def test_replay_buffer():
    buffer = sampling.ReplayBuffer(3, seed=0)
    with pytest.raises(ValueError, match="empty"):
        buffer.sample(2)
    buffer.push([Encoded(f"e{i}", (1,), (2,)) for i in range(5)])
    assert len(buffer) == 3 and [it.id for it in buffer.items] == ["e2", "e3", "e4"]  # FIFO eviction
    drawn = buffer.sample(2)
    assert len(drawn) == 2 and len({it.id for it in drawn}) == 2 and {it.id for it in drawn} <= {"e2", "e3", "e4"}
    assert len(buffer.sample(10)) == 3


# ------------------------------------------------------------------------------------------ methods
def test_seqkd_trains_on_teacher_outputs(student0, teacher, items, tokenizer):
    gens = _teacher_generations(teacher, items, tokenizer)
    differs = generations.fraction_differing(gens, items["public"])
    assert differs > 0.5
    before = losses.mean_nll(student0, gens, 8, tokenizer.pad_token_id)
    model, history = _run("seqkd", student0, teacher, items, tokenizer, _cfg("seqkd", epochs=5, lr=1e-2),
                          teacher_generations=gens)
    assert (history["frac_differs_from_gt"] == differs).all() and (history["n_train"] == len(gens)).all()
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    assert losses.mean_nll(model, gens, 8, tokenizer.pad_token_id) < before - 0.5
    # loss="kd": the divergence to the teacher on the teacher's outputs goes down
    _, kd_hist = _run("seqkd", student0, teacher, items, tokenizer,
                      _cfg("seqkd", epochs=3, params={"loss": "kd"}), teacher_generations=gens)
    assert kd_hist["kd_loss"].iloc[-1] < kd_hist["kd_loss"].iloc[0]
    # generations must answer exactly the training prompts
    with pytest.raises(ValueError, match="exactly the training prompts"):
        _run("seqkd", student0, teacher, items, tokenizer, _cfg("seqkd"), teacher_generations=gens[:-1])
    with pytest.raises(ValueError, match="needs teacher_generations"):
        _run("seqkd", student0, teacher, items, tokenizer, _cfg("seqkd"))


def test_kd_and_nokd_dispatch(student0, teacher, items, tokenizer):
    _, hist = _run("kd", student0, teacher, items, tokenizer, _cfg("kd", epochs=3, kd={"objective": "rkl"}))
    assert hist["kd_loss"].iloc[-1] < hist["kd_loss"].iloc[0]
    _, hist = _run("nokd", student0, None, items, tokenizer, _cfg("nokd", epochs=2))
    assert "kd_loss" not in hist and hist["train_loss"].iloc[-1] < hist["train_loss"].iloc[0]


def test_imitkd_replay_buffer_and_sgo_ratio(student0, teacher, items, tokenizer):
    _, hist = _run("imitkd", student0, teacher, items, tokenizer,
                   _cfg("imitkd", params={"sgo_ratio": 1.0, "buffer_capacity": 6}))
    assert hist["frac_sgo_batches"].tolist() == [1.0, 1.0]
    assert hist["buffer_size"].tolist() == [6, 6]  # 16 samples per epoch, capacity 6
    assert hist["n_sgo_generated"].tolist() == [16, 16]
    assert ((hist["sgo_mean_len"] >= 1) & (hist["sgo_mean_len"] <= NEW_TOKENS)).all()
    assert hist["kd_loss"].notna().all()
    _, half = _run("imitkd", student0, teacher, items, tokenizer,
                   _cfg("imitkd", epochs=3, batch_size=2, params={"sgo_ratio": 0.5}))
    frac = half["frac_sgo_batches"].mean()  # 24 seeded decisions
    assert 0.25 <= frac <= 0.75
    assert half["n_sgo_generated"].sum() == round(frac * 24) * 2


def test_imitkd_linear_schedule_anneals_towards_sgo(student0, teacher, items, tokenizer):
    """Lin et al.'s annealing: the SGO probability rises linearly from 0 (first step) to sgo_ratio (last)."""
    _, hist = _run("imitkd", student0, teacher, items, tokenizer,
                   _cfg("imitkd", epochs=3, batch_size=2, params={"sgo_ratio": 1.0, "schedule": "linear"}))
    frac = hist["frac_sgo_batches"].tolist()  # 8 steps per epoch, probabilities 0/23 ... 23/23
    assert frac[0] < 0.5 < frac[-1] and frac[0] < frac[1] <= frac[2]
    assert hist["sgo_probability"].tolist() == pytest.approx([7 / 23, 15 / 23, 1.0])
    _, constant = _run("imitkd", student0, teacher, items, tokenizer,
                       _cfg("imitkd", epochs=3, batch_size=2, params={"sgo_ratio": 1.0}))
    assert constant["frac_sgo_batches"].tolist() == [1.0, 1.0, 1.0]


def test_gkd_on_policy_fraction(student0, teacher, items, tokenizer):
    _, off = _run("gkd", student0, teacher, items, tokenizer, _cfg("gkd", params={"lmbda": 0.0}))
    assert off["frac_sgo_batches"].tolist() == [0.0, 0.0] and off["n_sgo_generated"].sum() == 0
    _, on = _run("gkd", student0, teacher, items, tokenizer, _cfg("gkd", params={"lmbda": 1.0, "beta": 0.5}))
    assert on["frac_sgo_batches"].tolist() == [1.0, 1.0] and on["n_sgo_generated"].tolist() == [16, 16]
    assert (on["kd_loss"] > 0).all()
    _, mixed = _run("gkd", student0, teacher, items, tokenizer, _cfg("gkd", epochs=3, batch_size=2))
    assert 0.25 <= mixed["frac_sgo_batches"].mean() <= 0.75  # lmbda = 0.5 by default


def test_gkd_temperature_in_the_loss_or_only_in_sampling(student0, teacher, items, tokenizer):
    """TRL's GKDTrainer (protocol: paper) takes the JSD at temperature 1 whatever kd.temperature is; ours
    divides both logits by it. Ground-truth batches only (lmbda 0), so the runs differ by the loss alone."""
    def kd_losses(temperature, in_loss):
        kd = {"objective": "fkl", "temperature": temperature, "lm_weight": 0.0, "beta": None, "alpha": None}
        _, hist = _run("gkd", student0, teacher, items, tokenizer,
                       _cfg("gkd", epochs=1, batch_size=8, kd=kd,
                            params={"lmbda": 0.0, "temperature_in_loss": in_loss}))
        return hist["kd_loss"].tolist()

    at_one = kd_losses(1.0, True)
    assert kd_losses(3.0, False) == at_one  # the temperature does not reach the loss
    assert kd_losses(3.0, True) != at_one
    assert kd_losses(1.0, False) == at_one


def test_minillm_policy_gradient_stats(student0, teacher, items, tokenizer):
    _, hist = _run("minillm", student0, teacher, items, tokenizer, _cfg("minillm", lr=1e-3))
    for column in ("reward", "rev_kl", "clip_frac", "sample_len", "pg_loss", "reg_loss", "lm_loss", "mean_w"):
        assert column in hist and hist[column].map(math.isfinite).all(), column
    assert hist["clip_frac"].between(0, 1).all()
    assert (hist["rev_kl"] > 0).all()
    assert hist["sample_len"].between(1, NEW_TOKENS).all()
    assert hist["n_sgo_generated"].tolist() == [16, 16]
    # teacher mixing makes the importance weights q/p̃ differ from 1 (and PPO clipping engage)
    assert (hist["mean_w"] - 1).abs().max() > 1e-3 and hist["clip_frac"].max() > 0
    # without mixing (alpha = 0) the sampler is the student: w = 1, ratio = 1 on first use, nothing clipped
    _, pure = _run("minillm", student0, teacher, items, tokenizer, _cfg("minillm", epochs=1, params={"alpha": 0.0}))
    assert pure["mean_w"].iloc[0] == pytest.approx(1.0, abs=1e-4) and pure["clip_frac"].iloc[0] == 0.0
    # rollouts reused for two steps: the second use sees the updated policy (ratio != 1)
    _, reuse = _run("minillm", student0, teacher, items, tokenizer,
                    _cfg("minillm", epochs=1, params={"alpha": 0.0, "ppo_epochs": 2}, lr=5e-3))
    assert reuse["n_sgo_generated"].iloc[0] == 8 and reuse["clip_frac"].iloc[0] > 0


def test_distillm_threshold_rises_when_dev_loss_worsens(student0, teacher, items, tokenizer, monkeypatch):
    dev_losses = iter(range(1, 100))
    _patch_dev_loss(monkeypatch, lambda *a, **k: float(next(dev_losses)))  # dev loss +1 every epoch
    params = {"init_threshold": 0.0, "threshold_step": 0.5, "loss_eps": 0.1, "buffer_capacity": 100}
    _, hist = _run("distillm", student0, teacher, items, tokenizer, _cfg("distillm", epochs=3, params=params))
    assert hist["sgo_threshold"].tolist() == [0.0, 0.5, 1.0]
    assert hist["sgo_threshold_next"].tolist() == [0.5, 1.0, 1.0]
    assert hist["frac_sgo_batches"].iloc[0] == 0.0 and hist["frac_sgo_batches"].iloc[2] == 1.0
    assert hist["n_sgo_generated"].iloc[0] == 0 and hist["n_sgo_generated"].iloc[2] > 0
    # buffer below capacity: every SGO batch is freshly generated
    assert (hist["frac_fresh_batches"] == hist["frac_sgo_batches"]).all()
    assert hist["buffer_size"].iloc[-1] == hist["n_sgo_generated"].sum()
    assert "kd_loss" in hist

    flat = iter([1.0] * 100)
    _patch_dev_loss(monkeypatch, lambda *a, **k: next(flat))  # dev loss never worsens
    _, steady = _run("distillm", student0, teacher, items, tokenizer,
                     _cfg("distillm", epochs=2, batch_size=2, params={"init_threshold": 0.5}))
    assert steady["sgo_threshold"].tolist() == [0.5, 0.5]
    assert 0.1 <= steady["frac_sgo_batches"].mean() <= 0.9


def test_distillm_replays_from_a_full_buffer(student0, teacher, items, tokenizer, monkeypatch):
    _patch_dev_loss(monkeypatch, lambda *a, **k: 1.0)
    params = {"init_threshold": 1.0, "buffer_capacity": 4}
    _, hist = _run("distillm", student0, teacher, items, tokenizer, _cfg("distillm", epochs=2, params=params))
    assert hist["frac_sgo_batches"].tolist() == [1.0, 1.0]
    # once full, fresh generation only with probability φ·(1 − progress): some batches are replays
    assert hist["frac_fresh_batches"].mean() < 1.0 and hist["buffer_size"].iloc[-1] == 4


@pytest.mark.parametrize("method", ["imitkd", "gkd", "minillm", "distillm"])
def test_guard_rejects_secret_ids_in_generated_data(method, manifest, student0, teacher, items, tokenizer):
    guard = pools.pool_guard(manifest, ["public"], "student-generated outputs")
    leaky = items["public"][:6] + items["private"][:2]
    params = {"imitkd": {"sgo_ratio": 1.0}, "gkd": {"lmbda": 1.0}, "minillm": {},
              "distillm": {"init_threshold": 1.0}}[method]
    with pytest.raises(AssertionError, match="private"):
        _run(method, student0, teacher, items, tokenizer, _cfg(method, epochs=1, batch_size=8, params=params),
             train=leaky, guard=guard)
    _run(method, student0, teacher, items, tokenizer, _cfg(method, epochs=1, batch_size=8, params=params),
         train=items["public"][:8], guard=guard)  # public only: fine


def test_guard_rejects_secret_teacher_generations(manifest, student0, teacher, items, tokenizer):
    guard = pools.pool_guard(manifest, ["public"], "teacher generations")
    gens = _teacher_generations(teacher, items, tokenizer)
    leaked = gens[:-1] + [Encoded(items["nonmember"][0].id, gens[-1].prompt_ids, gens[-1].response_ids)]
    with pytest.raises(AssertionError, match="nonmember"):
        _run("seqkd", student0, teacher, items, tokenizer, _cfg("seqkd", epochs=1), teacher_generations=leaked,
             guard=guard)
    with pytest.raises(AssertionError, match="not in pools"):
        guard([items["dev"][0].id])  # dev prompts are not SeqKD data either
    with pytest.raises(AssertionError, match="subset"):
        pools.pool_guard(manifest, ["public", "private"])


def test_train_student_from_cfg_all_methods_and_artifact_guard(tmp_path, manifest, tokenizer, teacher, student0):
    manifest_path = tmp_path / "manifest.parquet"
    manifest.to_parquet(manifest_path, index=False)
    for name, model in (("teacher", teacher), ("base", student0)):
        models.save_model(model, tokenizer, tmp_path / name)
    ref = lambda name: {"name_or_path": str(tmp_path / name)}  # noqa: E731
    gen_cfg = {"teacher": ref("teacher"), "generation": {"max_new_tokens": NEW_TOKENS, "batch_size": 8},
               "seed": 0, "max_length": MAX_LENGTH, "max_prompt_length": MAX_PROMPT}
    frame, summary = generations.generate_teacher(TeacherGenerationRun.model_validate(gen_cfg), manifest_path, LOG)
    assert list(frame.columns) == generations.GENERATION_COLUMNS
    assert set(frame["id"]) == set(toy.select(manifest, "public").id) and summary["n"] == 16
    assert summary["frac_differs_from_gt"] > 0.5 and summary["pools"] == ["public"]
    gens_path = tmp_path / "gens.parquet"
    frame.to_parquet(gens_path, index=False)

    base_cfg = {**_cfg("seqkd", epochs=1, batch_size=8), "base": ref("base"), "teacher": ref("teacher")}
    for method in ("seqkd", "gkd"):
        cfg = {**base_cfg, "method": method}
        path = gens_path if method == "seqkd" else None
        model, tok, hist = jobs.train_student_from_cfg(StudentRun.model_validate(cfg), manifest_path, LOG,
                                                       teacher_generations_path=path)
        assert len(hist) == 1 and tok.pad_token_id == tokenizer.pad_token_id
    with pytest.raises(ValueError, match="only by seqkd"):
        jobs.train_student_from_cfg(StudentRun.model_validate({**base_cfg, "method": "kd"}), manifest_path, LOG,
                                    teacher_generations_path=gens_path)
    with pytest.raises(ValueError, match="needed by seqkd"):
        jobs.train_student_from_cfg(StudentRun.model_validate(base_cfg), manifest_path, LOG)

    leaked = frame.copy()
    leaked.loc[0, "id"] = toy.select(manifest, "private").id.iloc[0]
    leaked_path = tmp_path / "leaked.parquet"
    leaked.to_parquet(leaked_path, index=False)
    with pytest.raises(AssertionError, match="teacher generations contains secret examples"):
        jobs.train_student_from_cfg(StudentRun.model_validate(base_cfg), manifest_path, LOG,
                                    teacher_generations_path=leaked_path)


def test_fixed_divergence_methods_ignore_kd_objective(student0, teacher, items, tokenizer):
    """gkd/distillm take beta/skew from method_params; a kd block written for another objective is fine."""
    kd = {"objective": "sfkl", "temperature": 1.0, "lm_weight": 0.0, "beta": None, "alpha": 0.9}
    _, hist = _run("gkd", student0, teacher, items, tokenizer,
                   _cfg("gkd", epochs=1, batch_size=8, kd=kd, params={"lmbda": 0.0, "beta": 0.5}))
    assert hist["kd_loss"].map(math.isfinite).all() and (hist["kd_loss"] > 0).all()
    with pytest.raises(ValueError, match="objectve"):
        _run("gkd", student0, teacher, items, tokenizer, _cfg("gkd", epochs=1, kd={"objectve": "fkl"}))


def test_tokenizer_and_teacher_generation_scripts_are_the_library_calls(tmp_path, manifest, tokenizer, teacher):
    """scripts/train_tokenizer.py and scripts/generate_teacher.py (one runtime.Job and one library call each)
    write what train.jobs.train_tokenizer_from_cfg and kd.generations.generate_teacher return, with provenance."""
    import json
    import runpy
    from pathlib import Path

    import pandas as pd

    from kdprivacy.config import TokenizerTrain

    scripts = Path(__file__).resolve().parents[1] / "scripts"
    manifest_path = tmp_path / "manifest.parquet"
    manifest.to_parquet(manifest_path, index=False)
    models.save_model(teacher, tokenizer, tmp_path / "teacher")

    class Named(dict):  # what the scripts use of Snakemake's Namedlist: attributes and items()
        __getattr__ = dict.__getitem__

    def run(script, cfg, inputs, outputs, **extra):
        smk = types.SimpleNamespace(scriptdir=str(scripts), params=types.SimpleNamespace(cfg=cfg, code="test-code"),
                                    input=Named(inputs), output=Named(outputs), log=[], threads=1, rule=script,
                                    **extra)
        runpy.run_path(str(scripts / f"{script}.py"), init_globals={"snakemake": smk}, run_name="__main__")

    tok_cfg = {"vocab_size": 280, "min_frequency": 2, "pools": ["pretrain", "public"]}
    run("train_tokenizer", tok_cfg, {"manifest": str(manifest_path)}, {"dir": str(tmp_path / "tok")})
    expected = jobs.train_tokenizer_from_cfg(TokenizerTrain.model_validate(tok_cfg), manifest_path)
    assert models.load_tokenizer(str(tmp_path / "tok")).get_vocab() == expected.get_vocab()
    assert json.loads((tmp_path / "tok" / "provenance.json").read_text())["params"] == {"cfg": tok_cfg,
                                                                                          "code": "test-code"}

    gen_cfg = {"teacher": {"name_or_path": str(tmp_path / "teacher")},
               "generation": {"max_new_tokens": NEW_TOKENS, "batch_size": 8}, "seed": 3, **LENGTHS}
    out = tmp_path / "gens.parquet"
    run("generate_teacher", gen_cfg, {"manifest": str(manifest_path), "teacher": str(tmp_path / "teacher")},
        {"generations": str(out), "provenance": f"{out}.provenance.json"}, resources=types.SimpleNamespace(gpu=0))
    torch.manual_seed(3)  # the job seeds every RNG from the run's seed before generating
    frame, summary = generations.generate_teacher(TeacherGenerationRun.model_validate(gen_cfg), manifest_path, LOG)
    pd.testing.assert_frame_equal(pd.read_parquet(out), frame)
    params = json.loads(Path(f"{out}.provenance.json").read_text())["params"]
    assert params == {"cfg": gen_cfg, "code": "test-code", "summary": summary}


@pytest.mark.parametrize("disable", [True, False])
def test_minillm_disable_dropout_makes_train_mode_forwards_identical(tokenizer, teacher, items, monkeypatch,
                                                                       disable):
    """MiniLLM's q_old is computed in eval mode and q_θ in train mode: with ``disable_dropout`` (default) two
    train-mode forwards of the student during training are identical (ratio 1 on the first use); without it
    a student with dropout > 0 is noisy. The model's config keeps its dropout either way."""
    student = _model(tokenizer, seed=2, dropout=0.3)
    seen = []
    real_fit = loop.fit

    def spy_fit(model, *args, **kwargs):
        batch = encoding.collate(items["public"][:4], tokenizer.pad_token_id)
        model.train()
        with torch.no_grad():
            a, b = model(input_ids=batch["input_ids"]).logits, model(input_ids=batch["input_ids"]).logits
        seen.append(torch.equal(a, b))
        return real_fit(model, *args, **kwargs)

    monkeypatch.setattr(loop, "fit", spy_fit)
    params = {"alpha": 0.0} if disable else {"alpha": 0.0, "disable_dropout": False}
    cfg = _cfg("minillm", epochs=1, params=params)
    model, hist = _run("minillm", student, teacher, items, tokenizer, cfg)
    assert seen == [disable]
    if disable:  # same policy as the sampler on the first use: nothing clipped
        assert hist["clip_frac"].iloc[0] == 0.0
    assert model.config.resid_pdrop == 0.3
    assert all(m.p == 0.3 for m in model.modules() if isinstance(m, torch.nn.Dropout))


# ------------------------------------------------------------------------- the pretraining LM loss
def test_pretrain_batches_cycle_seeded_and_resume(items, tokenizer):
    from kdprivacy.kd.pretrain import PretrainBatches

    pool = items["pretrain"]  # 8 items, batches of 3: a pass ends inside the third batch
    batches = PretrainBatches(pool, 3, seed=0, pad_id=tokenizer.pad_token_id)
    drawn = [batches.next() for _ in range(3)]
    first = [b["input_ids"] for b in drawn]
    rows = [tuple(r[m.bool()].tolist()) for b in drawn for r, m in zip(b["input_ids"], b["attention_mask"])]
    # the first pass: every item exactly once (then the second pass begins)
    assert sorted(rows[:8]) == sorted(tuple(i.prompt_ids + i.response_ids) for i in pool)
    state = batches.state_dict()
    after = [batches.next()["input_ids"] for _ in range(4)]
    again = PretrainBatches(pool, 3, seed=0, pad_id=tokenizer.pad_token_id)
    again.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(after, [again.next()["input_ids"] for _ in range(4)]))
    other = PretrainBatches(pool, 3, seed=1, pad_id=tokenizer.pad_token_id).next()["input_ids"]
    assert not torch.equal(other, first[0])
    with pytest.raises(ValueError, match="pretrain pool"):
        PretrainBatches([], 3, seed=0, pad_id=0)


def test_pretrain_term_is_ce_and_forward_kl_on_every_token(items, tokenizer, teacher, student0):
    from kdprivacy.kd import objectives
    from kdprivacy.kd.pretrain import pretrain_term

    batch = encoding.collate(items["pretrain"][:4], tokenizer.pad_token_id)
    with torch.no_grad():
        ce, stats = pretrain_term(student0, teacher, batch, 0.0)
        assert ce.item() == pytest.approx(losses.lm_loss(student0, batch, on="all")[0].item(), rel=1e-6)
        assert set(stats) == {"pretrain_lm_loss"}
        kd_only, stats = pretrain_term(student0, teacher, batch, 1.0)
        s, _, mask = encoding.shift_for_causal_lm(losses.forward_logits(student0, batch), batch["input_ids"],
                                                  batch["attention_mask"])
        kl = objectives.forward_kl(s, losses.forward_logits(teacher, batch)[:, :-1], mask)
        assert kd_only.item() == pytest.approx(kl.item(), rel=1e-5) and kl.item() > 0
        half, _ = pretrain_term(student0, teacher, batch, 0.5)
        assert half.item() == pytest.approx(0.5 * ce.item() + 0.5 * kl.item(), rel=1e-5)
        same, stats = pretrain_term(teacher, teacher, batch, 1.0)  # the teacher as its own student: KL 0
        assert abs(same.item()) < 1e-6 and stats["pretrain_kd_loss"] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("method", ["imitkd", "distillm", "minillm"])
def test_pretrain_loss_reaches_the_on_policy_methods(method, student0, teacher, items, tokenizer):
    params = {"pretrain_weight": 1.0, "pretrain_kd_ratio": 0.5}
    _, hist = _run(method, student0, teacher, items, tokenizer, _cfg(method, epochs=1, params=params),
                   pretrain_items=items["pretrain"])
    assert (hist["pretrain_lm_loss"] > 0).all() and (hist["pretrain_kd_loss"] > 0).all()
    _, off = _run(method, student0, teacher, items, tokenizer, _cfg(method, epochs=1))
    assert "pretrain_lm_loss" not in off
    with pytest.raises(ValueError, match="pretrain_weight > 0"):
        _run(method, student0, teacher, items, tokenizer, _cfg(method, epochs=1), pretrain_items=items["pretrain"])
    with pytest.raises(ValueError, match="pretrain pool"):
        _run(method, student0, teacher, items, tokenizer, _cfg(method, epochs=1, params=params))


def test_pretrain_loss_resumes_exactly(tmp_path, student0, teacher, items, tokenizer):
    from kdprivacy import checkpoint

    run = MethodRun.model_validate({**_cfg("distillm", epochs=2, batch_size=4,
                                           params={"pretrain_weight": 1.0, "init_threshold": 0.5}),
                                    "train": {"epochs": 2, "lr": 3e-3, "batch_size": 4,
                                              "checkpoint_every_steps": 2}})

    class Killed(Exception):
        pass

    def kill_after(n):
        def on_step(step):
            if step >= n:
                raise Killed
        return on_step

    def train(resume=None, on_step=None):
        return registry.train_method(copy.deepcopy(student0), teacher, items["public"], items["dev"], run,
                                     tokenizer.pad_token_id, LOG, eos_id=tokenizer.eos_token_id, resume=resume,
                                     on_step=on_step, pretrain_items=items["pretrain"])

    reference, ref_history = train()
    resume = checkpoint.Resume(tmp_path / "r", "fp")
    with pytest.raises(Killed):
        train(resume, kill_after(5))
    model, history = train(resume)
    for (name, a), b in zip(reference.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), name
    assert history["pretrain_lm_loss"].tolist() == ref_history["pretrain_lm_loss"].tolist()


def test_student_job_reads_the_pretrain_pool(tmp_path, manifest, tokenizer, teacher, student0):
    manifest_path = tmp_path / "manifest.parquet"
    manifest.to_parquet(manifest_path, index=False)
    for name, model in (("teacher", teacher), ("base", student0)):
        models.save_model(model, tokenizer, tmp_path / name)
    cfg = {**_cfg("distillm", epochs=1, batch_size=8, params={"pretrain_weight": 0.5}),
           "base": {"name_or_path": str(tmp_path / "base")}, "teacher": {"name_or_path": str(tmp_path / "teacher")}}
    _, _, hist = jobs.train_student_from_cfg(StudentRun.model_validate(cfg), manifest_path, LOG)
    assert (hist["pretrain_lm_loss"] > 0).all()
    no_pretrain = manifest[manifest["pool"] != "pretrain"]
    no_pretrain.to_parquet(manifest_path, index=False)
    with pytest.raises(ValueError, match="pretrain pool"):
        jobs.train_student_from_cfg(StudentRun.model_validate(cfg), manifest_path, LOG)
