"""A word-level KD loss that never materialises ``[B, T, V]`` logits: the LM head, the divergence and their
gradient, chunk by chunk, at the response target positions only.

The plain loss (:func:`kdprivacy.kd.teacher.kd_loss_fn` without this) runs the student's and the teacher's
full forward: logits at every position of the batch (prompt and padding included), then two full
log-softmaxes and the divergence over ``[B, T, V]``, all kept for the backward pass. With a 50k vocabulary
that is most of a small model's step. Here instead:

1. the student's and the teacher's *decoder* (``model.get_decoder()``: the blocks and the final norm) run
   once; their last hidden states are gathered at the response target positions (``N`` of ``B * T``);
2. :class:`FusedHeadDivergence` then walks ``N`` in chunks of ``chunk`` positions: LM head of both models
   (the student's head module called on leaf copies of its weight and bias, so its hooks and autocast apply), ``(1 - w) * D(teacher || student) + w * NLL`` summed over the chunk, and --
   right there, in the forward -- its gradient with respect to the student's hidden states, head weight and
   bias (``torch.autograd.grad`` on the chunk). Only the gradients are kept; the backward pass multiplies
   them by the incoming scalar. Peak extra memory is a few ``[chunk, V]`` tensors.

For forward KL and reverse KL (``fkl``, ``rkl`` and ``jsd`` at beta 0 or 1, any temperature) the chunk's
logit gradient is written in closed form (:func:`closed_form`: ``(q - p) / T`` and ``q * (log q - log p -
KL) / T``, plus ``q1 - onehot`` for the LM term) and only the LM head is differentiated by autograd (with
that gradient as its ``grad_outputs``): the divergence's elementwise graph over ``[chunk, V]`` is never
built (0.14 s instead of 0.33 s for one [333, 50257] chunk on 2 cores, forward KL with its LM statistic). The other objectives go through autograd.

The loss and its gradients are the plain path's up to float summation order (tested on GPT-2, OPT and LLaMA
for every objective, temperature and LM weight). It applies only where the model's logits are exactly
``get_output_embeddings()(get_decoder()(...).last_hidden_state)``: :func:`head_chain` checks that once per
model on a short input (a model with a logit soft-cap, a scale or any other step after the head fails the
check and keeps the plain path; so does an FSDP-sharded model, whose root unit gathers its parameters only in
its own forward). The student's head must be a plain ``nn.Linear``; the teacher's may be any
module (an 8-bit head, a LoRA-wrapped model) since no gradient flows into it.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import torch
import torch.nn.functional as F

#: elements of one ``[chunk, V]`` float32 logits block: ``chunk = max(16, CHUNK_ELEMENTS // V)`` positions
#: (64 MB; about 330 positions at a 50k vocabulary, 4096 at 4k)
CHUNK_ELEMENTS = 2**24

_CHAINS: "weakref.WeakKeyDictionary[torch.nn.Module, bool]" = weakref.WeakKeyDictionary()


def chunk_size(vocab: int) -> int:
    return max(16, CHUNK_ELEMENTS // max(int(vocab), 1))


def _parts(model):
    get_decoder = getattr(model, "get_decoder", None)
    get_head = getattr(model, "get_output_embeddings", None)
    if get_decoder is None or get_head is None:
        return None
    try:
        decoder, head = get_decoder(), get_head()
    except Exception:  # noqa: BLE001 - a model without these parts keeps the plain path
        return None
    if decoder is None or head is None or decoder is model:
        return None
    return decoder, head


def head_chain(model, trainable: bool) -> tuple[torch.nn.Module, torch.nn.Module] | None:
    """``(decoder, head)`` when ``model``'s logits are ``head(decoder(...).last_hidden_state)`` (checked once
    per model -- one forward of the model and one of its decoder, in eval mode and fp32 on one 8-token input,
    to 1e-4 -- else None. ``trainable``: the head must be a plain
    ``nn.Linear`` (its weight and bias get gradients from :class:`FusedHeadDivergence`)."""
    if _is_sharded(model):  # FSDP: the root unit's hooks (gather embeddings and head) run only in model(...)
        return None
    parts = _parts(model)
    if parts is None:
        return None
    decoder, head = parts
    if trainable and type(head) is not torch.nn.Linear:
        return None
    if model not in _CHAINS:
        _CHAINS[model] = _same_logits(model, decoder, head)
    return parts if _CHAINS[model] else None


def _is_sharded(model) -> bool:
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # pragma: no cover - torch without distributed
        return False
    return isinstance(model, FSDPModule)


def _same_logits(model, decoder, head) -> bool:
    from kdprivacy.train.losses import model_device

    vocab = head.weight.shape[0] if hasattr(head, "weight") else 2
    ids = (torch.arange(8) * 7919 % max(vocab, 1)).unsqueeze(0).to(model_device(model))
    mask = torch.ones_like(ids)
    was_training = model.training
    model.eval()
    try:  # full precision, whatever autocast the caller runs under: an exact comparison
        with torch.no_grad(), torch.autocast(ids.device.type, enabled=False):
            full = model(input_ids=ids, attention_mask=mask, use_cache=False).logits.float()
            mine = head(decoder(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state).float()
    except Exception:  # noqa: BLE001 - any failure: not a plain chain
        return False
    finally:
        model.train(was_training)
    return mine.shape == full.shape and bool(torch.allclose(mine, full, atol=1e-4, rtol=1e-4))


def response_hidden(decoder, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The decoder's last hidden states at the response target positions ``[N, H]`` (row-major order of the
    shifted frame: position ``t`` predicts token ``t + 1``) and those targets ``[N]``."""
    device = next(decoder.parameters()).device
    out = decoder(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                  use_cache=False).last_hidden_state
    keep = batch["response_mask"][:, 1:].to(out.device).bool()
    return out[:, :-1][keep], batch["input_ids"][:, 1:].to(out.device)[keep]


