"""Preemption: a training job killed midway and rerun resumes from its checkpoint and ends with exactly the
weights (and history) of an uninterrupted run (CPU runs are deterministic at a fixed thread count)."""

from __future__ import annotations

import copy
import json
import logging
import os
import signal
import types
from pathlib import Path

import pandas as pd
import pytest
import torch

from kdprivacy import checkpoint, models
from kdprivacy import kd as registry
from kdprivacy.config import Lora, Train
from kdprivacy.kd import teacher as kd_teacher
from kdprivacy.train import distributed, jobs, loop, losses
from kdprivacy.train.runs import MethodRun, TeacherRun
from kdprivacy.encoding import collate, encode_frame

import toy

LOG = logging.getLogger("test")
POOL_SIZES = {"private": 12, "nonmember": 4, "public": 12, "dev": 6, "pretrain": 8}
SPEC = {"arch": "gpt2", "n_layer": 1, "d_model": 32, "n_head": 4, "dropout": 0.1}  # dropout: RNG must resume too
MAX_LENGTH, MAX_PROMPT = 64, 40
REPO = Path(__file__).resolve().parents[1]


def _toy_manifest(seed: int = 0):
    return toy.manifest(POOL_SIZES, seed, response_words=(4, 7))


class Killed(Exception):
    """Stands in for SIGKILL / a node failure: the run stops between two optimizer steps."""


def _kill_after(k: int):
    def on_step(step):
        if step == k:
            raise Killed(step)

    return on_step


def killed_then_resumed(run, resume_dir, kill_at: int):
    """``run(resume=..., on_step=...)`` killed after step ``kill_at`` (a worker process cannot use
    ``pytest.raises``: a run that was not killed fails here), then resumed from its checkpoint; returns what
    the resumed run returns."""
    resume = checkpoint.Resume(resume_dir, "fp")
    try:
        run(resume=resume, on_step=_kill_after(kill_at))
    except Killed:
        pass
    else:
        raise AssertionError(f"the run was not killed at step {kill_at}")
    return run(resume=resume)


@pytest.fixture(scope="module")
def manifest():
    return _toy_manifest()


@pytest.fixture(scope="module")
def tokenizer(manifest):
    return toy.tokenizer(manifest, vocab_size=280)


@pytest.fixture(scope="module")
def items(manifest, tokenizer):
    return {pool: encode_frame(tokenizer, toy.select(manifest, pool), MAX_LENGTH, MAX_PROMPT) for pool in POOL_SIZES}


@pytest.fixture(scope="module")
def teacher(tokenizer, items):
    model = models.build_from_scratch({**SPEC, "dropout": 0.0}, tokenizer, MAX_LENGTH, seed=1)
    model, _ = loop.sft(model, items["private"], None, Train(epochs=3, lr=5e-3, batch_size=6),
                            tokenizer.pad_token_id)
    return kd_teacher.freeze(model)


def _student(tokenizer):
    return models.build_from_scratch(SPEC, tokenizer, MAX_LENGTH, seed=2)


def _equal(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _same_history(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True), check_exact=True)


# ------------------------------------------------------------------------------------------ fit (SFT)
TRAIN = {"epochs": 2, "lr": 3e-3, "batch_size": 4, "checkpoint_every_steps": 2}  # 3 steps per epoch


def _sft(tokenizer, items, resume=None, on_step=None, lora=None, **train):
    model = models.apply_lora(_student(tokenizer), lora, seed=0)
    return loop.sft(model, items["public"], items["dev"], Train(**{**TRAIN, **train}), tokenizer.pad_token_id, LOG,
                        resume=resume, on_step=on_step)


