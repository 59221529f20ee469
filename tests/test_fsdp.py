"""FSDP (``train.parallel: fsdp``, :mod:`kdprivacy.train.fsdp`) on two gloo ranks on the CPU: the sharded
run equals one process to rounding, a killed sharded run resumes exactly, the saved model is an ordinary
``save_pretrained`` directory, and a KD method that samples from the student trains under it."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pandas as pd
import pytest
import torch
from pydantic import ValidationError
from safetensors import safe_open

from kdprivacy import models
from kdprivacy import kd as registry
from kdprivacy.config import Train
from kdprivacy.kd import fused
from kdprivacy.kd import teacher as kd_teacher
from kdprivacy.train import distributed, loop
from kdprivacy.train.runs import MethodRun

from test_resume import (  # noqa: F401 (fixtures)
    LOG,
    MAX_LENGTH,
    SPEC,
    _as_shards,
    _cfg,
    _item_mean_loss,
    killed_then_resumed,
    items,
    manifest,
    teacher,
    tokenizer,
)

FSDP_SPEC = {**SPEC, "n_layer": 2, "dropout": 0.0}  # two blocks: two FSDP units under the root
# Tolerance against one process: the same as the DDP tests' (test_resume.py). Not bit-exact: the gradient
# average (sum of two ranks' share-weighted gradients) and the clipping norm (sum of per-shard sums of
# squares) round differently from one process's single backward and norm.
ATOL = 1e-5


def _fresh(tokenizer):
    return models.build_from_scratch(FSDP_SPEC, tokenizer, MAX_LENGTH, seed=2)


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(rank, world, port):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), KDPRIVACY_DEVICE="cpu")
    torch.set_num_threads(1)


def test_config_refuses_an_unknown_parallel_mode():
    assert Train().parallel == "ddp"  # the default: results of existing configs do not change
    assert Train(parallel="fsdp").parallel == "fsdp"
    with pytest.raises(ValidationError, match="parallel"):
        Train(parallel="zero3")
    with pytest.raises(ValueError, match="train.parallel"):
        distributed.DataParallel("zero3")
    with pytest.raises(ValueError, match="fp16"):
        distributed.DataParallel("fsdp", "fp16")


def _fit_worker(rank, world, port, model_dir, items, dev, cfg, pad_id, tokenizer, out_dir):
    _env(rank, world, port)
    from torch.distributed.tensor import DTensor

    sharded = []

    def run(**kw):
        model = models.load_model(model_dir)
        full = sum(p.numel() for p in model.parameters())

        def on_step(step):  # the model trains sharded: this rank holds about half of every parameter
            local = sum(p.to_local().numel() for p in model.parameters() if isinstance(p, DTensor))
            sharded.append(local < full)
            if kw.get("on_step"):
                kw["on_step"](step)

        return loop.fit(model, items, dev, cfg, pad_id, _item_mean_loss, LOG, "fsdp",
                        **{**kw, "on_step": on_step})

    ddp_cfg = cfg.model_copy(update={"parallel": "ddp"})
    ddp_model, _ = loop.fit(models.load_model(model_dir), items, dev, ddp_cfg, pad_id, _item_mean_loss, LOG,
                            "ddp")
    torch.save(ddp_model.state_dict(), Path(out_dir) / f"ddp{rank}.pt")
    model, history = run()
    assert not any(isinstance(p, DTensor) for p in model.parameters())  # released: a plain model again
    assert type(model).__name__ == "GPT2LMHeadModel"
    if rank == 0:
        models.save_model(model, tokenizer, Path(out_dir) / "saved")
    torch.save({"state": model.state_dict(), "history": history}, Path(out_dir) / f"reference{rank}.pt")
    model, history = killed_then_resumed(run, Path(out_dir) / "resume", 4)
    torch.save({"state": model.state_dict(), "history": history, "sharded": sharded},
               Path(out_dir) / f"resumed{rank}.pt")
    distributed.finish_distributed()


def test_fsdp_fit_matches_one_process_resumes_and_saves_a_plain_model(tmp_path, tokenizer, items):
    import torch.multiprocessing as mp

    model_dir = tmp_path / "model"
    models.save_model(_fresh(tokenizer), tokenizer, model_dir)
    train = items["public"] + items["pretrain"][:1]  # batches of 6, 6, 1: rank 1 gets a zero-weight row
    cfg = Train(epochs=2, lr=3e-3, batch_size=6, checkpoint_every_steps=1, parallel="fsdp")
    pad_id = tokenizer.pad_token_id
    mp.spawn(_fit_worker, args=(2, _port(), str(model_dir), train, items["dev"], cfg, pad_id, tokenizer,
                                str(tmp_path)), nprocs=2, join=True)

    single, single_history = loop.fit(models.load_model(str(model_dir)), train, items["dev"], cfg, pad_id,
                                      _item_mean_loss, LOG, "single")
    ranks = [torch.load(tmp_path / f"reference{r}.pt", weights_only=False) for r in range(2)]
    resumed = [torch.load(tmp_path / f"resumed{r}.pt", weights_only=False) for r in range(2)]
    assert all(r["sharded"] and all(r["sharded"]) for r in resumed)
    for other in (ranks[1], *resumed):  # both ranks end with the same full model; the resumed run is exact
        assert other["state"].keys() == ranks[0]["state"].keys()
        assert all(torch.equal(ranks[0]["state"][k], v) for k, v in other["state"].items())
        pd.testing.assert_frame_equal(ranks[0]["history"], other["history"], check_exact=True)
    diff = max((ranks[0]["state"][k] - v).abs().max().item() for k, v in single.state_dict().items())
    LOG.warning("fsdp: 2 gloo ranks vs 1 process, max abs weight difference %.3g", diff)
    ddp = torch.load(tmp_path / "ddp0.pt", weights_only=True)
    ddp_diff = max((ranks[0]["state"][k] - v).abs().max().item() for k, v in ddp.items())
    LOG.warning("fsdp vs ddp (2 gloo ranks each): max abs weight difference %.3g", ddp_diff)
    assert ddp_diff <= ATOL
    for name, value in single.state_dict().items():
        torch.testing.assert_close(ranks[0]["state"][name], value, rtol=0, atol=ATOL, msg=name)
    history = ranks[0]["history"]
    assert history["step"].tolist() == single_history["step"].tolist() == [3, 6]
    assert history["train_loss"].tolist() == pytest.approx(single_history["train_loss"].tolist(), abs=1e-5)
    assert history["dev_loss"].tolist() == pytest.approx(single_history["dev_loss"].tolist(), abs=1e-5)

    # the saved FSDP model is an ordinary save_pretrained directory, laid out as a one-process one
    plain = tmp_path / "plain"
    models.save_model(single, tokenizer, plain)
    saved = tmp_path / "saved"
    assert sorted(p.name for p in saved.iterdir()) == sorted(p.name for p in plain.iterdir())
    assert json.loads((saved / "config.json").read_text()) == json.loads((plain / "config.json").read_text())
    with safe_open(saved / "model.safetensors", "pt") as a, safe_open(plain / "model.safetensors", "pt") as b:
        assert sorted(a.keys()) == sorted(b.keys())
        for k in a.keys():
            x, y = a.get_tensor(k), b.get_tensor(k)
            assert x.dtype == y.dtype and x.shape == y.shape, k
    reloaded = models.load_model(str(saved))
    assert all(torch.equal(v, ranks[0]["state"][k]) for k, v in reloaded.state_dict().items())


def _gkd_worker(rank, world, port, student_dir, teacher_dir, items, dev, cfg, pad_id, eos_id, out_dir):
    _env(rank, world, port)
    from torch.distributed.tensor import DTensor

    student = models.load_model(student_dir)
    seen = {"steps": 0, "sharded": [], "fused": []}

    def on_step(step):
        seen["steps"] = step
        seen["sharded"].append(all(isinstance(p, DTensor) for p in student.parameters()))
        seen["fused"].append(fused.head_chain(student, trainable=True) is not None)

    teacher = kd_teacher.freeze(models.load_model(teacher_dir))
    run = MethodRun.model_validate(cfg)
    model, history = registry.train_method(student, teacher, items, dev, run, pad_id, LOG, eos_id=eos_id,
                                           on_step=on_step)
    torch.save({"state": model.state_dict(), "history": history, "seen": seen},
               Path(out_dir) / f"gkd{rank}.pt")
    distributed.finish_distributed()


def test_fsdp_kd_method_with_student_sampling_matches_one_process(tmp_path, tokenizer, items, teacher,
                                                                   monkeypatch):
    """GKD (the student samples in make_batch -- ranks decode different numbers of tokens -- then a student
    forward with gradients and a teacher forward in the loss) with a sharded student on two gloo ranks."""
    import torch.multiprocessing as mp

    student_dir, teacher_dir = tmp_path / "student", tmp_path / "teacher"
    models.save_model(_fresh(tokenizer), tokenizer, student_dir)
    models.save_model(teacher, tokenizer, teacher_dir)
    train = items["public"][:9]  # batches of 4, 4, 1
    cfg = _cfg("gkd", {"lmbda": 0.5}, checkpoint_every_steps=0, parallel="fsdp")
    pad_id, eos_id = tokenizer.pad_token_id, tokenizer.eos_token_id
    mp.spawn(_gkd_worker, args=(2, _port(), str(student_dir), str(teacher_dir), train, items["dev"], cfg,
                                pad_id, eos_id, str(tmp_path)), nprocs=2, join=True)

    fit = loop.fit
    monkeypatch.setattr(loop, "fit", lambda model, tr, dev, c, pad, loss_fn, *a, **kw:
                        fit(model, tr, dev, c, pad, _as_shards(loss_fn, 2), *a, **kw))
    single, single_history = registry.train_method(models.load_model(str(student_dir)), teacher, train,
                                                   items["dev"], MethodRun.model_validate(cfg), pad_id, LOG,
                                                   eos_id=eos_id)
    ranks = [torch.load(tmp_path / f"gkd{r}.pt", weights_only=False) for r in range(2)]
    for r in ranks:
        assert r["seen"]["steps"] == 6 and all(r["seen"]["sharded"]) and r["seen"]["sharded"]
        assert not any(r["seen"]["fused"])  # sharded: the plain KD loss (the root unit gathers in forward)
    assert fused.head_chain(single, trainable=True) is not None  # one process: the fused loss
    assert all(torch.equal(ranks[0]["state"][k], v) for k, v in ranks[1]["state"].items())
    reduced = ["epoch", "step", "train_loss", "dev_loss", "lr", "frac_sgo_batches"]
    pd.testing.assert_frame_equal(ranks[0]["history"][reduced], ranks[1]["history"][reduced],
                                  check_exact=True)
    diff = max((ranks[0]["state"][k] - v).abs().max().item() for k, v in single.state_dict().items())
    LOG.warning("fsdp gkd: 2 gloo ranks vs 1 process, max abs weight difference %.3g", diff)
    assert diff <= ATOL
    history = ranks[0]["history"]
    assert history["frac_sgo_batches"].tolist() == single_history["frac_sgo_batches"].tolist()
    assert history["frac_sgo_batches"].sum() > 0  # the on-policy (sampling) path ran
    assert history["train_loss"].tolist() == pytest.approx(single_history["train_loss"].tolist(), abs=1e-5)
    assert history["dev_loss"].tolist() == pytest.approx(single_history["dev_loss"].tolist(), abs=1e-5)


def _lora_worker(rank, world, port, model_dir, items, dev, cfg, lora, pad_id, out_dir):
    _env(rank, world, port)

    def run(**kw):
        model = models.apply_lora(models.load_model(model_dir), lora, seed=0)
        return loop.fit(model, items, dev, cfg, pad_id, _item_mean_loss, LOG, "fsdp-lora", **kw)

    model, history = run()
    assert models.is_lora(model) and type(model).__name__.startswith("Peft")
    torch.save({"state": model.state_dict(), "history": history}, Path(out_dir) / f"lora{rank}.pt")
    model, history = killed_then_resumed(run, Path(out_dir) / "resume", 5)
    torch.save({"state": model.state_dict(), "history": history}, Path(out_dir) / f"lora-resumed{rank}.pt")
    distributed.finish_distributed()


def test_fsdp_lora_best_dev_matches_one_process_and_resumes(tmp_path, tokenizer, items):
    """A LoRA student (frozen base weights and trainable adapters in the same FSDP units) with best-dev
    selection (a full snapshot of the sharded adapter, restored at the end), activation checkpointing and a
    kill mid-epoch."""
    pytest.importorskip("peft")
    import torch.multiprocessing as mp

    from kdprivacy.config import Lora

    model_dir = tmp_path / "model"
    models.save_model(_fresh(tokenizer), tokenizer, model_dir)
    lora = Lora(r=4, alpha=8, dropout=0.0, target_modules=None)
    cfg = Train(epochs=3, lr=2e-2, batch_size=6, checkpoint_every_steps=2, select="best_dev", parallel="fsdp",
                gradient_checkpointing=True)  # non-reentrant activation checkpointing inside FSDP units
    pad_id = tokenizer.pad_token_id
    train = items["public"]  # batches of 6, 6
    mp.spawn(_lora_worker, args=(2, _port(), str(model_dir), train, items["dev"], cfg, lora, pad_id,
                                 str(tmp_path)), nprocs=2, join=True)
    student = models.apply_lora(models.load_model(str(model_dir)), lora, seed=0)
    single, single_history = loop.fit(student, train, items["dev"], cfg, pad_id, _item_mean_loss, LOG,
                                      "single")
    ranks = [torch.load(tmp_path / f"lora{r}.pt", weights_only=False) for r in range(2)]
    resumed = [torch.load(tmp_path / f"lora-resumed{r}.pt", weights_only=False) for r in range(2)]
    for other in (ranks[1], *resumed):
        assert all(torch.equal(ranks[0]["state"][k], v) for k, v in other["state"].items())
        pd.testing.assert_frame_equal(ranks[0]["history"], other["history"], check_exact=True)
    diff = max((ranks[0]["state"][k] - v).abs().max().item() for k, v in single.state_dict().items())
    LOG.warning("fsdp lora: 2 gloo ranks vs 1 process, max abs weight difference %.3g", diff)
    assert diff <= ATOL
    history = ranks[0]["history"]
    assert history["selected"].tolist() == single_history["selected"].tolist()
    assert history["dev_loss"].tolist() == pytest.approx(single_history["dev_loss"].tolist(), abs=1e-5)


@pytest.fixture(scope="module")
def script_manifest():
    import test_training

    return test_training._toy_manifest()


def test_fsdp_teacher_script_through_the_launcher_equals_ddp(tmp_path, script_manifest, monkeypatch):
    """The teacher script on two gloo ranks through the real launcher (torchrun + scripts/launch.py), once
    with DDP and once with ``train.parallel: fsdp``: same weights to rounding (both take the share-weighted
    batch loss, so they differ only in how gradients are reduced), same output files, and FSDP's
    mid-epoch checkpoints are written."""
    import types

    import test_training
    import toy

    from test_training import REPO, PicklableInputs

    manifest_path = tmp_path / "manifest.parquet"
    script_manifest.to_parquet(manifest_path, index=False)
    texts = [f"{r.instruction} {r.context} {r.response}"
             for r in toy.select(script_manifest, "public", "pretrain").itertuples()]
    tok = models.train_tokenizer(texts, vocab_size=300)
    base = tmp_path / "base"
    models.save_model(test_training._model(tok, n_layer=2, d_model=32), tok, base)

    def smk(out, parallel):
        train = {"epochs": 1, "lr": 3e-3, "batch_size": 6, "checkpoint_every_steps": 1, "parallel": parallel}
        cfg = {"base": {"name_or_path": str(base)}, "seed": 0, "max_length": 96, "max_prompt_length": 48,
               "train": train}
        return types.SimpleNamespace(input=PicklableInputs(manifest=str(manifest_path), base=str(base)),
                                     scriptdir=str(REPO / "scripts"),
                                     params=types.SimpleNamespace(cfg=cfg, code="test-code"),
                                     output=types.SimpleNamespace(dir=str(out)),
                                     log=[str(tmp_path / f"{out.name}.log")],
                                     threads=2, rule="train_teacher", resources=types.SimpleNamespace(gpu=2))

    path = os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])
    monkeypatch.setenv("PYTHONPATH", path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setenv("KDPRIVACY_DEVICE", "cpu")
    for parallel in ("ddp", "fsdp"):
        script = REPO / "scripts" / "train_teacher.py"
        distributed.launch_data_parallel(smk(tmp_path / parallel, parallel), script, 2)
    log_text = (tmp_path / "fsdp.log").read_text()
    assert "checkpoint: step 3" in log_text and "FSDP over 2 ranks, 3 sharded units" in log_text
    assert "FSDP" not in (tmp_path / "ddp.log").read_text()
    ddp, fsdp = tmp_path / "ddp", tmp_path / "fsdp"
    assert not (tmp_path / "fsdp.resume").exists()
    assert sorted(p.name for p in fsdp.iterdir()) == sorted(p.name for p in ddp.iterdir())
    assert json.loads((fsdp / "config.json").read_text()) == json.loads((ddp / "config.json").read_text())
    a, b = models.load_model(str(fsdp)), models.load_model(str(ddp))
    diff = max((x - y).abs().max().item() for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    LOG.warning("fsdp vs ddp teacher script (2 gloo ranks each): max abs weight difference %.3g", diff)
    assert a.state_dict().keys() == b.state_dict().keys() and diff <= ATOL
    ha, hb = pd.read_csv(fsdp / "train_log.csv"), pd.read_csv(ddp / "train_log.csv")
    assert list(ha.columns) == list(hb.columns) and ha["step"].tolist() == hb["step"].tolist() == [3]
    assert ha["dev_loss"].iloc[0] == pytest.approx(hb["dev_loss"].iloc[0], abs=1e-5)
