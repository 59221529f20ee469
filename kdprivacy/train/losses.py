"""Language-model losses on response tokens (prompt tokens are context) or all tokens (pretraining), and the
forward/device helpers every loss and KD method shares.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from kdprivacy.encoding import Encoded, collate, length_sorted_batches, shift_for_causal_lm

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


def forward_logits(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    device = model_device(model)
    return model(
        input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device), use_cache=False
    ).logits


def lm_loss(model, batch: dict[str, torch.Tensor], on: str = "response") -> tuple[torch.Tensor, dict]:
    """Mean cross-entropy over response tokens (``on="response"``) or all non-pad tokens (``"all"``)."""
    mask = _target_mask(batch, on)
    total, count = token_nll(forward_logits(model, batch), batch["input_ids"], mask)
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
            s, n = token_nll(forward_logits(model, batch), batch["input_ids"], _target_mask(batch, on))
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