@pytest.mark.parametrize("kill_at", [1, 3, 5])  # before any checkpoint, just before an epoch end's, mid-epoch
def test_sft_resumes_exactly(tmp_path, tokenizer, items, kill_at):
    reference, ref_history = _sft(tokenizer, items)
    resume = checkpoint.Resume(tmp_path / "out.resume", "fp")
    with pytest.raises(Killed):
        _sft(tokenizer, items, resume, _kill_after(kill_at))
    assert (tmp_path / "out.resume" / "state.pt").is_file() == (kill_at >= 2)
    steps_seen = []
    model, history = _sft(tokenizer, items, resume, steps_seen.append)
    assert _equal(model, reference)
    _same_history(history, ref_history)
    # resumed after the last checkpoint (every 2 steps; epoch ends, i.e. after step 3, once the epoch's dev
    # loss is in): steps before it are not redone
    last_ckpt = max([0] + [s for s in range(1, kill_at + 1) if s % 2 == 0 or (s % 3 == 0 and s < kill_at)])
    assert steps_seen == list(range(last_ckpt + 1, 7))
    summary = json.loads((tmp_path / "out.resume" / "state.json").read_text())
    assert summary["step"] == 6 and summary["epoch_done"]


def test_best_dev_and_lora_resume_exactly(tmp_path, tokenizer, items):
    pytest.importorskip("peft")
    lora = Lora(r=4, alpha=8, dropout=0.1, target_modules=None)
    kw = {"select": "best_dev", "epochs": 3, "lr": 2e-2}
    reference, ref_history = _sft(tokenizer, items, lora=lora, **kw)
    resume = checkpoint.Resume(tmp_path / "r", "fp")
    with pytest.raises(Killed):
        _sft(tokenizer, items, resume, _kill_after(7), lora=lora, **kw)
    saved = torch.load(tmp_path / "r" / "state.pt", weights_only=True)  # plain types only: no pickled code
    assert saved["model"] and all("lora_" in name for name in saved["model"])  # only the adapter is saved
    model, history = _sft(tokenizer, items, resume, lora=lora, **kw)
    assert _equal(model, reference)
    _same_history(history, ref_history)
    assert models.is_lora(model)


def test_fp16_loss_scale_resumes_exactly(tmp_path, tokenizer, items):
    """fp16 training: the loss scaler's state (scale, growth tracker) is part of the checkpoint. Batches
    holding two chosen items overflow on purpose, so the scale has dropped before the kill; a resume that
    restarted the scaler at its initial scale would log another scale (and skip other steps)."""
    flagged = {items["public"][0].id, items["public"][5].id}

    def make_batch(batch_items):
        batch = collate(batch_items, tokenizer.pad_token_id)
        return {**batch, "overflow": bool(flagged & {item.id for item in batch_items})}

    def loss_fn(model, batch):
        loss, stats = losses.lm_loss(model, batch)
        return loss * (1e6 if batch["overflow"] else 1.0), stats

    def run(resume=None, on_step=None):
        cfg = Train(**TRAIN, precision="fp16")
        return loop.fit(_student(tokenizer), items["public"], items["dev"], cfg, tokenizer.pad_token_id,
                            loss_fn, LOG, make_batch=make_batch, resume=resume, on_step=on_step)

    reference, ref_history = run()
    resume = checkpoint.Resume(tmp_path / "r", "fp")
    with pytest.raises(Killed):
        run(resume, _kill_after(4))
    saved = torch.load(tmp_path / "r" / "state.pt", weights_only=False)
    assert saved["step"] == 4 and saved["scaler"]["scale"] < 2.0**16  # a step was skipped before the kill
    model, history = run(resume)
    assert _equal(model, reference)
    _same_history(history, ref_history)
    assert history["amp_skipped_steps"].sum() >= 2 and history["loss_scale"].iloc[-1] < 2.0**15


def test_time_based_checkpoints(tmp_path, tokenizer, items):
    resume = checkpoint.Resume(tmp_path / "r", "fp")
    with pytest.raises(Killed):  # every_minutes tiny -> a checkpoint after every step
        _sft(tokenizer, items, resume, _kill_after(4), checkpoint_every_steps=0, checkpoint_every_minutes=1e-9)
    assert json.loads((tmp_path / "r" / "state.json").read_text())["step"] == 4


