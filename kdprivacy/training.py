"""Training: a plain, deterministic PyTorch loop and the losses built on it (SFT, pretraining, word-level KD).

Everything trains and scores **response tokens only** (prompt tokens are context), except pretraining
(``on="all"``). :func:`fit` is generic: a KD method supplies ``loss_fn(model, batch) -> (loss, stats)``
and gets seeded shuffling, AdamW, clipping, a learning-rate schedule, per-epoch dev NLL, model selection
and a history table for free.

Pool guards live here too (pitfalls.md): students only ever read the public/dev pools, and nothing derived
from the tokenizer/base pretraining may read private or non-member examples.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import pickle
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from kdprivacy import checkpoint, objectives
from kdprivacy.data.manifest import select_pool
from kdprivacy.encoding import (
    Encoded,
    batch_indices,
    collate,
    encode_frame,
    format_prompt,
    length_sorted_batches,
    shift_for_causal_lm,
)

# ------------------------------------------------------------------------------------------------ pools
SECRET_POOLS = ("private", "nonmember")  # what membership is measured on: never train students/bases on it
STUDENT_POOLS = ("public", "dev")


def read_manifest(manifest_path) -> pd.DataFrame:
    return pd.read_parquet(manifest_path)


def select_pools(manifest: pd.DataFrame, pools: Sequence[str]) -> pd.DataFrame:
    """Rows of ``manifest`` in ``pools``; an unknown or empty pool list is an error."""
    pools = list(pools)
    if not pools:
        raise ValueError("no pools given")
    return select_pool(manifest, *pools)


def refuse_secret_pools(pools: Iterable[str], what: str) -> None:
    """Tokenizers and pretrained bases must never see members or non-members."""
    bad = sorted(set(pools) & set(SECRET_POOLS))
    if bad:
        raise ValueError(f"{what} must not read pools {bad} (members/non-members); got pools {sorted(set(pools))}")


def assert_student_pools(manifest: pd.DataFrame, ids: Iterable[str], pools: Iterable[str] | None = None) -> None:
    """Guarantee: a student only ever reads public/dev examples.

    Raises ``AssertionError`` (explicitly, so ``python -O`` cannot strip it) if a requested pool is not
    public/dev, or if any id is unknown to the manifest or belongs to a private/non-member row.
    """
    if pools is not None:
        bad_pools = sorted(set(pools) - set(STUDENT_POOLS))
        if bad_pools:
            raise AssertionError(f"students may only read pools {list(STUDENT_POOLS)}; requested {bad_pools}")
    ids = set(ids)
    by_pool = manifest.groupby("pool")["id"].agg(set)
    leaked = {pool: sorted(ids & by_pool.get(pool, set())) for pool in SECRET_POOLS}
    leaked = {pool: found for pool, found in leaked.items() if found}
    if leaked:
        sample = {pool: found[:5] for pool, found in leaked.items()}
        counts = {pool: len(found) for pool, found in leaked.items()}
        raise AssertionError(f"student training data contains secret examples {counts}, e.g. {sample}")
    unknown = ids - set(manifest["id"])
    if unknown:
        raise AssertionError(f"{len(unknown)} student item ids are not in the manifest, e.g. {sorted(unknown)[:5]}")


def pool_guard(manifest: pd.DataFrame, pools: Sequence[str] = ("public",), what: str = "student data") -> Callable:
    """A reusable check, built once from the manifest: ``check(ids)`` raises ``AssertionError`` unless every id
    belongs to one of ``pools`` (a subset of the student pools). Secret ids are named by pool.

    Used on everything a student trains on that is *derived* from prompts (student-generated outputs, teacher
    generations): those must come from public prompts only, so their ids must all be public.
    """
    pools = list(pools)
    bad_pools = sorted(set(pools) - set(STUDENT_POOLS))
    if not pools or bad_pools:
        raise AssertionError(f"{what}: allowed pools must be a non-empty subset of {list(STUDENT_POOLS)}, got {pools}")
    by_pool = manifest.groupby("pool")["id"].agg(set)
    allowed = set().union(*(by_pool.get(pool, set()) for pool in pools))
    secret = {pool: by_pool.get(pool, set()) for pool in SECRET_POOLS}

    def check(ids: Iterable[str]) -> None:
        outside = set(ids) - allowed
        if not outside:
            return
        leaked = {pool: sorted(outside & found) for pool, found in secret.items() if outside & found}
        if leaked:
            counts = {pool: len(found) for pool, found in leaked.items()}
            sample = {pool: found[:5] for pool, found in leaked.items()}
            raise AssertionError(f"{what} contains secret examples {counts}, e.g. {sample}")
        raise AssertionError(f"{what}: {len(outside)} ids are not in pools {pools}, e.g. {sorted(outside)[:5]}")

    return check


def pool_texts(manifest_path, pools: Sequence[str]) -> list[str]:
    """Formatted prompt + response of every row in ``pools`` (tokenizer training corpus)."""
    refuse_secret_pools(pools, "tokenizer/pretraining text")
    frame = select_pools(read_manifest(manifest_path), pools)
    return [format_prompt(r.instruction, r.context) + r.response for r in frame.itertuples(index=False)]


def load_items(manifest_path, pools: Sequence[str], tokenizer, max_length: int, max_prompt_length: int) -> list[Encoded]:
    """Load the manifest, select ``pools`` and encode them (manifest order)."""
    frame = select_pools(read_manifest(manifest_path), pools)
    return encode_frame(tokenizer, frame, max_length, max_prompt_length)


# ------------------------------------------------------------------------------------------------ losses
def token_nll(logits: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed next-token NLL over positions whose *target* is masked in, and their count.

    ``mask`` is aligned with ``input_ids`` (unshifted); shifting happens here.
    """
    logits, targets, target_mask = shift_for_causal_lm(logits, input_ids, mask)
    nll = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="none")
    weight = target_mask.reshape(-1).to(nll.dtype)
    return (nll * weight).sum(), weight.sum()


def _target_mask(batch: dict[str, torch.Tensor], on: str) -> torch.Tensor:
    if on == "response":
        return batch["response_mask"]
    if on == "all":
        return batch["attention_mask"]
    raise ValueError(f"on must be 'response' or 'all', got {on!r}")


def model_device(model) -> torch.device:
    device = getattr(model, "device", None)
    if isinstance(device, torch.device):
        return device
    return next(model.parameters()).device