def _floored_log_softmax(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``kdprivacy.kd.objectives._log_probs`` without a graph (the same floor for ``-inf`` logits)."""
    logp = F.log_softmax(logits if temperature == 1.0 else logits / temperature, dim=-1)
    return logp.clamp_min_(torch.finfo(logp.dtype).min / 4)


def closed_form(divergence: Callable) -> Callable | None:
    """``fn(logits, teacher_logits, targets, lm_weight) -> (kd_sum, lm_sum, grad_logits)`` for a divergence
    whose gradient with respect to the student's logits has a closed form (forward and reverse KL at any
    temperature), else None. ``kd_sum``/``lm_sum``: the divergence and the NLL summed over the chunk's
    positions; ``grad_logits``: the gradient of ``(1 - w) * kd_sum + w * lm_sum`` (``lm_sum`` alone at
    ``w = 0`` carries no gradient, as in the plain path)."""
    name, hparams = getattr(divergence, "spec", (None, {}))
    beta = hparams.get("beta")
    if name == "jsd" and beta in (0.0, 1.0):
        name = "fkl" if beta == 0.0 else "rkl"
    if name not in ("fkl", "rkl") or set(hparams) - {"temperature", "beta"}:
        return None
    temperature = float(hparams.get("temperature", 1.0))
    reverse = name == "rkl"

    def value_and_grad(logits, teacher_logits, targets, lm_weight: float):
        with torch.no_grad():
            log_q = _floored_log_softmax(logits, temperature)
            log_p = _floored_log_softmax(teacher_logits, temperature)
            if reverse:  # KL(q || p); d/ds_j = q_j (log q_j - log p_j - KL) / T
                q = log_q.exp()
                ratio = log_q - log_p
                kd = (q * ratio).sum(-1)
                grad = ratio.sub_(kd.unsqueeze(-1)).mul_(q)
            else:  # KL(p || q); d/ds_j = (q_j - p_j) / T
                p = log_p.exp()
                kd = (p * (log_p - log_q)).sum(-1)
                grad = log_q.exp().sub_(p)
            if temperature != 1.0:
                grad.div_(temperature)
            log_q1 = log_q if temperature == 1.0 else _floored_log_softmax(logits, 1.0)
            lm = -log_q1.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
            if lm_weight > 0:  # d NLL / ds = softmax(s) - onehot(target)
                lm_grad = log_q1.exp()
                lm_grad[torch.arange(len(targets), device=targets.device), targets] -= 1.0
                grad.mul_(1.0 - lm_weight).add_(lm_grad, alpha=lm_weight)
        return kd.sum(), lm.sum(), grad

    return value_and_grad


class FusedHeadDivergence(torch.autograd.Function):
    """``((1 - w) * sum D + w * sum NLL) / N`` over ``N`` positions, computed in chunks with its gradient
    (see the module docstring). ``teacher_logits(lo, hi)`` gives the teacher's ``[hi - lo, V]`` logits;
    ``stats`` (a dict) receives ``kd_loss`` and ``lm_loss`` (each a mean per position)."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, head, teacher_logits: Callable, divergence: Callable,
                lm_weight: float, chunk: int, stats: dict, needs_grad: bool):
        n = hidden.shape[0]
        w_leaf = weight.detach().requires_grad_(needs_grad and weight.requires_grad)
        b_leaf = None if bias is None else bias.detach().requires_grad_(needs_grad and bias.requires_grad)
        wants = [needs_grad and hidden.requires_grad, w_leaf.requires_grad,
                 b_leaf is not None and b_leaf.requires_grad]
        grad_h = torch.zeros_like(hidden) if wants[0] else None
        grad_w = torch.zeros_like(weight) if wants[1] else None
        grad_b = torch.zeros_like(bias) if wants[2] else None
        kd_sum = lm_sum = 0.0
        closed = closed_form(divergence)
        with torch.enable_grad():
            for lo in range(0, n, chunk):
                hi = min(n, lo + chunk)
                h = hidden[lo:hi].detach().requires_grad_(wants[0])
                # the head module itself, with leaf copies of its parameters (its hooks and autocast apply)
                params = {"weight": w_leaf} if b_leaf is None else {"weight": w_leaf, "bias": b_leaf}
                logits = torch.func.functional_call(head, params, (h,)).float()
                t = teacher_logits(lo, hi).float()
                inputs = [x for x, want in zip((h, w_leaf, b_leaf), wants) if want]
                if closed is not None:
                    kd, lm, grad_logits = closed(logits.detach(), t, targets[lo:hi], lm_weight)
                    kd_sum += float(kd)
                    lm_sum += float(lm)
                    if inputs:
                        grads = iter(torch.autograd.grad(logits, inputs, grad_outputs=grad_logits))
                        _accumulate(grads, wants, lo, hi, grad_h, grad_w, grad_b)
                    continue
                ones = torch.ones(hi - lo, device=logits.device)
                kd = divergence(logits, t, ones) * (hi - lo)
                with torch.set_grad_enabled(lm_weight > 0):
                    lm = F.cross_entropy(logits, targets[lo:hi], reduction="sum")
                loss = (1.0 - lm_weight) * kd + lm_weight * lm if lm_weight > 0 else kd
                kd_sum += float(kd.detach())
                lm_sum += float(lm.detach())
                if inputs and loss.requires_grad:
                    _accumulate(iter(torch.autograd.grad(loss, inputs)), wants, lo, hi, grad_h, grad_w, grad_b)
        scale = 1.0 / max(n, 1)
        stats["kd_loss"], stats["lm_loss"] = kd_sum * scale, lm_sum * scale
        ctx.save_for_backward(*(g * scale if g is not None else None for g in (grad_h, grad_w, grad_b)))
        total = (1.0 - lm_weight) * kd_sum + lm_weight * lm_sum if lm_weight > 0 else kd_sum
        return hidden.new_tensor(total * scale, dtype=torch.float32)

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w, grad_b = ctx.saved_tensors
        scale = lambda g: None if g is None else g * grad_out.to(g.dtype)  # noqa: E731
        return scale(grad_h), scale(grad_w), scale(grad_b), None, None, None, None, None, None, None, None