def test_signal_saves_and_stops(tmp_path, tokenizer, items):
    reference, _ = _sft(tokenizer, items)
    resume = checkpoint.Resume(tmp_path / "r", "fp")

    def preempt(step):
        if step == 1:
            os.kill(os.getpid(), signal.SIGUSR1)  # what SLURM's --signal=USR1@<s> sends before the time limit

    previous = signal.getsignal(signal.SIGUSR1)
    with pytest.raises(checkpoint.Preempted):
        _sft(tokenizer, items, resume, preempt, checkpoint_every_steps=0)
    assert signal.getsignal(signal.SIGUSR1) == previous  # handlers are restored
    assert json.loads((tmp_path / "r" / "state.json").read_text())["step"] == 2  # the step after the signal
    model, _ = _sft(tokenizer, items, resume)
    assert _equal(model, reference)


def test_checkpoint_of_another_run_is_ignored(tmp_path, tokenizer, items, caplog):
    resume = checkpoint.Resume(tmp_path / "r", "old-config")
    with pytest.raises(Killed):
        _sft(tokenizer, items, resume, _kill_after(4), lr=1e-2)
    reference, _ = _sft(tokenizer, items)
    steps = []
    with caplog.at_level(logging.WARNING):
        model, _ = _sft(tokenizer, items, checkpoint.Resume(tmp_path / "r", "new-config"), steps.append)
    assert steps[0] == 1 and "another run" in caplog.text and _equal(model, reference)
    steps = []  # same fingerprint, different train settings: also another run
    with caplog.at_level(logging.WARNING):
        _sft(tokenizer, items, checkpoint.Resume(tmp_path / "r", "new-config"), steps.append, lr=1e-4)
    assert steps[0] == 1


class _Planted:
    """A pickle that runs code when unpickled (``__reduce__``): here it only creates a marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


@pytest.mark.parametrize("keep_summary", [False, True], ids=["no-summary", "real-summary"])
def test_planted_checkpoint_never_runs_code(tmp_path, tokenizer, items, caplog, keep_summary):
    """Anyone who can write results/ could plant a state.pt: it is read with torch's weights_only unpickler
    (and only after the summary's fingerprint matched), so its code never runs; the job starts over."""
    resume = checkpoint.Resume(tmp_path / "r", "fp")
    with pytest.raises(Killed):
        _sft(tokenizer, items, resume, _kill_after(4))
    marker = tmp_path / "marker"
    torch.save({"version": checkpoint.FORMAT_VERSION, "model": _Planted(marker)}, tmp_path / "r" / "state.pt")
    if not keep_summary:
        (tmp_path / "r" / "state.json").unlink()  # with the real summary kept, the fingerprint matches
    reference, ref_history = _sft(tokenizer, items)
    steps = []
    with caplog.at_level(logging.WARNING):
        model, history = _sft(tokenizer, items, resume, steps.append)
    assert not marker.exists()
    assert steps[0] == 1 and _equal(model, reference)
    _same_history(history, ref_history)
    assert "starting from scratch" in caplog.text and "state.pt" in caplog.text


@pytest.mark.parametrize("payload", [[1, 2, 3], "text", b"not a torch file"], ids=["list", "str", "garbage"])
def test_foreign_or_unreadable_checkpoint_restarts_cleanly(tmp_path, tokenizer, items, caplog, payload):
    resume = checkpoint.Resume(tmp_path / "r", "fp")
    with pytest.raises(Killed):
        _sft(tokenizer, items, resume, _kill_after(4))
    state = tmp_path / "r" / "state.pt"
    if isinstance(payload, bytes):
        state.write_bytes(payload)
    else:
        torch.save(payload, state)
    steps = []
    with caplog.at_level(logging.WARNING):
        model, _ = _sft(tokenizer, items, resume, steps.append)
    assert steps[0] == 1 and _equal(model, _sft(tokenizer, items)[0])
    assert "starting from scratch" in caplog.text and str(state) in caplog.text


@pytest.mark.parametrize("error", [
    RuntimeError("basic_ios::clear: iostream error"),
    RuntimeError("[enforce fail at inline_container.cc:626] . PytorchStreamWriter failed writing file "
                 "data/3: file write failed"),
    OSError(28, "No space left on device"),
], ids=["iostream", "stream-writer", "enospc"])
def test_checkpoint_write_failure_names_the_file_and_cause(tmp_path, tokenizer, items, monkeypatch, error):
    """A full disk or quota while checkpointing: the error names the checkpoint file and the likely cause
    (torch itself only says "basic_ios::clear: iostream error"); the previous checkpoint stays intact."""
    resume = checkpoint.Resume(tmp_path / "r", "fp")
    with pytest.raises(Killed):
        _sft(tokenizer, items, resume, _kill_after(2))
    before = (tmp_path / "r" / "state.pt").read_bytes()
    real_save = torch.save

    def full_disk(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)  # part of it reached the disk, then the write failed
        raise error

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError) as err:
        _sft(tokenizer, items, resume)
    msg = str(err.value)
    assert str(tmp_path / "r" / "state.pt") in msg and "disk" in msg and "quota" in msg
    assert str(error) in msg
    assert (tmp_path / "r" / "state.pt").read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["state.json", "state.pt"]  # no temporaries


