"""The training loop: a plain, deterministic PyTorch loop every model of the study trains with.

:func:`fit` is generic: a KD method supplies ``loss_fn(model, batch) -> (loss, stats)`` and gets seeded
shuffling, AdamW, clipping, a learning-rate schedule, per-epoch dev NLL, model selection, checkpoints and
a history table for free; :func:`sft` is SFT or pretraining on it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import sys
import time
from collections.abc import Callable, Sequence

import pandas as pd
import torch
from tqdm.auto import tqdm

from kdprivacy import checkpoint
from kdprivacy.config import Train
from kdprivacy.encoding import Encoded, batch_indices, collate
from kdprivacy.train.distributed import DataParallel, is_main_process
from kdprivacy.train.losses import lm_loss, mean_nll, model_device, nll_sums, to_device

def lr_lambda(scheduler: str, total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Multiplier of the base lr at optimizer step ``step`` (0-based): linear warmup, then decay to 0."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        if scheduler == "constant":
            return 1.0
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        if scheduler == "linear":
            return max(0.0, 1.0 - progress)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def make_optimizer(model, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases and norm weights (parameters with fewer than 2 dims)."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr)


def trainable_parameters(model) -> list[tuple[str, torch.nn.Parameter]]:
    """``(name, parameter)`` of every parameter that trains (all of them, or the LoRA adapter)."""
    return [(name, p) for name, p in model.named_parameters() if p.requires_grad]


def _snapshot(params: Sequence[tuple[str, torch.nn.Parameter]]) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in params}


def _restore(params: Sequence[tuple[str, torch.nn.Parameter]], state: dict[str, torch.Tensor]) -> None:
    checkpoint.check_parameters((name for name, _ in params), state)
    with torch.no_grad():
        for name, p in params:
            p.copy_(state[name].to(p.device))


def fit(
    model,
    train_items: Sequence[Encoded],
    dev_items: Sequence[Encoded] | None,
    train: Train,
    pad_id: int,
    loss_fn: Callable[[torch.nn.Module, dict], tuple[torch.Tensor, dict]],
    log: logging.Logger | None = None,
    desc: str = "train",
    make_batch: Callable[[list[Encoded]], dict] | None = None,
    on_epoch_end: Callable[[int, dict], dict | None] | None = None,
    *,
    seed: int = 0,
    state=None,
    resume: checkpoint.Resume | None = None,
    on_step: Callable[[int], None] | None = None,
) -> tuple[torch.nn.Module, pd.DataFrame]:
    """Train ``model`` on ``train_items`` with ``loss_fn``; returns the model and a per-epoch history.

    Batches are reshuffled each epoch with seed ``seed + epoch``; torch's global RNG is seeded with
    ``seed`` first (dropout), so a fixed seed and thread count give identical weights. The scheduler steps
    once per optimizer step. History columns: ``epoch, step, train_loss, dev_loss, lr, selected`` plus the
    per-epoch mean of every stat ``loss_fn`` reports (``dev_loss`` = response-token NLL on ``dev_items``).
    ``select="best_dev"`` restores the epoch with the lowest dev loss at the end; ``"last"`` keeps the last.
    Only parameters with ``requires_grad`` train (all of them, or a LoRA adapter, see
    :func:`kdprivacy.models.apply_lora`).

    Hooks for KD methods that build their own data (:mod:`kdprivacy.kd`):
    ``make_batch(items) -> batch`` replaces ``collate(items, pad_id)`` (e.g. to sample student outputs for
    the batch's prompts; non-tensor values such as flags ride along), and ``on_epoch_end(epoch, row) ->
    dict`` runs after the epoch's dev loss is in ``row`` and adds columns to it (e.g. a schedule's state).
    Stats a ``loss_fn`` reports are averaged over *all* batches of the epoch, so a stat must be reported by
    every batch (report 0/1 to get a fraction). Batch tensors are moved to the model's device.

    Preemption (:mod:`kdprivacy.checkpoint`): with ``resume`` the loop checkpoints into ``resume.dir`` at
    every epoch end, every ``train.checkpoint_every_steps`` steps / ``train.checkpoint_every_minutes`` minutes,
    and on SIGTERM/SIGUSR1/SIGURG (then raises :class:`kdprivacy.checkpoint.Preempted`); a call that finds a
    checkpoint of the same run continues from it. ``state`` (an object with ``state_dict()`` /
    ``load_state_dict()``) is the caller's own state saved with it (a KD method's RNGs and buffers).
    ``on_step(step)`` runs after every optimizer step (and its checkpoint, if one was due).

    Precision (``train.precision``, :func:`kdprivacy.models.autocast`): ``loss_fn`` (every forward of the step:
    student, and the teacher of a KD loss) runs under ``torch.autocast`` for ``bf16`` / ``fp16``; backward,
    clipping and AdamW see the float32 parameters. ``fp16`` adds a dynamic loss scale
    (``torch.amp.GradScaler``): gradients are unscaled before clipping, a step whose gradients hold inf/NaN is
    skipped (the scale halves; the learning-rate schedule does not advance), and the scaler is part of the
    checkpoint; history then gains ``amp_skipped_steps`` (per epoch) and ``loss_scale`` (at epoch end).
    ``fp32`` enters no context at all. Dev loss and ``make_batch`` (sampling) run in full precision.
    ``train.gradient_checkpointing`` turns activation checkpointing on for the loop and off afterwards.

    Data parallel: under ``torchrun`` (``WORLD_SIZE > 1``) see :class:`DataParallel`; with
    ``train.parallel: fsdp`` the model is sharded (:mod:`kdprivacy.train.fsdp`) and returned unsharded.
    """
    from kdprivacy import models

    log = log or logging.getLogger("kdprivacy")
    if train.select == "best_dev" and not dev_items:
        raise ValueError("select='best_dev' needs dev items")
    if not train_items and train.epochs > 0:
        raise ValueError("no training items")
    ddp = DataParallel(train.parallel, train.precision)
    epochs, batch_size = int(train.epochs), int(train.batch_size)
    steps_per_epoch = math.ceil(len(train_items) / batch_size)
    total_steps = epochs * steps_per_epoch
    params = trainable_parameters(model)
    step_loss = ddp.wrap(model, loss_fn)  # data-parallel: DDP broadcasts rank 0's weights here
    if ddp.sharded:  # FSDP replaced the parameters by their shards
        from kdprivacy.train import fsdp

        params = trainable_parameters(model)
        log.info("%s: FSDP over %d ranks, %d sharded units (%d blocks and the model)", desc, ddp.world,
                 len(fsdp.blocks(model)) + 1, len(fsdp.blocks(model)))
        gathered = functools.partial(fsdp.gathered, model)
        snapshot = fsdp.snapshot
        restore = fsdp.restore
    else:
        gathered, snapshot, restore = contextlib.nullcontext, _snapshot, _restore
    optimizer = make_optimizer(model, float(train.lr), float(train.weight_decay))
    schedule = lr_lambda(train.scheduler, total_steps, int(float(train.warmup_ratio) * total_steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    torch.manual_seed(int(seed))
    make_batch = make_batch or functools.partial(collate, pad_id=pad_id)
    if ddp.sharded:  # sampling in make_batch: ranks decode different numbers of tokens
        make_batch = _inside(gathered, make_batch)
        on_epoch_end = _inside(gathered, on_epoch_end) if on_epoch_end is not None else None
    device = model_device(model)
    precision = train.precision
    models.autocast(precision, device)  # refuse an impossible precision before any work
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None

    rows: list[dict] = []
    best_loss, best_state, best_epoch = math.inf, None, None
    step, start_epoch, skip = 0, 1, 0
    partial = {"loss_sum": 0.0, "stat_sums": {}, "n_batches": 0, "lr": float(optimizer.param_groups[0]["lr"]),
               "n_skipped": 0}

    ckpt = None
    if resume is not None:
        identity_exclude = {"checkpoint_every_steps", "checkpoint_every_minutes"}
        if train.parallel == "ddp":  # the default: a DDP or 1-process run's identity is what it was before
            identity_exclude.add("parallel")  # the knob (the job's fingerprint covers the full config anyway)
        identity = {
            "desc": desc,
            "n_train": len(train_items),
            "n_dev": len(dev_items or ()),
            "total_steps": total_steps,
            "params": [name for name, _ in params],
            "train": {"seed": seed, **train.model_dump(exclude=identity_exclude)},
        }
        ckpt = checkpoint.Checkpointer(
            resume,
            train.checkpoint_every_steps,
            train.checkpoint_every_minutes,
            identity,
            rank=ddp.rank,
            log=log,
        )
        saved = ckpt.load()
        if saved is not None:
            restore(params, saved["model"])
            if ddp.sharded:
                fsdp.load_optimizer_state(model, optimizer, saved["optimizer"])
            else:
                optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            if scaler is not None:
                scaler.load_state_dict(saved["scaler"])
            rows = saved["rows"]
            best_loss, best_epoch = saved["best_loss"], saved["best_epoch"]
            best_state = saved["best_state"]
            step = saved["step"]
            per_rank = saved["per_rank"]
            if len(per_rank) != ddp.world:
                log.warning(
                    "checkpoint was written by %d ranks, resuming on %d: RNG and method state of rank "
                    "%d reused, so the run continues only approximately",
                    len(per_rank),
                    ddp.world,
                    0,
                )
            mine = per_rank[ddp.rank % len(per_rank)]
            checkpoint.set_rng_state(mine["rng"])
            if state is not None and mine["method"] is not None:
                state.load_state_dict(checkpoint.to_device(mine["method"], device))
            if saved["epoch_done"]:
                start_epoch = saved["epoch"] + 1
            else:
                start_epoch, skip = saved["epoch"], saved["batches_done"]
                partial = mine["partial"]

    def save(epoch: int, batches_done: int, epoch_done: bool) -> None:
        per_rank = ddp.gather(
            {
                "rng": checkpoint.rng_state(),
                "partial": partial if not epoch_done else None,
                "method": state.state_dict() if state is not None else None,
            }
        )
        ckpt.save(
            {
                "epoch": epoch,
                "batches_done": batches_done,
                "epoch_done": epoch_done,
                "step": step,
                "model": checkpoint.to_cpu(snapshot(params)),
                "optimizer": (fsdp.optimizer_state(model, optimizer) if ddp.sharded
                              else checkpoint.to_cpu(optimizer.state_dict())),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None,
                "rows": rows,
                "best_loss": best_loss,
                "best_epoch": best_epoch,
                "best_state": checkpoint.to_cpu(best_state) if best_state is not None else None,
                "per_rank": per_rank,
            }
        )
        ddp.barrier()

    progress = tqdm(
        total=total_steps,
        initial=step,
        desc=desc,
        file=sys.stderr,
        mininterval=10.0,
        dynamic_ncols=False,
        disable=not is_main_process(),
    )
    if train.gradient_checkpointing:
        models.set_gradient_checkpointing(model, True)
    try:
        with ckpt if ckpt is not None else contextlib.nullcontext():
            for epoch in range(start_epoch, epochs + 1):
                started = time.perf_counter()
                model.train()
                if skip == 0:
                    partial = {"loss_sum": 0.0, "stat_sums": {}, "n_batches": 0, "lr": partial["lr"],
                               "n_skipped": 0}
                order = batch_indices(
                    len(train_items), batch_size, shuffle=True, seed=int(seed) + epoch
                )
                for b, idx in enumerate(order):
                    if b < skip:
                        continue
                    mine, weight = ddp.shard(idx)
                    batch = to_device(make_batch([train_items[i] for i in mine]), device)
                    with models.autocast(precision, device):
                        loss, stats = step_loss(batch)
                    if not torch.isfinite(loss):
                        raise FloatingPointError(
                            f"{desc}: non-finite loss {loss.item()} at epoch {epoch} step {step}"
                        )
                    optimizer.zero_grad(set_to_none=True)
                    scaled = loss * weight if ddp.active else loss
                    (scaler.scale(scaled) if scaler is not None else scaled).backward()
                    ddp.check_grads(params)  # averaged over the ranks during backward (DDP)
                    if scaler is not None:
                        scaler.unscale_(optimizer)  # clip the true gradients
                    if train.grad_clip and train.grad_clip > 0:
                        torch.nn.utils.clip_grad_norm_(model.parameters(), float(train.grad_clip))
                    partial["lr"] = optimizer.param_groups[0]["lr"]
                    if scaler is None:
                        optimizer.step()
                        scheduler.step()
                    else:
                        scale = scaler.get_scale()
                        scaler.step(optimizer)  # skipped when a gradient is inf/NaN (then the scale drops)
                        scaler.update()
                        if scaler.get_scale() < scale:
                            partial["n_skipped"] += 1
                        else:
                            scheduler.step()
                    step += 1
                    partial["n_batches"] += 1
                    partial["loss_sum"] += loss.item() * weight  # share-weighted: ranks sum to the batch mean
                    for key, value in stats.items():
                        partial["stat_sums"][key] = partial["stat_sums"].get(key, 0.0) + float(value) * weight
                    progress.update(1)
                    if ckpt is not None:
                        due, stop = ddp.any(ckpt.step_due(step), ckpt.stop_requested)
                        if due or stop:
                            save(epoch, b + 1, False)
                        if stop:
                            raise checkpoint.Preempted(
                                f"{desc}: stopped by a signal at step {step}; checkpoint in " f"{ckpt.dir}"
                            )
                    if on_step is not None:
                        on_step(step)
                skip = 0
                n_batches = max(partial["n_batches"], 1)
                keys = list(partial["stat_sums"])
                sums = ddp.sum([partial["loss_sum"], *(partial["stat_sums"][k] for k in keys)])
                row = {"epoch": epoch, "step": step, "train_loss": sums[0] / ddp.world / n_batches}
                with gathered():  # FSDP: the rank shards may differ in batch count
                    row["dev_loss"] = _dev_loss(model, dev_items, int(train.eval_batch_size), pad_id, ddp)
                row["lr"] = partial["lr"]
                row.update({key: value / ddp.world / n_batches for key, value in zip(keys, sums[1:])})
                if scaler is not None:
                    row["amp_skipped_steps"] = partial["n_skipped"]
                    row["loss_scale"] = scaler.get_scale()
                if on_epoch_end is not None:
                    row.update(on_epoch_end(epoch, dict(row)) or {})
                rows.append(row)
                if train.select == "best_dev" and row["dev_loss"] < best_loss:
                    best_loss, best_epoch = row["dev_loss"], epoch
                    best_state = snapshot(params)
                log.info(
                    "%s epoch %d/%d step %d: train_loss %.4f dev_loss %.4f lr %.3g (%.1f s)",
                    desc,
                    epoch,
                    epochs,
                    step,
                    row["train_loss"],
                    row["dev_loss"],
                    row["lr"],
                    time.perf_counter() - started,
                )
                if ckpt is not None:
                    save(epoch, steps_per_epoch, True)
    finally:
        progress.close()
        if train.gradient_checkpointing:
            models.set_gradient_checkpointing(model, False)

    ddp.assert_in_sync([p for _, p in params])
    selected = epochs
    if train.select == "best_dev" and best_state is not None:
        restore(params, best_state)
        selected = best_epoch
        log.info("%s: selected epoch %d (best dev loss %.4f)", desc, best_epoch, best_loss)
    if ddp.sharded:
        model = fsdp.release(model)  # a plain, unsharded model again (every rank)
    model.eval()
    history = pd.DataFrame(rows, columns=None if rows else ["epoch", "step", "train_loss", "dev_loss", "lr"])
    history["selected"] = history["epoch"] == selected
    return model, history


def _inside(context: Callable, fn: Callable) -> Callable:
    """``fn`` run inside ``context()``."""

    @functools.wraps(fn)
    def inner(*args, **kwargs):
        with context():
            return fn(*args, **kwargs)

    return inner


def _dev_loss(model, dev_items, batch_size: int, pad_id: int, ddp: DataParallel) -> float:
    """Response NLL on the dev items; under data parallelism each rank scores its shard and sums are reduced."""
    if not dev_items:
        return math.nan
    if not ddp.active:
        return mean_nll(model, dev_items, batch_size, pad_id)
    shard = list(dev_items)[ddp.rank :: ddp.world]
    total, count = nll_sums(model, shard, batch_size, pad_id) if shard else (0.0, 0.0)
    total, count = ddp.sum([total, count])
    return total / max(count, 1.0)


def sft(
    model,
    train_items,
    dev_items,
    train: Train,
    pad_id: int,
    log=None,
    on: str = "response",
    desc: str = "sft",
    **fit_kwargs,
):
    """Supervised fine-tuning (``on="response"``) or language-model pretraining (``on="all"``).
    ``fit_kwargs``: ``seed``, ``resume``, ``on_step`` (see :func:`fit`)."""
    return fit(
        model, train_items, dev_items, train, pad_id, functools.partial(lm_loss, on=on), log, desc, **fit_kwargs
    )