def _accumulate(grads, wants, lo, hi, grad_h, grad_w, grad_b) -> None:
    """One chunk's gradients (in ``(hidden, weight, bias)`` order, the wanted ones only) into the totals."""
    if wants[0]:
        grad_h[lo:hi] = next(grads)
    if wants[1]:
        grad_w += next(grads)
    if wants[2]:
        grad_b += next(grads)


def fused_kd_loss(student_chain, teacher, teacher_chain, divergence: Callable, lm_weight: float,
                  batch: dict) -> tuple[torch.Tensor, dict]:
    """``(1 - w)·D(teacher ‖ student) + w·LM`` on response positions through :class:`FusedHeadDivergence`
    (the same value and gradients as :func:`kdprivacy.kd.teacher.kd_loss_fn`'s plain path)."""
    from kdprivacy.train.losses import forward_logits

    decoder, head = student_chain
    hidden, targets = response_hidden(decoder, batch)
    with torch.no_grad():
        if teacher_chain is not None:
            t_hidden, _ = response_hidden(teacher_chain[0], batch)
            t_head = teacher_chain[1]

            def teacher_logits(lo, hi):
                with torch.no_grad():
                    return t_head(t_hidden[lo:hi].to(next(t_head.parameters()).device)).to(hidden.device)
        else:
            full = forward_logits(teacher, batch)[:, :-1]
            gathered = full[batch["response_mask"][:, 1:].to(full.device).bool()].to(hidden.device)
            del full

            def teacher_logits(lo, hi):
                return gathered[lo:hi]
    vocab = head.weight.shape[0]
    stats: dict = {}
    needs_grad = torch.is_grad_enabled()
    if hidden.shape[0] == 0:  # no response target: zero loss, still connected to the graph
        return hidden.sum() * 0.0 + head.weight.sum() * 0.0, {"kd_loss": 0.0, "lm_loss": 0.0}
    loss = FusedHeadDivergence.apply(hidden, head.weight, head.bias, targets, head, teacher_logits, divergence,
                                     float(lm_weight), chunk_size(vocab), stats, needs_grad)
    return loss, stats