def test_checkpoint_state_is_plain_data(tmp_path):
    """Every global RNG round-trips through a weights_only file; anything but plain data is refused when
    saving, naming where it sits (a method that checkpoints a new type fails in the tests, not on resume)."""
    import random

    import numpy as np

    np.random.seed(3)
    random.seed(4)
    torch.manual_seed(5)
    torch.save(checkpoint.plain(checkpoint.rng_state()), tmp_path / "rng.pt")
    first = (np.random.rand(3), random.random(), torch.rand(2))
    checkpoint.set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    again = (np.random.rand(3), random.random(), torch.rand(2))
    assert np.array_equal(first[0], again[0]) and first[1] == again[1] and torch.equal(first[2], again[2])
    assert checkpoint.plain({"a": [np.float64(1.5), np.bool_(True)]}) == {"a": [1.5, True]}
    assert type(checkpoint.plain(np.int64(2))) is int and checkpoint.plain(torch.Size([2])) == torch.Size([2])
    with pytest.raises(TypeError, match=r"checkpoint state\['rows'\]\[0\] is a numpy.ndarray"):
        checkpoint.plain({"rows": [np.zeros(2)]})


def test_fingerprint_ignores_checkpoint_frequency():
    cfg = {"train": {"lr": 1.0, "checkpoint_every_steps": 5}, "seed": 0}
    same = {"train": {"lr": 1.0, "checkpoint_every_steps": 50, "checkpoint_every_minutes": 3}, "seed": 0}
    assert checkpoint.fingerprint(cfg, "code") == checkpoint.fingerprint(same, "code")
    assert checkpoint.fingerprint(cfg, "code") != checkpoint.fingerprint(cfg, "code2")
    assert checkpoint.resume_dir_for("results/f/seed0/models/teacher") == Path("results/f/seed0/models/teacher.resume")


# ------------------------------------------------------------------------------------- KD methods
def _cfg(method, params=None, **train):
    return {
        "method": method, "train": {"epochs": 2, "lr": 3e-3, "batch_size": 4, "checkpoint_every_steps": 2, **train},
        "kd": None, "generation": {"max_new_tokens": 6}, "method_params": params, "seed": 0,
        "max_length": MAX_LENGTH, "max_prompt_length": MAX_PROMPT,
    }


METHOD_CASES = {
    "kd": None,
    "imitkd": {"sgo_ratio": 0.6, "buffer_capacity": 6},  # replay buffer + decision RNG + sampler seeds
    "imitkd-linear": {"sgo_ratio": 1.0, "buffer_capacity": 6, "schedule": "linear"},  # + the annealing step
    "gkd": {"lmbda": 0.5},
    "distillm": {"init_threshold": 0.6, "buffer_capacity": 4, "loss_eps": 0.0},  # schedule + buffer
    "minillm": {"ppo_epochs": 2},  # a rollout reused across the kill
}


