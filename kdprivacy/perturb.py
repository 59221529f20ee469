"""MoPe (Li et al., 2023) and per-block perturbation: seeded Gaussian weight noise, applied in place.

The authors' code reloaded the model from disk for each of the K perturbations (and L x K times for the
per-block analysis). Here :func:`perturbed` adds seeded noise ``N(0, sigma^2)`` to the chosen parameters in
place and restores them **bit-identically** on exit -- also when the block raises. Restoring by subtracting
the regenerated noise is *not* bit-exact in floating point (``(w + e) - e != w`` in general), so the
original values of the perturbed parameters are copied first (to ``backup_device``, the CPU by default) and
copied back. Memory cost: one copy of the perturbed parameters only (the whole model for whole-model MoPe,
one decoder block for per-block MoPe), in their own dtype; no reload from disk.

Noise: parameter by parameter in ``named_parameters()`` order (shared/tied tensors once), drawn in float32
from a ``torch.Generator`` on the parameter's device seeded with ``seed``, then added in the parameter's
dtype. The same (model, seed, params, device) gives the same noise. Only floating-point parameters are
perturbed (quantized integer weights are skipped); buffers are never touched.

MoPe score (higher = member): ``mope(x) = (1/K) sum_k [NLL_{theta + eps_k}(x) - NLL_theta(x)]`` over the
response tokens (mean token NLL, as every other attack). The published MoPe statistic is this increase of
the loss under perturbation; members sit in sharper minima of the loss, so their NLL rises more and the
score is larger -- no sign flip.

Blocks: :func:`find_blocks` finds the repeated decoder layers generically -- the ``nn.ModuleList`` holding
the most parameters among those whose children all share one class (GPT-2 ``transformer.h``, OPT
``model.decoder.layers``, LLaMA/Mistral/Qwen ``model.layers``, ...); choosing by parameter count rather
than length keeps a mixture-of-experts list inside one layer from winning. No per-family table.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch

from kdprivacy import scoring
from kdprivacy.encoding import Encoded

log = logging.getLogger(__name__)


def perturbation_seed(seed: int, k: int) -> int:
    """The generator seed of perturbation ``k`` of a run seeded ``seed`` (independent streams per k)."""
    return int(np.random.SeedSequence([int(seed), int(k)]).generate_state(1, dtype=np.uint64)[0] >> 1)


def _select(model: torch.nn.Module, params: Iterable[str] | None) -> list[tuple[str, torch.nn.Parameter]]:
    named = dict(model.named_parameters())  # shared tensors appear once
    if params is None:
        chosen = list(named.items())
    else:
        names = list(params)
        if len(set(names)) != len(names):
            raise ValueError("a parameter is named twice")
        unknown = [n for n in names if n not in named]
        if unknown:
            raise ValueError(f"unknown parameter name(s) {unknown[:5]} (of {len(unknown)})")
        chosen = [(n, named[n]) for n in names]
    chosen = [(n, p) for n, p in chosen if p.is_floating_point()]
    if not chosen:
        raise ValueError("no floating-point parameter to perturb")
    return chosen


@contextlib.contextmanager
def perturbed(
    model: torch.nn.Module,
    sigma: float,
    seed: int,
    params: Iterable[str] | None = None,
    backup_device: str | torch.device = "cpu",
) -> Iterator[torch.nn.Module]:
    """Within the block, ``model``'s chosen parameters are ``w + N(0, sigma^2)``; restored bit-identically.

    ``params``: parameter names (as in ``model.named_parameters()``; e.g. :func:`block_params`), default
    every floating-point parameter. See the module docstring for noise and memory.
    """
    if not sigma >= 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    chosen = _select(model, params)
    backups: list[tuple[torch.nn.Parameter, torch.Tensor]] = []
    try:
        with torch.no_grad():
            for _, p in chosen:
                backups.append((p, p.detach().to(backup_device, copy=True)))
            generators: dict[torch.device, torch.Generator] = {}
            for _, p in chosen:
                gen = generators.get(p.device)
                if gen is None:
                    gen = torch.Generator(device=p.device)
                    gen.manual_seed(int(seed))
                    generators[p.device] = gen
                noise = torch.randn(p.shape, generator=gen, device=p.device, dtype=torch.float32)
                p.add_((noise * sigma).to(p.dtype))
        yield model
    finally:
        with torch.no_grad():
            for p, saved in backups:
                p.copy_(saved)


def mope_scores(
    model: torch.nn.Module,
    items: Sequence[Encoded],
    k: int,
    sigma: float,
    seed: int,
    batch_size: int,
    pad_id: int,
    params: Iterable[str] | None = None,
    position_chunk: int = 512,
) -> pd.DataFrame:
    """``id, n_tokens, nll, mope``: ``mope = mean_k (NLL_perturbed_k - NLL)`` per item (higher = member).

    ``nll`` is the unperturbed mean response-token NLL; perturbation ``k`` uses :func:`perturbation_seed`
    ``(seed, k)``. ``params`` restricts the noise (e.g. one block); default all floating-point weights.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    params = None if params is None else list(params)
    base = scoring.mean_nll(model, items, batch_size, pad_id, position_chunk)
    total = np.zeros(len(items), dtype=np.float64)
    for index in range(k):
        with perturbed(model, sigma, perturbation_seed(seed, index), params):
            nll = scoring.mean_nll(model, items, batch_size, pad_id, position_chunk)
        total += nll - base
        log.info(
            "MoPe perturbation %d/%d: mean NLL increase %.5g", index + 1, k, float(np.nanmean(nll - base))
        )
    # scored positions: every response token except one at sequence position 0 (nothing predicts it)
    n_tokens = [
        len(item.response_ids) - (1 if not item.prompt_ids and item.response_ids else 0) for item in items
    ]
    frame = pd.DataFrame({"id": [item.id for item in items], "nll": base, "mope": total / k})
    frame.insert(1, "n_tokens", np.asarray(n_tokens, dtype=np.int64))
    return frame


def _children_share_class(module_list: torch.nn.ModuleList) -> bool:
    return len(module_list) > 0 and len({type(child) for child in module_list}) == 1


def find_blocks(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """``[(qualified name, module), ...]`` of the repeated decoder layers (see the module docstring)."""
    best, best_key = None, None
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.ModuleList) or not _children_share_class(module):
            continue
        n_params = sum(p.numel() for p in module.parameters())
        # most parameters, then longest, then shallowest (first found) name
        key = (n_params, len(module), -name.count("."))
        if best_key is None or key > best_key:
            best, best_key = name, key
    if best is None:
        raise ValueError(f"{type(model).__name__}: no nn.ModuleList of same-class blocks found")
    module_list = model.get_submodule(best)
    return [(f"{best}.{i}", child) for i, child in enumerate(module_list)]


def block_params(model: torch.nn.Module, index: int) -> list[str]:
    """Full names (as in ``model.named_parameters()``) of block ``index``'s parameters (negative ok)."""
    blocks = find_blocks(model)
    if not -len(blocks) <= index < len(blocks):
        raise IndexError(f"block {index} out of range: the model has {len(blocks)} blocks")
    prefix = blocks[index][0] + "."
    names = [n for n, _ in model.named_parameters() if n.startswith(prefix)]
    if not names:
        raise ValueError(f"block {blocks[index][0]} has no (unshared) parameters")
    return names