def to_device(batch: dict, device: torch.device) -> dict:
    """Tensors of ``batch`` moved to ``device``; other values (flags, rollouts) are passed through."""
    return {key: value.to(device) if isinstance(value, torch.Tensor) else value for key, value in batch.items()}


def _forward(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    device = model_device(model)
    return model(
        input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device), use_cache=False
    ).logits


def lm_loss(model, batch: dict[str, torch.Tensor], on: str = "response") -> tuple[torch.Tensor, dict]:
    """Mean cross-entropy over response tokens (``on="response"``) or all non-pad tokens (``"all"``)."""
    mask = _target_mask(batch, on)
    total, count = token_nll(_forward(model, batch), batch["input_ids"], mask)
    loss = total / count.clamp_min(1.0)
    return loss, {"lm_loss": loss.item()}


@torch.no_grad()
def nll_sums(
    model, items: Sequence[Encoded], batch_size: int, pad_id: int, on: str = "response"
) -> tuple[float, float]:
    """Summed response-token NLL of ``items`` and the token count (eval mode; training mode restored)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0.0
    try:
        for idx in length_sorted_batches(items, batch_size):
            batch = to_device(collate([items[i] for i in idx], pad_id), model_device(model))
            s, n = token_nll(_forward(model, batch), batch["input_ids"], _target_mask(batch, on))
            total += s.item()
            count += n.item()
    finally:
        model.train(was_training)
    return total, count


def mean_nll(model, items: Sequence[Encoded], batch_size: int, pad_id: int, on: str = "response") -> float:
    """Token-weighted mean NLL of the response tokens of ``items`` (eval mode; training mode restored)."""
    if not items:
        return float("nan")
    total, count = nll_sums(model, items, batch_size, pad_id, on)
    return total / max(count, 1.0)


# ------------------------------------------------------------------------------------------ data parallel
class _StepLoss(torch.nn.Module):
    """One training step's loss as a module: ``forward(batch) = loss_fn(model, batch)``. Wrapped in
    ``DistributedDataParallel``, every forward a loss makes (the student once or several times, gradient-
    enabled or under ``no_grad``) runs inside one DDP forward, and ``loss_fn`` still gets the plain model
    (``model.config``, generation, ``get_base_model`` as on one device). ``model`` is the only submodule: a
    ``loss_fn`` holding a teacher keeps it out of DDP."""

    def __init__(self, model, loss_fn):
        super().__init__()
        self.model = model
        object.__setattr__(self, "loss_fn", loss_fn)  # never registered as a submodule

    def forward(self, batch):
        return self.loss_fn(self.model, batch)


class DataParallel:
    """This process's place in a data-parallel run (``torchrun`` / :func:`launch_data_parallel` environment:
    ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``); a no-op for a single process.

    Design: every rank holds the full model on its own device (``cuda:LOCAL_RANK``; gloo on CPU) and
    :func:`fit` runs each step's loss through torch's ``DistributedDataParallel`` (:meth:`wrap`): the loss
    function becomes the forward of a small module around the model (:class:`_StepLoss`), so the KD methods
    keep the plain model (attribute access, generation, ``no_grad`` forwards) while DDP's reducer averages
    the trainable gradients in buckets whose all-reduces overlap the backward pass. DDP broadcasts rank 0's
    parameters and buffers when it wraps the model; every rank then takes the same optimizer step and the
    parameters stay identical (verified equal at the end, :meth:`assert_in_sync`). Each global batch of
    ``batch_size`` items is split across the ranks (``idx[rank::world]``) and each rank's loss is weighted by
    its share × world, so DDP's mean over ranks is the share-weighted mean (a tail batch smaller than the
    world gives the idle ranks a zero-weight item: they still backpropagate, with zero gradients).
    ``batch_size``, steps per epoch and the learning-rate schedule mean the same as on one device. Seeds are
    **not** offset by rank (pitfalls.md): SGO decisions drawn from seeded RNGs agree on every rank, and
    generated samples are seeded per example id (:mod:`kdprivacy.generation`), so sharding does not change
    them. Dev loss is summed over rank shards. Only rank 0 writes checkpoints and outputs; each rank's RNG,
    partial epoch sums and KD-method state (its own replay buffer, its own share of samples) are checkpointed.

    Every trainable parameter must receive a gradient in every step (a causal LM's loss depends on all its
    weights, a LoRA model's on all adapter weights), so DDP runs without ``find_unused_parameters`` (no
    autograd-graph search per step); a parameter left without a gradient is reported as an error naming it
    instead of being silently skipped by the reducer. Gradient checkpointing is non-reentrant
    (:func:`kdprivacy.models.set_gradient_checkpointing`), which DDP supports.

    The one numeric difference from one device: the batch loss is the share-weighted mean of per-rank
    losses. For a loss that is a mean over sequences this is exactly the whole batch's loss; the token-
    weighted response NLL (SFT) and the KD divergences weight sequences slightly differently. Exact resume
    of a data-parallel run holds bit for bit where the all-reduce's rounding does not depend on DDP's bucket
    layout (which DDP rebuilds once, after the first step of each wrap): always for two ranks; with more
    NCCL ranks a resumed run may differ from an uninterrupted one in the last bits.
    """

    BUCKET_MB = 25  # DDP's default bucket size

    def __init__(self):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if self.world > 1:
            init_distributed()

    @property
    def active(self) -> bool:
        return self.world > 1

    def shard(self, idx: Sequence[int]) -> tuple[list[int], float]:
        """This rank's part of a batch and its loss weight (its share × world; 0 for a padding item)."""
        if not self.active:
            return list(idx), 1.0
        mine = list(idx[self.rank :: self.world])
        if not mine:  # a tail batch smaller than the world: take part with zero weight
            return [idx[0]], 0.0
        return mine, len(mine) * self.world / len(idx)

    def wrap(self, model, loss_fn: Callable) -> Callable[[dict], tuple[torch.Tensor, dict]]:
        """``step_loss(batch) -> (loss, stats)`` = ``loss_fn(model, batch)``; data-parallel, through a
        ``DistributedDataParallel`` around :class:`_StepLoss` (which broadcasts rank 0's parameters and
        buffers now), whose backward leaves every trainable gradient averaged over the ranks."""
        if not self.active:
            return functools.partial(loss_fn, model)
        import inspect

        from torch.nn.parallel import DistributedDataParallel

        # buffers are not trained: synced from rank 0 once, at construction, not before every forward
        newer = "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
        buffers = {"forward_sync_buffers": False} if newer else {"broadcast_buffers": False}
        return DistributedDataParallel(
            _StepLoss(model, loss_fn),
            device_ids=None,  # batches are already on the model's device
            bucket_cap_mb=self.BUCKET_MB,
            find_unused_parameters=False,
            **buffers,
        )

    def check_grads(self, params: Sequence[tuple[str, torch.Tensor]]) -> None:
        """Raise if a trainable parameter got no gradient (DDP's reducer would not have averaged it)."""
        if not self.active:
            return
        missing = [name for name, p in params if p.grad is None]
        if missing:
            raise RuntimeError(
                f"data-parallel training: {len(missing)} trainable parameters got no gradient this step "
                f"(e.g. {missing[:3]}); DistributedDataParallel runs without find_unused_parameters, so every "
                "trainable parameter must take part in the loss"
            )

    def _tensor(self, values: Sequence[float]) -> torch.Tensor:
        device = torch.device("cuda", self.local_rank) if torch.cuda.is_available() else torch.device("cpu")
        return torch.tensor(list(values), dtype=torch.float64, device=device)

    def sum(self, values: Sequence[float]) -> list[float]:
        if not self.active:
            return list(values)
        import torch.distributed as dist

        t = self._tensor(values)
        dist.all_reduce(t)
        return t.tolist()

    def any(self, *flags: bool) -> list[bool]:
        if not self.active:
            return [bool(f) for f in flags]
        import torch.distributed as dist

        t = self._tensor([float(bool(f)) for f in flags])
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return [bool(v) for v in t.tolist()]

    def gather(self, obj) -> list:
        """``obj`` of every rank (as CPU objects), in rank order, on every rank."""
        if not self.active:
            return [obj]
        import torch.distributed as dist

        out: list = [None] * self.world
        dist.all_gather_object(out, checkpoint.to_cpu(obj))
        return out

    def assert_in_sync(self, params: Sequence[torch.Tensor]) -> None:
        """Raise if the ranks' parameters differ (per-parameter float64 checksums compared across ranks)."""
        if not self.active or not params:
            return
        import torch.distributed as dist

        with torch.no_grad():
            sums = torch.stack([p.detach().double().sum().cpu() for p in params])
        high, low = self._tensor(sums.tolist()), self._tensor((-sums).tolist())
        dist.all_reduce(high, op=dist.ReduceOp.MAX)
        dist.all_reduce(low, op=dist.ReduceOp.MAX)
        if not torch.equal(high, -low):
            raise RuntimeError("data-parallel ranks ended with different parameters")

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier()