@pytest.mark.parametrize("method", list(METHOD_CASES))
def test_kd_methods_resume_exactly(tmp_path, method, tokenizer, items, teacher):
    cfg = MethodRun.model_validate(_cfg(method.split("-")[0], METHOD_CASES[method]))

    def run(resume=None, on_step=None):
        return registry.train_method(_student(tokenizer), teacher, items["public"], items["dev"], cfg,
                                         tokenizer.pad_token_id, LOG, eos_id=tokenizer.eos_token_id,
                                         resume=resume, on_step=on_step)

    reference, ref_history = run()
    resume = checkpoint.Resume(tmp_path / "r", "fp")
    with pytest.raises(Killed):
        run(resume, _kill_after(5))
    model, history = run(resume)
    assert _equal(model, reference)
    _same_history(history, ref_history)
    if method in ("imitkd", "imitkd-linear", "gkd", "distillm"):
        assert history["frac_sgo_batches"].sum() > 0  # the on-policy path actually ran


# --------------------------------------------------------------------------------------- the scripts
def _snakemake(tmp_path, cfg, inputs, out, rule):
    return types.SimpleNamespace(
        scriptdir=str(REPO / "scripts"), params=types.SimpleNamespace(cfg=cfg, code="test-code"),
        input=types.SimpleNamespace(**inputs, items=lambda: inputs.items()),
        output=types.SimpleNamespace(dir=str(out)), log=[], threads=1, rule=rule,
        resources=types.SimpleNamespace(gpu=0),
    )


def test_train_teacher_script_resumes_and_cleans_up(tmp_path, manifest, tokenizer):
    import runpy

    manifest_path = tmp_path / "manifest.parquet"
    manifest.to_parquet(manifest_path, index=False)
    base = tmp_path / "base"
    models.save_model(_student(tokenizer), tokenizer, base)
    cfg = {"base": {"name_or_path": str(base)}, "train": {"epochs": 2, "lr": 3e-3, "batch_size": 4,
                                                          "checkpoint_every_steps": 2},
           "seed": 0, "max_length": MAX_LENGTH, "max_prompt_length": MAX_PROMPT}
    inputs = {"manifest": str(manifest_path), "base": str(base)}

    def script(out):
        smk = _snakemake(tmp_path, cfg, inputs, out, "train_teacher")
        runpy.run_path(str(REPO / "scripts" / "train_teacher.py"), init_globals={"snakemake": smk}, run_name="__main__")

    script(tmp_path / "reference")
    # a job killed at step 3: the checkpoint sits in <output>.resume, the output does not exist yet
    out = tmp_path / "teacher"
    resume = checkpoint.Resume(checkpoint.resume_dir_for(out), checkpoint.fingerprint(cfg, "test-code"))
    with pytest.raises(Killed):
        jobs.train_teacher_from_cfg(TeacherRun.model_validate(copy.deepcopy(cfg)), manifest_path, LOG, resume=resume,
                                    on_step=_kill_after(3))
    assert (tmp_path / "teacher.resume" / "state.pt").is_file() and not out.exists()
    script(out)  # the rerun resumes (same cfg and code -> same fingerprint) and removes the resume dir
    assert not (tmp_path / "teacher.resume").exists()
    a, b = models.load_model(str(out)), models.load_model(str(tmp_path / "reference"))
    assert _equal(a, b)
    pd.testing.assert_frame_equal(pd.read_csv(out / "train_log.csv"), pd.read_csv(tmp_path / "reference" / "train_log.csv"))


# ------------------------------------------------------------------------------ data parallel (gloo)
def _item_mean_loss(model, batch):
    """Mean over sequences of each one's mean response NLL: a loss whose share-weighted average over ranks
    is exactly the whole batch's loss, so data-parallel and single-process training agree to rounding."""
    from kdprivacy.encoding import shift_for_causal_lm

    logits = losses.forward_logits(model, batch)
    s, t, m = shift_for_causal_lm(logits, batch["input_ids"], batch["response_mask"])
    nll = torch.nn.functional.cross_entropy(s.float().reshape(-1, s.shape[-1]), t.reshape(-1), reduction="none")
    m = m.to(nll.dtype)
    per_item = (nll.view(t.shape) * m).sum(-1) / m.sum(-1).clamp_min(1.0)
    return per_item.mean(), {"n_items": float(len(per_item))}


