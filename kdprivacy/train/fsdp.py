"""Fully sharded data parallelism (``train.parallel: fsdp``) for :func:`kdprivacy.train.loop.fit`: torch's
FSDP2 (``torch.distributed.fsdp.fully_shard``) on every transformer block, then on the whole model.

Design. Each rank loads the full model (as for DDP); :func:`shard` first broadcasts rank 0's parameters and
buffers (DDP's guarantee), then shards every parameter along dim 0 over the ranks: a rank keeps 1/world of
the weights, and so of the gradients and of AdamW's two moments (the optimizer is built on the shards). A
forward all-gathers a block's weights just before the block runs and frees them after it; the backward
gathers them again and reduce-scatters (averages) the gradients (on CUDA overlapped with the backward of the
next block; gloo on the CPU runs them in turn). The loop itself is unchanged: ``loss_fn`` gets the model,
whose forwards (any number per step, with or without gradients) go through the FSDP hooks, and each rank's
loss is share-weighted as for DDP.

Forwards whose number may differ between ranks -- decoding (a rank stops when its own rows hit EOS), dev
scoring of uneven shards, a KD method's sampling in ``make_batch`` -- run inside :func:`gathered`: the whole
model is unsharded once (one all-gather on every rank) and stays so until the context ends, so those
forwards need no collective. This holds the full weights (not gradients or optimizer state) on each
device while sampling; models whose weights alone do not fit one GPU need a sharded decoder (not built).

Checkpoints hold full, unsharded tensors (rank 0 writes them; every rank reads them): the weights of the
trainable parameters under their ordinary names, and the optimizer state from
``torch.distributed.checkpoint.state_dict.get_optimizer_state_dict(full_state_dict=True, cpu_offload=True)``
(keyed by parameter name, so not interchangeable with a DDP checkpoint: ``parallel`` is part of the
checkpoint's identity). At the end :func:`release` turns the model back into a plain, unsharded
``transformers`` model (full parameters, FSDP hooks removed, its own class again), so ``save_pretrained``,
LoRA merging and every later use see exactly what they see after DDP or one process.

Numerics: the element-wise AdamW step on a shard is the step on the full tensor; the gradient average and the
clipping norm (a sum of per-shard sums of squares) round differently from DDP's bucketed all-reduce, so an
FSDP run equals the DDP / one-process run to rounding, not bit for bit. Mixed precision: with
``train.precision: bf16`` on CUDA, FSDP's ``MixedPrecisionPolicy`` (bf16 weights in compute, float32 gradient
reduction) on top of the loop's autocast; on the CPU and for fp32 none.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch

from kdprivacy import checkpoint


def _fsdp():
    from torch.distributed import fsdp

    return fsdp


def blocks(model) -> list[torch.nn.Module]:
    """The transformer blocks to shard one by one: modules whose class is one of the model's
    ``_no_split_modules`` (``GPT2Block``, ``LlamaDecoderLayer``, ...; of the base model under a LoRA
    wrapper); none found -> the whole model is one unit."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    names = set(getattr(inner, "_no_split_modules", None) or ())
    return [m for m in model.modules() if any(c.__name__ in names for c in type(m).__mro__)]  # FSDP<cls> too


def shard(model, precision: str = "fp32") -> None:
    """Broadcast rank 0's parameters and buffers, then ``fully_shard`` each block and the model, in place."""
    import torch.distributed as dist

    fsdp = _fsdp()
    with torch.no_grad():
        for tensor in model.state_dict(keep_vars=True).values():
            dist.broadcast(tensor.data, src=0)
    device = next(model.parameters()).device
    kwargs = {}
    if precision == "bf16" and device.type == "cuda":
        kwargs["mp_policy"] = fsdp.MixedPrecisionPolicy(
            param_dtype=torch.bfloat16, reduce_dtype=torch.float32
        )
    for block in blocks(model):
        fsdp.fully_shard(block, **kwargs)
    fsdp.fully_shard(model, **kwargs)


def _units(model) -> list[torch.nn.Module]:
    fsdp = _fsdp()
    return [m for m in model.modules() if isinstance(m, fsdp.FSDPModule)]


@contextlib.contextmanager
def gathered(model):
    """The whole model unsharded for the duration: forwards inside need no collective (ranks may run
    different numbers of them); resharded at the end. Every rank must enter it together."""
    units = _units(model)
    for unit in units:
        unit.unshard()
        unit.set_reshard_after_forward(False, recurse=False)
    try:
        yield model
    finally:
        for unit in units:
            unit.set_reshard_after_forward(True, recurse=False)
            unit.reshard()


def _full(p: torch.Tensor) -> torch.Tensor:
    from torch.distributed.tensor import DTensor

    return p.full_tensor() if isinstance(p, DTensor) else p


def snapshot(params: Sequence[tuple[str, torch.nn.Parameter]]) -> dict[str, torch.Tensor]:
    """Full (unsharded) copies of ``params`` on the CPU, on every rank (a collective)."""
    with torch.no_grad():
        return {name: _full(p.detach()).cpu().clone() for name, p in params}


def restore(params: Sequence[tuple[str, torch.nn.Parameter]], state: dict[str, torch.Tensor]) -> None:
    """Copy full tensors ``state`` (the same on every rank) into the sharded ``params``."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    checkpoint.check_parameters((name for name, _ in params), state)
    with torch.no_grad():
        for name, p in params:
            full = state[name].to(device=p.device, dtype=p.dtype)
            if isinstance(p, DTensor):
                p.copy_(distribute_tensor(full, p.device_mesh, p.placements))
            else:
                p.copy_(full)


def _options(**kw):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kw)


def optimizer_state(model, optimizer) -> dict:
    """The optimizer's full state keyed by parameter name, on rank 0's CPU (other ranks: empty)."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=_options(cpu_offload=True))


def load_optimizer_state(model, optimizer, state: dict) -> None:
    """Load a full state from :func:`optimizer_state` (read by every rank) into the sharded optimizer."""
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    set_optimizer_state_dict(model, optimizer, state, options=_options())


def release(model):
    """``model`` unsharded for good, in place: every sharded parameter replaced by a plain full one (tied
    weights stay tied), the FSDP forward hooks removed and each module's own class restored. A collective."""
    from torch.distributed.tensor import DTensor

    fsdp = _fsdp()
    units = _units(model)
    full: dict[int, torch.nn.Parameter] = {}
    with torch.no_grad():
        for module in model.modules():
            for p in module._parameters.values():
                if isinstance(p, DTensor) and id(p) not in full:
                    whole = p.full_tensor().detach().clone()
                    full[id(p)] = torch.nn.Parameter(whole, requires_grad=p.requires_grad)
    for module in model.modules():
        for name, p in list(module._parameters.items()):
            if p is not None and id(p) in full:
                module._parameters[name] = full[id(p)]
    for unit in units:
        state = fsdp.fully_shard.state(unit)
        handles = (state._pre_forward_hook_handle, state._post_forward_hook_handle)
        for handle in {id(h): h for h in handles}.values():  # one handle for a group of modules
            handle.remove()
        unit.__class__ = next(c for c in type(unit).__bases__ if not issubclass(c, fsdp.FSDPModule))
    return model