def init_distributed() -> None:
    """Join the process group of a ``torchrun`` launch (NCCL on CUDA, gloo on CPU), once."""
    import torch.distributed as dist

    if dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")


def is_main_process() -> bool:
    """Rank 0 (or no data parallelism): the process that writes outputs."""
    return int(os.environ.get("RANK", "0")) == 0


def finish_distributed() -> None:
    """Barrier and leave the process group (end of a data-parallel script); no-op otherwise."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def in_worker() -> bool:
    """True inside a ``torchrun``-launched rank."""
    return "WORLD_SIZE" in os.environ and "LOCAL_RANK" in os.environ


def data_parallel_size(snakemake) -> int:
    """How many data-parallel processes a training script should run: the rule's ``resources.gpu`` (absent or
    0 -> 1), capped at the visible CUDA devices (``CUDA_VISIBLE_DEVICES``: what SLURM's ``--gpus`` gives);
    1 without CUDA or inside a worker."""
    if in_worker() or not torch.cuda.is_available():
        return 1
    resources = getattr(snakemake, "resources", None)
    wanted = int(getattr(resources, "gpu", 0) or 0) if resources is not None else 0
    return max(1, min(wanted, torch.cuda.device_count()))


LAUNCHER = Path(__file__).resolve().parents[1] / "scripts" / "launch.py"


def launch_data_parallel(
    snakemake, script: str | os.PathLike, nproc: int, log: logging.Logger | None = None
) -> None:
    """Run ``script`` as ``nproc`` data-parallel ranks of one job, through ``torchrun`` (single node)::

        python -m torch.distributed.run --standalone --nproc_per_node=<nproc> scripts/launch.py <snakemake.pkl> <script>

    ``scripts/launch.py`` unpickles the job's ``snakemake`` object and runs the script in each rank (whose
    ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` make :func:`fit` data-parallel). Output and errors of the ranks go
    to the rule's log; a failing rank fails the job (``CalledProcessError``).
    """
    log = log or logging.getLogger("kdprivacy")
    with tempfile.TemporaryDirectory(prefix="kdprivacy-launch-") as tmp:
        pkl = Path(tmp) / "snakemake.pkl"
        pkl.write_bytes(pickle.dumps(snakemake, protocol=4))
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={int(nproc)}",
            str(LAUNCHER),
            str(pkl),
            str(Path(script).resolve()),
        ]
        log.info("data-parallel launch on %d GPUs: %s", nproc, " ".join(cmd))
        sys.stderr.flush()
        try:
            sink = sys.stderr.fileno()  # the rule's log (runtime.start redirects stderr there)
        except (AttributeError, OSError, ValueError):
            sink = None
        subprocess.run(cmd, check=True, stdout=sink, stderr=sink)


def worker_threads(threads: int) -> int:
    """CPU threads per rank: the job's threads shared by its ranks."""
    return max(1, int(threads) // max(1, int(os.environ.get("WORLD_SIZE", "1"))))


# ---------------------------------------------------------------------------------------------- the loop
TRAIN_DEFAULTS = {
    "weight_decay": 0.01,
    "grad_clip": 1.0,
    "warmup_ratio": 0.0,
    "scheduler": "cosine",
    "select": "last",
    "eval_batch_size": None,  # -> batch_size
    "seed": 0,
    # Preemption (kdprivacy.checkpoint): mid-epoch checkpoints every N optimizer steps / M minutes (0 = off;
    # epoch ends are always checkpointed when a resume dir is given). They never change results.
    "checkpoint_every_steps": 0,
    "checkpoint_every_minutes": 0.0,
    # Compute precision of the training forward/loss (kdprivacy.models.autocast; fp32 = no autocast) and
    # activation checkpointing (kdprivacy.models.set_gradient_checkpointing). Weights stay float32.
    "precision": "fp32",
    "gradient_checkpointing": False,
}
TRAIN_REQUIRED = ("epochs", "lr", "batch_size")
SCHEDULERS = ("cosine", "linear", "constant")
SELECT_RULES = ("last", "best_dev")


def resolve_train_config(cfg: dict) -> dict:
    """``cfg`` with defaults filled in; unknown keys, missing keys and bad values raise ValueError."""
    unknown = sorted(set(cfg) - set(TRAIN_DEFAULTS) - set(TRAIN_REQUIRED))
    if unknown:
        raise ValueError(f"train config has unknown keys {unknown}; allowed {sorted([*TRAIN_REQUIRED, *TRAIN_DEFAULTS])}")
    missing = [key for key in TRAIN_REQUIRED if key not in cfg]
    if missing:
        raise ValueError(f"train config is missing {missing}")
    out = {**TRAIN_DEFAULTS, **cfg}
    if out["eval_batch_size"] is None:
        out["eval_batch_size"] = out["batch_size"]
    if out["scheduler"] not in SCHEDULERS:
        raise ValueError(f"scheduler must be one of {list(SCHEDULERS)}, got {out['scheduler']!r}")
    if out["select"] not in SELECT_RULES:
        raise ValueError(f"select must be one of {list(SELECT_RULES)}, got {out['select']!r}")
    if int(out["epochs"]) < 0 or int(out["batch_size"]) < 1 or float(out["lr"]) < 0:
        raise ValueError(f"bad epochs/batch_size/lr in {cfg}")
    if not 0.0 <= float(out["warmup_ratio"]) < 1.0:
        raise ValueError(f"warmup_ratio must be in [0, 1), got {out['warmup_ratio']}")
    if int(out["checkpoint_every_steps"] or 0) < 0 or float(out["checkpoint_every_minutes"] or 0) < 0:
        raise ValueError("checkpoint_every_steps/checkpoint_every_minutes must be >= 0")
    from kdprivacy.models import PRECISIONS

    if out["precision"] not in PRECISIONS:
        raise ValueError(f"train.precision must be one of {list(PRECISIONS)}, got {out['precision']!r}")
    if not isinstance(out["gradient_checkpointing"], bool):
        raise ValueError(
            f"train.gradient_checkpointing must be true or false, got {out['gradient_checkpointing']!r}"
        )
    return out


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
    missing = sorted({name for name, _ in params} - set(state))
    if missing:
        raise ValueError(f"saved parameters lack {missing[:5]} ({len(missing)} in all)")
    with torch.no_grad():
        for name, p in params:
            p.copy_(state[name].to(p.device))


def fit(
    model,
    train_items: Sequence[Encoded],
    dev_items: Sequence[Encoded] | None,
    cfg: dict,
    pad_id: int,
    loss_fn: Callable[[torch.nn.Module, dict], tuple[torch.Tensor, dict]],
    log: logging.Logger | None = None,
    desc: str = "train",
    make_batch: Callable[[list[Encoded]], dict] | None = None,
    on_epoch_end: Callable[[int, dict], dict | None] | None = None,
    *,
    state=None,
    resume: checkpoint.Resume | None = None,
    on_step: Callable[[int], None] | None = None,
) -> tuple[torch.nn.Module, pd.DataFrame]:
    """Train ``model`` on ``train_items`` with ``loss_fn``; returns the model and a per-epoch history.

    Batches are reshuffled each epoch with seed ``cfg.seed + epoch``; torch's global RNG is seeded with
    ``cfg.seed`` first (dropout), so a fixed seed and thread count give identical weights. The scheduler steps
    once per optimizer step. History columns: ``epoch, step, train_loss, dev_loss, lr, selected`` plus the
    per-epoch mean of every stat ``loss_fn`` reports (``dev_loss`` = response-token NLL on ``dev_items``).
    ``select="best_dev"`` restores the epoch with the lowest dev loss at the end; ``"last"`` keeps the last.
    Only parameters with ``requires_grad`` train (all of them, or a LoRA adapter, see
    :func:`kdprivacy.models.apply_lora`).

    Hooks for KD methods that build their own data (:mod:`kdprivacy.distillation`):
    ``make_batch(items) -> batch`` replaces ``collate(items, pad_id)`` (e.g. to sample student outputs for
    the batch's prompts; non-tensor values such as flags ride along), and ``on_epoch_end(epoch, row) ->
    dict`` runs after the epoch's dev loss is in ``row`` and adds columns to it (e.g. a schedule's state).
    Stats a ``loss_fn`` reports are averaged over *all* batches of the epoch, so a stat must be reported by
    every batch (report 0/1 to get a fraction). Batch tensors are moved to the model's device.

    Preemption (:mod:`kdprivacy.checkpoint`): with ``resume`` the loop checkpoints into ``resume.dir`` at
    every epoch end, every ``cfg.checkpoint_every_steps`` steps / ``cfg.checkpoint_every_minutes`` minutes,
    and on SIGTERM/SIGUSR1 (then raises :class:`kdprivacy.checkpoint.Preempted`); a call that finds a
    checkpoint of the same run continues from it. ``state`` (an object with ``state_dict()`` /
    ``load_state_dict()``) is the caller's own state saved with it (a KD method's RNGs and buffers).
    ``on_step(step)`` runs after every optimizer step (and its checkpoint, if one was due).

    Precision (``cfg.precision``, :func:`kdprivacy.models.autocast`): ``loss_fn`` (every forward of the step:
    student, and the teacher of a KD loss) runs under ``torch.autocast`` for ``bf16`` / ``fp16``; backward,
    clipping and AdamW see the float32 parameters. ``fp16`` adds a dynamic loss scale
    (``torch.amp.GradScaler``): gradients are unscaled before clipping, a step whose gradients hold inf/NaN is
    skipped (the scale halves; the learning-rate schedule does not advance), and the scaler is part of the
    checkpoint; history then gains ``amp_skipped_steps`` (per epoch) and ``loss_scale`` (at epoch end).
    ``fp32`` enters no context at all. Dev loss and ``make_batch`` (sampling) run in full precision.
    ``cfg.gradient_checkpointing`` turns activation checkpointing on for the loop and off afterwards.

    Data parallel: under ``torchrun`` (``WORLD_SIZE > 1``) see :class:`DataParallel`.
    """
    from kdprivacy import models

    cfg = resolve_train_config(cfg)
    log = log or logging.getLogger("kdprivacy")
    if cfg["select"] == "best_dev" and not dev_items:
        raise ValueError("select='best_dev' needs dev items")
    if not train_items and cfg["epochs"] > 0:
        raise ValueError("no training items")
    ddp = DataParallel()
    epochs, batch_size = int(cfg["epochs"]), int(cfg["batch_size"])
    steps_per_epoch = math.ceil(len(train_items) / batch_size)
    total_steps = epochs * steps_per_epoch
    params = trainable_parameters(model)
    step_loss = ddp.wrap(model, loss_fn)  # data-parallel: DDP broadcasts rank 0's weights here
    optimizer = make_optimizer(model, float(cfg["lr"]), float(cfg["weight_decay"]))
    schedule = lr_lambda(cfg["scheduler"], total_steps, int(float(cfg["warmup_ratio"]) * total_steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    torch.manual_seed(int(cfg["seed"]))
    make_batch = make_batch or functools.partial(collate, pad_id=pad_id)
    device = model_device(model)
    precision = cfg["precision"]
    models.autocast(precision, device)  # refuse an impossible precision before any work
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None

    rows: list[dict] = []
    best_loss, best_state, best_epoch = math.inf, None, None
    step, start_epoch, skip = 0, 1, 0
    partial = {"loss_sum": 0.0, "stat_sums": {}, "n_batches": 0, "lr": float(optimizer.param_groups[0]["lr"]),
               "n_skipped": 0}

    ckpt = None
    if resume is not None:
        identity = {
            "desc": desc,
            "n_train": len(train_items),
            "n_dev": len(dev_items or ()),
            "total_steps": total_steps,
            "params": [name for name, _ in params],
            "train": {k: v for k, v in cfg.items() if not k.startswith("checkpoint_every")},
        }
        ckpt = checkpoint.Checkpointer(
            resume,
            cfg["checkpoint_every_steps"],
            cfg["checkpoint_every_minutes"],
            identity,
            rank=ddp.rank,
            log=log,
        )
        saved = ckpt.load()
        if saved is not None:
            _restore(params, saved["model"])
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
                "model": checkpoint.to_cpu(_snapshot(params)),
                "optimizer": checkpoint.to_cpu(optimizer.state_dict()),
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
    if cfg["gradient_checkpointing"]:
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
                    len(train_items), batch_size, shuffle=True, seed=int(cfg["seed"]) + epoch
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
                    if cfg["grad_clip"] and cfg["grad_clip"] > 0:
                        torch.nn.utils.clip_grad_norm_(model.parameters(), float(cfg["grad_clip"]))
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
                row["dev_loss"] = _dev_loss(model, dev_items, int(cfg["eval_batch_size"]), pad_id, ddp)
                row["lr"] = partial["lr"]
                row.update({key: value / ddp.world / n_batches for key, value in zip(keys, sums[1:])})
                if scaler is not None:
                    row["amp_skipped_steps"] = partial["n_skipped"]
                    row["loss_scale"] = scaler.get_scale()
                if on_epoch_end is not None:
                    row.update(on_epoch_end(epoch, dict(row)) or {})
                rows.append(row)
                if cfg["select"] == "best_dev" and row["dev_loss"] < best_loss:
                    best_loss, best_epoch = row["dev_loss"], epoch
                    best_state = _snapshot(params)
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
        if cfg["gradient_checkpointing"]:
            models.set_gradient_checkpointing(model, False)

    ddp.assert_in_sync([p for _, p in params])
    selected = epochs
    if cfg["select"] == "best_dev" and best_state is not None:
        _restore(params, best_state)
        selected = best_epoch
        log.info("%s: selected epoch %d (best dev loss %.4f)", desc, best_epoch, best_loss)
    model.eval()
    history = pd.DataFrame(rows, columns=None if rows else ["epoch", "step", "train_loss", "dev_loss", "lr"])
    history["selected"] = history["epoch"] == selected
    return model, history


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
    cfg: dict,
    pad_id: int,
    log=None,
    on: str = "response",
    desc: str = "sft",
    **fit_kwargs,
):
    """Supervised fine-tuning (``on="response"``) or language-model pretraining (``on="all"``).
    ``fit_kwargs``: ``resume``, ``on_step`` (see :func:`fit`)."""
    return fit(
        model, train_items, dev_items, cfg, pad_id, functools.partial(lm_loss, on=on), log, desc, **fit_kwargs
    )


# ------------------------------------------------------------------------------------------------ KD
KD_DEFAULTS = {"objective": "fkl", "temperature": 1.0, "lm_weight": 0.0, "teacher_top_k": None}


def resolve_kd_config(kd_cfg: dict | None) -> tuple[dict, Callable]:
    """Fill KD defaults and build the divergence; hyperparameters the objective does not use are refused,
    except ``beta``/``alpha`` set to None (a config may list every key)."""
    kd = {**KD_DEFAULTS, **(kd_cfg or {})}
    hparams = {k: v for k, v in kd.items() if k not in KD_DEFAULTS and v is not None}
    unknown = sorted(set(hparams) - {"beta", "alpha"})
    if unknown:
        raise ValueError(f"kd config has unknown keys {unknown}")
    if not 0.0 <= float(kd["lm_weight"]) <= 1.0:
        raise ValueError(f"lm_weight must be in [0, 1], got {kd['lm_weight']}")
    if kd["teacher_top_k"] is not None and int(kd["teacher_top_k"]) < 1:
        raise ValueError(f"teacher_top_k must be >= 1 or None, got {kd['teacher_top_k']}")
    divergence = objectives.get_objective(kd["objective"], temperature=float(kd["temperature"]), **hparams)
    return kd, divergence


def check_shared_vocab(student, teacher) -> None:
    """Token-level KD compares logits position by position: the output vocabularies must be the same."""
    vs, vt = student.get_output_embeddings().weight.shape[0], teacher.get_output_embeddings().weight.shape[0]
    if vs != vt:
        raise ValueError(
            f"student vocabulary ({vs}) != teacher vocabulary ({vt}); KD needs a shared tokenizer/vocabulary"
        )


def _with_lm(kd: torch.Tensor, logits: torch.Tensor, batch: dict, lm_weight: float) -> tuple[torch.Tensor, dict]:
    """``(1 − w)·kd + w·LM`` on response positions; the LM loss is reported (without a gradient) at w = 0."""
    with torch.set_grad_enabled(torch.is_grad_enabled() and lm_weight > 0):
        total, count = token_nll(logits, batch["input_ids"], batch["response_mask"])
    lm = total / count.clamp_min(1.0)
    loss = (1.0 - lm_weight) * kd + lm_weight * lm if lm_weight > 0 else kd
    return loss, {"kd_loss": kd.item(), "lm_loss": lm.item()}


def kd_loss_fn(teacher, divergence: Callable, lm_weight: float) -> Callable:
    """``loss_fn`` for :func:`fit`: (1 − w)·D(teacher ‖ student) + w·LM on response positions."""

    def loss_fn(student, batch):
        logits = _forward(student, batch)
        with torch.no_grad():
            teacher_logits = _forward(teacher, batch)
        if logits.shape[-1] != teacher_logits.shape[-1]:
            raise ValueError(f"student/teacher logits differ in vocabulary ({logits.shape[-1]} vs {teacher_logits.shape[-1]})")
        s, _, mask = shift_for_causal_lm(logits, batch["input_ids"], batch["response_mask"])
        t = teacher_logits[:, :-1]
        kd = divergence(s.float(), t.float(), mask)
        return _with_lm(kd, logits, batch, lm_weight)

    return loss_fn


# ------------------------------------------------------------------------------- cached teacher logits
def coarsen(logits: torch.Tensor, index: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Log-probabilities of the ``k + 1`` buckets "each token of ``index``" and "every other token" under
    ``softmax(logits / temperature)``: ``[..., V]`` logits, ``[..., k]`` indices -> ``[..., k + 1]``.

    Any divergence between two such coarsenings (same buckets) is a divergence between distributions, and by
    the data-processing inequality never exceeds the one between the full distributions; with every token
    in ``index`` the tail bucket is empty (``-inf``) and the divergence is the full one.
    """
    logp = torch.log_softmax(logits.float() / float(temperature), dim=-1)
    index = index.long()
    top = logp.gather(-1, index)
    # the tail summed directly over the other tokens (not 1 - sum(top): that cancels catastrophically when
    # the top-k hold almost all the mass); -inf exactly when no token is left
    tail = torch.logsumexp(logp.scatter(-1, index, float("-inf")), dim=-1, keepdim=True)
    return torch.cat([top, tail], dim=-1)


def target_positions(item: Encoded) -> tuple[int, int]:
    """``[start, stop)`` of ``item``'s response targets in the shifted frame (:func:`collate` then
    ``shift_for_causal_lm``): the positions whose logits predict a response token."""
    length = len(item.prompt_ids) + len(item.response_ids)
    return max(0, len(item.prompt_ids) - 1), max(0, length - 1)


class TeacherCache:
    """The frozen teacher's top-``k`` coarsened log-probabilities (:func:`coarsen`) at every response target
    position of every item, computed once (teacher in eval mode, batched, no gradient).

    Per item: ``index`` ``[n, k]`` (int32) and ``logp`` ``[n, k + 1]`` (float32), ``n`` its response target
    positions; memory ``n * (8k + 4)`` bytes per item. :meth:`attach` adds them to a collated batch as
    ``teacher_index`` ``[B, T-1, k]`` and ``teacher_logp`` ``[B, T-1, k + 1]`` (zeros off the target mask).
    ``precision``: the teacher pass runs under :func:`kdprivacy.models.autocast` (the training precision,
    as the teacher forward inside an uncached KD loss would).
    """

    def __init__(self, teacher, items: Sequence[Encoded], k: int, temperature: float, batch_size: int,
                 pad_id: int, log: logging.Logger | None = None, precision: str = "fp32"):
        from kdprivacy import models

        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        vocab = teacher.get_output_embeddings().weight.shape[0]
        self.k = min(int(k), int(vocab))
        self.temperature = float(temperature)
        self.entries: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        device = model_device(teacher)
        was_training = teacher.training
        teacher.eval()
        start = time.perf_counter()
        try:
            with torch.no_grad():
                for begin in tqdm(range(0, len(items), batch_size), desc=f"teacher cache[top-{self.k}]",
                                  disable=None):
                    chunk = list(items[begin : begin + batch_size])
                    batch = to_device(collate(chunk, pad_id), device)
                    with models.autocast(precision, device):
                        logits = _forward(teacher, batch)[:, :-1]
                    for row, item in enumerate(chunk):
                        lo, hi = target_positions(item)
                        rows = logits[row, lo:hi].float()
                        index = rows.topk(self.k, dim=-1).indices
                        self.entries[item.id] = (index.to("cpu", torch.int32),
                                                 coarsen(rows, index, self.temperature).cpu())
        finally:
            teacher.train(was_training)
        if log is not None:
            mb = sum(i.numel() * 4 + p.numel() * 4 for i, p in self.entries.values()) / 2**20
            log.info("teacher cache: top-%d of %d tokens at %d positions of %d items (%.1f MB) in %.1f s",
                     self.k, vocab, sum(len(i) for i, _ in self.entries.values()), len(self.entries), mb,
                     time.perf_counter() - start)

    def attach(self, batch: dict, items: Sequence[Encoded]) -> dict:
        width = batch["input_ids"].shape[1] - 1
        index = torch.zeros((len(items), width, self.k), dtype=torch.long)
        logp = torch.zeros((len(items), width, self.k + 1), dtype=torch.float32)
        for row, item in enumerate(items):
            if item.id not in self.entries:
                raise KeyError(f"item {item.id!r} is not in the teacher cache")
            lo, hi = target_positions(item)
            cached_index, cached_logp = self.entries[item.id]
            index[row, lo:hi] = cached_index.long()
            logp[row, lo:hi] = cached_logp
        batch["teacher_index"], batch["teacher_logp"] = index, logp
        return batch


def cached_kd_loss_fn(divergence: Callable, temperature: float, lm_weight: float) -> Callable:
    """:func:`kd_loss_fn` against a :class:`TeacherCache` (batch keys ``teacher_index``/``teacher_logp``):
    the divergence between the coarsened teacher and the student coarsened on the same buckets.
    ``divergence`` must be built with temperature 1 (the temperature is applied when coarsening)."""

    def loss_fn(student, batch):
        logits = _forward(student, batch)
        s, _, mask = shift_for_causal_lm(logits, batch["input_ids"], batch["response_mask"])
        kd = divergence(coarsen(s, batch["teacher_index"], temperature), batch["teacher_logp"], mask)
        return _with_lm(kd, logits, batch, lm_weight)

    return loss_fn


def freeze(model):
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def distill_kd(
    student,
    teacher,
    train_items,
    dev_items,
    cfg: dict,
    kd_cfg: dict | None,
    pad_id: int,
    log=None,
    **fit_kwargs,
):
    """Word-level KD on ground-truth responses: (1 − lm_weight)·D + lm_weight·LM, teacher frozen.

    ``kd_cfg``: ``objective`` (default ``fkl``), ``temperature`` (1.0), ``lm_weight`` (0.0), ``beta`` /
    ``alpha`` for ``jsd`` / ``sfkl``, ``srkl``, and ``teacher_top_k`` (None: a teacher forward every step;
    k: a :class:`TeacherCache` computed once). History gains ``kd_loss`` and ``lm_loss`` columns.
    """
    kd, divergence = resolve_kd_config(kd_cfg)
    check_shared_vocab(student, teacher)
    freeze(teacher)
    if kd["teacher_top_k"] is None:
        loss_fn = kd_loss_fn(teacher, divergence, float(kd["lm_weight"]))
        return fit(student, train_items, dev_items, cfg, pad_id, loss_fn, log, desc=f"kd[{kd['objective']}]",
                   **fit_kwargs)
    # cached teacher: one teacher pass over the training data, then no teacher forward in the loop
    temperature = float(kd["temperature"])
    hparams = {key: kd[key] for key in ("beta", "alpha") if kd.get(key) is not None}
    cache = TeacherCache(teacher, train_items, int(kd["teacher_top_k"]), temperature,
                         int(cfg.get("batch_size", 16)), pad_id, log, precision=cfg.get("precision", "fp32"))
    loss_fn = cached_kd_loss_fn(objectives.get_objective(kd["objective"], temperature=1.0, **hparams),
                                temperature, float(kd["lm_weight"]))
    return fit(student, train_items, dev_items, cfg, pad_id, loss_fn, log,
               desc=f"kd[{kd['objective']}, cached top-{cache.k}]",
               make_batch=lambda items: cache.attach(collate(items, pad_id), items), **fit_kwargs)


# --------------------------------------------------------------------------------- workflow entry points
def _train_cfg(cfg: dict) -> dict:
    """The ``train`` block, with the run seed as its default seed."""
    return {"seed": cfg["seed"], **cfg["train"]}


def save_trained(out_dir, model, tokenizer, history: pd.DataFrame | None = None) -> None:
    from kdprivacy import io, models

    models.save_model(model, tokenizer, out_dir)
    if history is not None:
        io.write_csv(history, Path(out_dir) / "train_log.csv")


def run_job(snakemake, script, log: logging.Logger, train: Callable, fingerprint_extra: Sequence = ()) -> None:
    """The body every training script shares (``pretrain_base``, ``train_teacher``, ``train_student``).

    With more than one GPU for the job (:func:`data_parallel_size`) it relaunches ``script`` as data-parallel
    ranks through ``torchrun``; otherwise (or inside a rank) it pins threads, seeds from ``params.cfg["seed"]``,
    opens the resume directory (``params.resume_dir``, default ``<output.dir>.resume``) fingerprinted by
    ``cfg``, the code version and ``fingerprint_extra``, calls ``train(cfg, resume) -> (model, tokenizer,
    history)``, and on the main process writes ``output.dir`` atomically (model, ``train_log.csv``,
    ``provenance.json``) and clears the resume directory.
    """
    from kdprivacy import io, provenance, runtime

    nproc = data_parallel_size(snakemake)
    if nproc > 1:
        launch_data_parallel(snakemake, script, nproc, log)
        return
    cfg, code = snakemake.params.cfg, snakemake.params.code
    runtime.set_threads(worker_threads(snakemake.threads))
    runtime.seed_everything(cfg["seed"])
    resume_dir = getattr(snakemake.params, "resume_dir", None) or checkpoint.resume_dir_for(snakemake.output.dir)
    resume = checkpoint.Resume(resume_dir, checkpoint.fingerprint(cfg, code, *fingerprint_extra))
    model, tokenizer, history = train(cfg, resume)
    if is_main_process():
        with io.atomic_dir(snakemake.output.dir) as tmp:
            save_trained(tmp, model, tokenizer, history)
            provenance.write(
                tmp / "provenance.json",
                params={"cfg": cfg, "code": code},
                inputs=dict(snakemake.input.items()),
                rule=snakemake.rule,
            )
        checkpoint.clear(resume_dir)
    finish_distributed()


def train_tokenizer_from_cfg(cfg: dict, manifest_path):
    from kdprivacy import models

    return models.train_tokenizer(pool_texts(manifest_path, cfg["pools"]), cfg["vocab_size"], cfg.get("min_frequency", 2))


def pretrain_from_cfg(
    cfg: dict, manifest_path, tokenizer_dir, log=None, resume: checkpoint.Resume | None = None, on_step=None
):
    """Build ``cfg.spec`` from scratch and train it on all tokens of ``cfg.pools`` (0 epochs = random init).
    The model trains on :func:`kdprivacy.models.default_device`; ``resume``, ``on_step``: see :func:`fit`."""
    from kdprivacy import models

    refuse_secret_pools(cfg["pools"], "base pretraining")
    tokenizer = models.load_tokenizer(str(tokenizer_dir))
    items = load_items(manifest_path, cfg["pools"], tokenizer, cfg["max_length"], cfg["max_prompt_length"])
    model = models.build_from_scratch(cfg["spec"], tokenizer, cfg["max_length"], cfg["seed"])
    model = model.to(models.default_device())
    model, history = sft(
        model,
        items,
        None,
        _train_cfg(cfg),
        tokenizer.pad_token_id,
        log,
        on="all",
        desc="pretrain",
        resume=resume,
        on_step=on_step,
    )
    return model, tokenizer, history


def load_trainable(ref: dict, lora: dict | None, seed: int, what: str):
    """``(model, tokenizer)`` to train: the model ref loaded with **float32** weights whatever its storage
    ``dtype`` (the master weights AdamW updates; ``train.precision`` sets the compute; the ref's own
    ``quantization`` is refused), wrapped for LoRA when ``lora`` is a block
    (:func:`kdprivacy.models.apply_lora`). QLoRA (``lora.quantization``): the base is loaded quantized
    (4-bit NF4 computing in bfloat16 on CUDA / float32 on CPU, or LLM.int8) and only the adapter trains;
    :func:`finish_trained` merges it into the base reloaded in full precision."""
    from kdprivacy import models

    from kdprivacy.config import Lora

    models.refuse_quantized(ref, what)
    lora = Lora.model_validate(lora) if lora is not None else None
    quantization = lora.quantization if lora is not None else None
    model, tokenizer = models.load_base({**ref, "dtype": "float32", "quantization": quantization},
                                        compute_dtype="auto" if quantization else None)
    return models.apply_lora(model, lora, seed=seed), tokenizer


def finish_trained(model, ref: dict):
    """The trained model as it is saved: a LoRA adapter merged (a QLoRA one into ``ref`` reloaded
    unquantized, :func:`kdprivacy.models.merge_lora`), then cast to ``ref``'s storage ``dtype`` (a bfloat16
    base gives a bfloat16 checkpoint; float32 refs are left untouched)."""
    from kdprivacy import models

    return models.to_dtype(models.merge_lora(model, base_ref=ref), ref.get("dtype"))


def train_teacher_from_cfg(
    cfg: dict, manifest_path, log=None, resume: checkpoint.Resume | None = None, on_step=None
):
    """SFT of ``cfg.base`` on the private pool (the members), dev pool for dev loss.

    ``cfg.lora`` (optional; None = full fine-tuning): LoRA block (:class:`kdprivacy.config.Lora`);
    the returned model is then merged (:func:`kdprivacy.models.merge_lora`). Training runs on float32 weights;
    the returned model is in the base ref's ``dtype`` (:func:`finish_trained`). ``resume``, ``on_step``: see
    :func:`fit`.
    """
    model, tokenizer = load_trainable(cfg["base"], cfg.get("lora"), int(cfg["seed"]), "the teacher base")
    encode = functools.partial(
        load_items, manifest_path, tokenizer=tokenizer, max_length=cfg["max_length"],
        max_prompt_length=cfg["max_prompt_length"],
    )
    train, dev = encode(["private"]), encode(["dev"])
    model, history = sft(
        model,
        train,
        dev,
        _train_cfg(cfg),
        tokenizer.pad_token_id,
        log,
        desc="teacher",
        resume=resume,
        on_step=on_step,
    )
    return finish_trained(model, cfg["base"]), tokenizer, history


STUDENT_METHODS = ("nokd", "kd", "seqkd", "imitkd", "gkd", "minillm", "distillm")


def train_student_from_cfg(
    cfg: dict,
    manifest_path,
    log=None,
    teacher_generations_path=None,
    resume: checkpoint.Resume | None = None,
    on_step=None,
):
    """A student trained with ``cfg["method"]`` (:mod:`kdprivacy.distillation`) on the public pool, dev pool
    for dev loss. Returns ``(model, tokenizer, history)``.

    ``cfg`` keys: ``base`` (model ref), ``teacher`` (model ref; None for ``nokd``), ``method``, ``train``,
    ``kd`` (objective/temperature/lm_weight/beta/alpha), ``generation`` (max_new_tokens, do_sample,
    temperature, top_p, top_k, batch_size), ``method_params`` (per method, see
    ``distillation.METHOD_PARAM_DEFAULTS``), ``seed``, ``max_length``, ``max_prompt_length``.
    ``teacher_generations_path``: the SeqKD artifact of ``scripts/generate_teacher.py`` (seqkd only).
    ``lora`` (optional; None = full fine-tuning): LoRA block; the returned student is merged, in the base
    ref's ``dtype`` (:func:`finish_trained`). The teacher ref may carry ``quantization``
    (``"8bit"``/``"4bit"``): the frozen teacher is loaded quantized.
    ``resume``: checkpoint/resume (:func:`fit`), including the method's own state; ``on_step``: :func:`fit`.

    Guarantee (asserted, pitfalls.md): the student reads public/dev examples only; every student-generated
    batch and every teacher generation has a **public** id.
    """
    from kdprivacy import distillation, models

    method = cfg["method"]
    if method not in STUDENT_METHODS:
        raise ValueError(f"unknown student method {method!r}; choose one of {list(STUDENT_METHODS)}")
    if (method == "seqkd") != (teacher_generations_path is not None):
        raise ValueError(
            "teacher generations are needed by seqkd and only by seqkd "
            f"(method {method!r}, generations {teacher_generations_path!r})"
        )
    model, tokenizer = load_trainable(
        cfg["base"], cfg.get("lora"), int(cfg.get("seed", 0)), "the student base"
    )
    manifest = read_manifest(manifest_path)
    pools = {"train": "public", "dev": "dev"}
    assert_student_pools(manifest, [], pools=pools.values())

    def encode(pool):
        return encode_frame(tokenizer, select_pools(manifest, [pool]), cfg["max_length"], cfg["max_prompt_length"])

    train, dev = encode(pools["train"]), encode(pools["dev"])
    assert_student_pools(manifest, [item.id for item in (*train, *dev)])
    generated_guard = pool_guard(manifest, [pools["train"]], f"{method} generated training data")
    teacher_generations = None
    if teacher_generations_path is not None:
        teacher_generations = distillation.read_generations(teacher_generations_path)
        pool_guard(manifest, [pools["train"]], "teacher generations")([item.id for item in teacher_generations])
    teacher = None
    needs_teacher = method not in distillation.TEACHER_FREE and not (
        method == "seqkd" and distillation.resolve_method_params("seqkd", cfg.get("method_params"))["loss"] == "ce"
    )
    if needs_teacher:
        if not cfg.get("teacher"):
            raise ValueError(f"method {method!r} needs a teacher")
        teacher, teacher_tokenizer = models.load_base(cfg["teacher"])
        models.assert_same_vocabulary(teacher_tokenizer, tokenizer)
    model, history = distillation.train_method(
        method,
        model,
        teacher,
        train,
        dev,
        cfg,
        tokenizer.pad_token_id,
        log,
        teacher_generations,
        eos_id=tokenizer.eos_token_id,
        guard=generated_guard,
        resume=resume,
        on_step=on_step,
    )
    return finish_trained(model, cfg["base"]), tokenizer, history