def _ddp_worker(rank, world, port, model_dir, items, dev, cfg, pad_id, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), KDPRIVACY_DEVICE="cpu")
    torch.set_num_threads(1)

    def run(**kw):
        model = models.load_model(model_dir)
        return loop.fit(model, items, dev, cfg, pad_id, _item_mean_loss, LOG, "ddp", **kw)

    model, history = run()
    torch.save({"state": model.state_dict(), "history": history}, Path(out_dir) / f"reference{rank}.pt")
    model, history = killed_then_resumed(run, Path(out_dir) / "resume", 4)
    torch.save({"state": model.state_dict(), "history": history}, Path(out_dir) / f"resumed{rank}.pt")
    distributed.finish_distributed()


def test_data_parallel_fit_matches_one_process_and_resumes(tmp_path, tokenizer, items):
    """fit on two gloo ranks (torch.multiprocessing, CPU): both ranks end identical, equal to one process up
    to rounding (uneven and empty shards included), and a killed data-parallel run resumes exactly."""
    import socket

    import torch.multiprocessing as mp

    model_dir = tmp_path / "model"
    models.save_model(models.build_from_scratch({**SPEC, "dropout": 0.0}, tokenizer, MAX_LENGTH, seed=2), tokenizer,
                      model_dir)
    train = items["public"] + items["pretrain"][:1]  # 13 items in batches of 6, 6, 1: rank 1 gets an empty,
    # zero-weight share of the last one
    cfg = Train(epochs=2, lr=3e-3, batch_size=6, checkpoint_every_steps=1)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    pad_id = tokenizer.pad_token_id
    mp.spawn(_ddp_worker, args=(2, port, str(model_dir), train, items["dev"], cfg, pad_id, str(tmp_path)), nprocs=2,
             join=True)

    single, single_history = loop.fit(models.load_model(str(model_dir)), train, items["dev"], cfg, pad_id,
                                          _item_mean_loss, LOG, "single")
    ranks = [torch.load(tmp_path / f"reference{r}.pt", weights_only=False) for r in range(2)]
    resumed = [torch.load(tmp_path / f"resumed{r}.pt", weights_only=False) for r in range(2)]
    for other in (ranks[1], *resumed):
        assert all(torch.equal(ranks[0]["state"][k], v) for k, v in other["state"].items())
        pd.testing.assert_frame_equal(ranks[0]["history"], other["history"], check_exact=True)
    for name, value in single.state_dict().items():
        torch.testing.assert_close(ranks[0]["state"][name], value, rtol=0, atol=1e-5, msg=name)
    history = ranks[0]["history"]
    assert history["step"].tolist() == single_history["step"].tolist() == [3, 6]
    assert history["train_loss"].tolist() == pytest.approx(single_history["train_loss"].tolist(), abs=1e-5)
    assert history["dev_loss"].tolist() == pytest.approx(single_history["dev_loss"].tolist(), abs=1e-5)


def _count_buckets(state, bucket):
    """A DDP communication hook: count the bucket, then DDP's own averaging all-reduce."""
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

    state["buckets"] += 1
    return default_hooks.allreduce_hook(None, bucket)


def _ddp_gkd_worker(rank, world, port, student_dir, teacher_dir, items, dev, cfg, pad_id, eos_id, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), KDPRIVACY_DEVICE="cpu")
    torch.set_num_threads(1)
    from torch.nn.parallel import DistributedDataParallel

    seen = {"buckets": 0, "steps": 0, "wrapped": []}
    wrap = distributed.DataParallel.wrap

    def counting_wrap(self, model, loss_fn):
        step_loss = wrap(self, model, loss_fn)
        seen["wrapped"].append(isinstance(step_loss, DistributedDataParallel) and step_loss.module.model is model)
        step_loss.register_comm_hook(seen, _count_buckets)
        return step_loss

    distributed.DataParallel.wrap = counting_wrap
    teacher = kd_teacher.freeze(models.load_model(teacher_dir))
    model, history = registry.train_method(models.load_model(student_dir), teacher, items, dev,
                                           MethodRun.model_validate(cfg), pad_id, LOG, eos_id=eos_id,
                                           on_step=lambda step: seen.update(steps=step))
    torch.save({"state": model.state_dict(), "history": history, "seen": {k: seen[k] for k in ("buckets", "steps",
               "wrapped")}}, Path(out_dir) / f"gkd{rank}.pt")
    distributed.finish_distributed()


