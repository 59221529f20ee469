"""Data parallelism of the training loop: one process per GPU (``torchrun``), each step's loss run through
``DistributedDataParallel``, and the relaunch of a training script as data-parallel ranks.
"""

from __future__ import annotations

import functools
import logging
import os
import pickle
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from kdprivacy import checkpoint

MODES = ("ddp", "fsdp")  # train.parallel


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

    ``mode="fsdp"`` (``train.parallel``): the same sharding of batches, weights, seeds and checkpoint flow, but
    the model is sharded with FSDP2 instead of replicated (:mod:`kdprivacy.train.fsdp`).
    """

    BUCKET_MB = 25  # DDP's default bucket size

    def __init__(self, mode: str = "ddp", precision: str = "fp32"):
        if mode not in MODES:
            raise ValueError(f"train.parallel must be one of {list(MODES)}, got {mode!r}")
        if mode == "fsdp" and precision == "fp16":
            raise ValueError("train.parallel fsdp with train.precision fp16 is not supported (the dynamic "
                             "loss scale is not checked on sharded gradients): use bf16 or fp32")
        self.mode, self.precision = mode, precision
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if self.world > 1:
            init_distributed()

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def sharded(self) -> bool:
        """FSDP (``train.parallel: fsdp``) over more than one process: see :mod:`kdprivacy.train.fsdp`."""
        return self.active and getattr(self, "mode", "ddp") == "fsdp"

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
        if self.sharded:
            from kdprivacy.train import fsdp

            fsdp.shard(model, self.precision)
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
        if not self.active or not params or self.sharded:  # FSDP: one copy, sharded (nothing to compare)
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


LAUNCHER = Path(__file__).resolve().parents[2] / "scripts" / "launch.py"


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
