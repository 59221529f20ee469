"""MoPe (Li et al., 2023) and per-block perturbation: seeded Gaussian weight noise, no reload, no copy.

The authors' code reloaded the model from disk for each of the K perturbations (and L x K times for the
per-block analysis). Here :func:`perturbed` makes the model compute with ``w + N(0, sigma^2)`` for the
chosen parameters **without modifying them and without a copy of the model**: a forward pre-hook on every
module that owns a chosen parameter swaps in ``w + noise`` for the duration of that module's forward (the
noise regenerated from its seed), and a forward hook swaps the original back. The stored weights are never
written, so they are bit-identical afterwards by construction -- also when the block raises -- and the
extra memory is one module's perturbed weights at a time (not one model, as a backup for an in-place add
would be: ``(w + e) - e != w`` in floating point, so an in-place add needs a copy to restore exactly). The
price is regenerating each module's noise on every forward call (a few percent of a pass; less on GPU).

Noise: the ``i``-th chosen parameter (``named_parameters()`` order; shared/tied tensors once) draws float32
``N(0, 1)`` from its own ``torch.Generator`` on its device seeded by ``(seed, i)`` (:func:`parameter_seed`),
scaled by ``sigma`` and added in the parameter's dtype. The same (model, seed, params, device) gives the same
noise, independent of batch size and of the order modules run in; a tied tensor (GPT-2's ``lm_head`` and
``wte``) gets the same noise wherever it is used; and blocks of one architecture get the same draws
(common random numbers: differences between blocks are not differences between noise draws).
:func:`add_noise` writes that very noise in place (for a throw-away copy: the reload baseline and the
float64 reference in the tests). Only
floating-point parameters are perturbed (quantized integer weights are skipped); buffers are never touched.
A chosen parameter that no module's forward reads (an unused one, or one read outside its module's
forward) cannot be perturbed this way: :func:`perturbed` reports those after the block (warning).

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

from kdprivacy.mia import scoring
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


def parameter_seed(seed: int, position: int) -> int:
    """The generator seed of the noise of the ``position``-th chosen parameter under run seed ``seed``."""
    return int(np.random.SeedSequence([int(seed), int(position)]).generate_state(1, dtype=np.uint64)[0] >> 1)


def _noised(position: int, p: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    """``p + sigma * N(0, 1)`` (a new tensor, ``p``'s dtype) with the noise of :func:`parameter_seed`."""
    gen = torch.Generator(device=p.device)
    gen.manual_seed(parameter_seed(seed, position))
    noise = torch.randn(p.shape, generator=gen, device=p.device, dtype=torch.float32)
    return p.detach() + (noise * sigma).to(p.dtype)


def _check_sigma(sigma: float) -> None:
    if not sigma >= 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")


def add_noise(model: torch.nn.Module, sigma: float, seed: int, params: Iterable[str] | None = None) -> None:
    """Write the noise of :func:`perturbed` into ``model``'s chosen parameters, in place, for good (no
    restore): for a throw-away copy."""
    _check_sigma(sigma)
    with torch.no_grad():
        for position, (_, p) in enumerate(_select(model, params)):
            p.copy_(_noised(position, p, sigma, seed))


@contextlib.contextmanager
def perturbed(
    model: torch.nn.Module,
    sigma: float,
    seed: int,
    params: Iterable[str] | None = None,
) -> Iterator[torch.nn.Module]:
    """Within the block, ``model`` computes with ``w + N(0, sigma^2)`` for the chosen parameters; the stored
    weights are never modified (see the module docstring: hooks, noise, memory).

    ``params``: parameter names (as in ``model.named_parameters()``; e.g. :func:`block_params`), default
    every floating-point parameter.
    """
    _check_sigma(sigma)
    selected = _select(model, params)
    chosen = {id(p): name for name, p in selected}
    position = {id(p): i for i, (_, p) in enumerate(selected)}
    used: set[str] = set()
    swapped: dict[int, tuple[torch.nn.Module, dict[str, torch.nn.Parameter]]] = {}
    handles = []

    def swap_in(module, _args):
        originals = {}
        for attr, p in module._parameters.items():
            name = chosen.get(id(p)) if p is not None else None
            if name is not None:
                originals[attr] = p
                with torch.no_grad():
                    module._parameters[attr] = _noised(position[id(p)], p, sigma, seed)
                used.add(name)
        swapped[id(module)] = (module, originals)

    def swap_out(module, *_):
        _, originals = swapped.pop(id(module), (module, {}))
        module._parameters.update(originals)

    try:
        for module in model.modules():
            if any(p is not None and id(p) in chosen for p in module._parameters.values()):
                handles.append(module.register_forward_pre_hook(swap_in))
                handles.append(module.register_forward_hook(swap_out, always_call=True))
        yield model
    finally:
        for handle in handles:
            handle.remove()
        for module, originals in list(swapped.values()):  # a forward interrupted between the two hooks
            module._parameters.update(originals)
        swapped.clear()
    unused = sorted(set(chosen.values()) - used)
    if used and unused:
        log.warning("%d chosen parameter(s) were never read by their module's forward and stayed "
                    "unperturbed, e.g. %s", len(unused), unused[:3])


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
    precision: str = "fp32",
) -> pd.DataFrame:
    """``id, n_tokens, nll, mope``: ``mope = mean_k (NLL_perturbed_k - NLL)`` per item (higher = member).

    ``nll`` is the unperturbed mean response-token NLL; perturbation ``k`` uses :func:`perturbation_seed`
    ``(seed, k)``. ``params`` restricts the noise (e.g. one block); default all floating-point weights.
    ``precision``: compute precision of every pass (:func:`kdprivacy.mia.scoring.score_examples`); the noise is
    added to the stored weights before autocast rounds them for the matmuls.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    params = None if params is None else list(params)
    scoring_pass = scoring.ScoringPass(batch_size, pad_id, position_chunk, precision=precision)
    base = scoring.mean_nll(model, items, scoring_pass)
    total = np.zeros(len(items), dtype=np.float64)
    for index in range(k):
        with perturbed(model, sigma, perturbation_seed(seed, index), params):
            nll = scoring.mean_nll(model, items, scoring_pass)
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