def _as_shards(loss_fn, world):
    """``loss_fn`` on one process as two data-parallel ranks see it: each rank's rows (``idx[rank::world]``
    of the batch, or a zero-weight row) scored separately, weighted by their share."""

    def sharded(model, batch):
        n = batch["input_ids"].shape[0]
        total, sums = 0.0, {}
        for rank in range(world):
            rows = list(range(rank, n, world))
            weight = len(rows) / n
            rows = rows or [0]
            sub = {k: v[rows] if torch.is_tensor(v) and v.shape[:1] == (n,) else v for k, v in batch.items()}
            loss, stats = loss_fn(model, sub)
            total = total + weight * loss
            for key, value in stats.items():
                sums[key] = sums.get(key, 0.0) + weight * float(value)
        return total, sums

    return sharded


def test_data_parallel_kd_method_goes_through_ddp_and_matches_one_process(tmp_path, tokenizer, items, teacher,
                                                                           monkeypatch):
    """GKD (student samples under no_grad in make_batch, then a student forward with gradients and a teacher
    forward in the loss) on two gloo ranks: the loss runs inside DistributedDataParallel (the plain model
    reaches the loss, the gradients pass DDP's communication hook every step), the ranks end identical, and
    equal to one process scoring the same two shards."""
    import socket

    import torch.multiprocessing as mp

    student_dir, teacher_dir = tmp_path / "student", tmp_path / "teacher"
    models.save_model(models.build_from_scratch({**SPEC, "dropout": 0.0}, tokenizer, MAX_LENGTH, seed=2), tokenizer,
                      student_dir)
    models.save_model(teacher, tokenizer, teacher_dir)
    train = items["public"][:9]  # batches of 4, 4, 1: rank 1 gets a zero-weight share of the last one
    cfg = _cfg("gkd", {"lmbda": 0.5}, checkpoint_every_steps=0)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    pad_id, eos_id = tokenizer.pad_token_id, tokenizer.eos_token_id
    mp.spawn(_ddp_gkd_worker, args=(2, port, str(student_dir), str(teacher_dir), train, items["dev"], cfg, pad_id,
                                    eos_id, str(tmp_path)), nprocs=2, join=True)

    fit = loop.fit
    monkeypatch.setattr(loop, "fit", lambda model, tr, dev, c, pad, loss_fn, *a, **kw:
                        fit(model, tr, dev, c, pad, _as_shards(loss_fn, 2), *a, **kw))
    single, single_history = registry.train_method(models.load_model(str(student_dir)), teacher, train,
                                                   items["dev"], MethodRun.model_validate(cfg), pad_id, LOG,
                                                   eos_id=eos_id)
    ranks = [torch.load(tmp_path / f"gkd{r}.pt", weights_only=False) for r in range(2)]
    for r in ranks:
        assert r["seen"]["wrapped"] == [True] and r["seen"]["steps"] == 6
        assert r["seen"]["buckets"] >= r["seen"]["steps"]  # every step's gradients went through DDP's reducer
    assert all(torch.equal(ranks[0]["state"][k], v) for k, v in ranks[1]["state"].items())
    reduced = ["epoch", "step", "train_loss", "dev_loss", "lr", "frac_sgo_batches"]  # sgo_* count this rank's samples
    pd.testing.assert_frame_equal(ranks[0]["history"][reduced], ranks[1]["history"][reduced], check_exact=True)
    diff = max((ranks[0]["state"][k] - v).abs().max().item() for k, v in single.state_dict().items())
    LOG.info("gkd: 2 gloo ranks vs 1 process, max abs weight difference %.3g", diff)
    assert diff <= 1e-5
    history = ranks[0]["history"]
    assert history["frac_sgo_batches"].tolist() == single_history["frac_sgo_batches"].tolist()
    assert history["frac_sgo_batches"].sum() > 0  # the on-policy (sampling) path ran
    assert history["train_loss"].tolist() == pytest.approx(single_history["train_loss"].tolist(), abs=1e-5)
    assert history["dev_loss"].tolist() == pytest.approx(single_history["dev_loss"].tolist(), abs=1e-5)
