"""Per-block probes from one forward pass: the logit lens and a linear membership probe at every block.

**One pass, every block.** :func:`hidden_state_pass` runs the model once per batch with a forward hook on
every decoder block (:func:`kdprivacy.mia.perturb.find_blocks`: GPT-2, OPT, LLaMA and any HF decoder whose
layers sit in one ``nn.ModuleList``). The hook reads the block's output hidden state ``h_l`` ``[B, T, d]``
and reduces it at once -- to the logit-lens token statistics of the response tokens and to the pooled
response state -- so the memory held is one block's activations of one batch plus ``[n_examples, d]`` per
block for the probe; never ``[n_examples, T, d]``, and never all blocks' activations at once.

**Logit lens** (nostalgebraist 2020; Belrose et al. 2023 without the tuned translators): the model's own
output path applied to ``h_l``. That path is found generically (:func:`output_path`): the modules that run,
in order, between the end of the last block and the LM head (``model.get_output_embeddings()``) -- GPT-2
``ln_f``; OPT ``final_layer_norm`` (and ``project_out`` where the model has one); LLaMA ``norm`` -- followed
by the LM head, chunked over response positions as the scorer (:mod:`kdprivacy.mia.scoring`). The first batch
checks that the path applied to the last block's output reproduces the LM head's input (a model whose
output path is not a chain of modules, e.g. a functional soft-cap, is refused by name rather than scored
wrongly), so the lens at the last block *is* the model's own next-token distribution: its loss score equals
the ordinary loss attack. At each block the loss attack (``-`` mean response-token NLL) and Min-K%++
(:func:`kdprivacy.mia.attacks.min_k_pp_score`, with ``attacks.min_k``) are scored from the lens distribution.

**Linear membership probe** (:func:`cv_probe`): an L2-regularised logistic regression on each block's pooled
hidden state (mean of ``h_l`` over the response tokens), members vs non-members, with stratified ``folds``-fold
cross-validation: each example's score is the decision value of the probe fitted on the *other* folds
(standardised with the training folds' mean and spread); a fold's labels never reach its own scores. This is
a white-box attacker that *knows labelled members*: an upper bound on what the block's representation
reveals, not a black-box attack; the tables name it so (``access``). Optionally the population examples
(``evaluation.population``, neither members nor non-members) join every training fold as extra negatives
(never scored). The objective is scikit-learn's (``0.5 |w|^2 + C sum_i s_i log(1 + exp(-t_i (w.x_i + b)))``,
balanced class weights ``s_i``, unpenalised intercept), minimised with L-BFGS.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from scipy import optimize, special

from kdprivacy import encoding, models
from kdprivacy.encoding import Encoded
from kdprivacy.mia import attacks, perturb, scoring

log = logging.getLogger(__name__)

LENS_SIGNALS = ("lens_loss", "lens_min_k_pp")


def _leaves_outside(model: torch.nn.Module, blocks) -> list[torch.nn.Module]:
    inside = {id(m) for _, block in blocks for m in block.modules()}
    return [m for m in model.modules() if id(m) not in inside and next(m.children(), None) is None]


def output_path(model: torch.nn.Module, item: Encoded, pad_id: int) -> list[torch.nn.Module]:
    """The modules between the last decoder block and the LM head, in call order (module docstring), found
    with one forward pass of ``item``; the head itself is not included."""
    blocks = perturb.find_blocks(model)
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if not isinstance(head, torch.nn.Module):
        raise ValueError(f"{type(model).__name__}: no LM head module (get_output_embeddings): no logit lens")
    state = {"after": False, "done": False}
    called: list[torch.nn.Module] = []

    def last_done(*_):
        state["after"] = True

    def leaf_called(module, _args):
        if module is head:
            state["done"] = True
        elif state["after"] and not state["done"]:
            called.append(module)

    handles = [blocks[-1][1].register_forward_hook(last_done)]
    handles += [m.register_forward_pre_hook(leaf_called) for m in _leaves_outside(model, blocks)]
    if all(m is not head for m in _leaves_outside(model, blocks)):
        handles.append(head.register_forward_pre_hook(leaf_called))
    batch = encoding.collate([item], pad_id)
    device = scoring.model_device(model)
    try:
        with torch.inference_mode():
            model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                  use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    if not state["done"]:
        raise ValueError(f"{type(model).__name__}: the LM head never ran after the last block: no logit lens")
    seen: list[torch.nn.Module] = []
    for module in called:
        if all(module is not s for s in seen):
            seen.append(module)
    return seen


def _apply(path: Sequence[torch.nn.Module], hidden: torch.Tensor) -> torch.Tensor:
    for module in path:
        hidden = module(hidden)
    return hidden


@dataclass
class HiddenPass:
    """What :func:`hidden_state_pass` read: ``block_names`` (module paths), ``lens`` (signal -> ``[n_blocks,
    n_examples]`` scores, higher = member; NaN for an example without a scored token) and ``features``
    (``[n_blocks]`` arrays ``[n_examples, d]`` of pooled response states, float32; None when not asked)."""

    block_names: list[str]
    lens: dict[str, np.ndarray]
    features: list[np.ndarray] | None


class _BatchState:
    """The hooks' view of the current batch: response positions, and what each block contributed."""

    def __init__(self, n_blocks: int):
        self.n_blocks = n_blocks
        self.batch = None
        self.rows = self.cols = self.targets = None
        self.stats: list[list[list[torch.Tensor]]] = []
        self.pooled: list[torch.Tensor | None] = []
        self.last_output: torch.Tensor | None = None

    def start(self, batch):
        self.batch = batch
        targets, target_mask = batch["input_ids"][:, 1:], batch["response_mask"][:, 1:]  # as shift_for_causal_lm
        self.rows, self.cols = target_mask.nonzero(as_tuple=True)
        self.targets = targets[self.rows, self.cols]
        self.stats = [[[], [], []] for _ in range(self.n_blocks)]
        self.pooled = [None] * self.n_blocks

    def clear(self):
        self.batch = self.rows = self.cols = self.targets = self.last_output = None
        self.stats, self.pooled = [], []


def hidden_state_pass(
    model: torch.nn.Module,
    items: Sequence[Encoded],
    scoring_pass: scoring.ScoringPass,
    lens: bool = True,
    pooled: bool = True,
    min_k: float = 0.2,
    min_k_count: str = "ceil",
    check_path: bool = True,
) -> HiddenPass:
    """Every block's logit-lens scores (``lens``) and pooled response states (``pooled``) of ``items``, from
    one forward pass per batch (module docstring). ``scoring_pass``: batch size, padding id, LM-head chunk
    and precision, as the scorer's."""
    if not (lens or pooled):
        raise ValueError("nothing to read: lens and pooled are both off")
    if not items:
        raise ValueError("no examples to read")
    ids = [item.id for item in items]
    if len(set(ids)) != len(ids):
        raise ValueError("item ids are not unique")
    model.eval()
    device = scoring.model_device(model)
    blocks = perturb.find_blocks(model)
    n_blocks = len(blocks)
    head = model.get_output_embeddings() if lens else None
    path = output_path(model, items[0], scoring_pass.pad_id) if lens else []
    if lens:
        log.info("logit lens through %s then %s", [type(m).__name__ for m in path] or "nothing",
                 type(head).__name__)
    state = _BatchState(n_blocks)
    chunk = scoring_pass.position_chunk
    head_input: dict[str, torch.Tensor] = {}
    reading = {"now": False}

    def read(index: int, hidden: torch.Tensor) -> None:
        if pooled:
            mask = state.batch["response_mask"].to(hidden.device).unsqueeze(-1).float()
            state.pooled[index] = ((hidden.float() * mask).sum(1) / mask.sum(1)).cpu()
        if lens:
            reading["now"] = True
            try:
                lens_stats(index, hidden)
            finally:
                reading["now"] = False

    def lens_stats(index: int, hidden: torch.Tensor) -> None:
        normed = _apply(path, hidden)
        if index == n_blocks - 1:
            state.last_output = normed
        gathered = normed[:, :-1][state.rows, state.cols]
        for start in range(0, gathered.shape[0], chunk):
            logits = head(gathered[start:start + chunk])
            for part, value in zip(state.stats[index],
                                   scoring.token_statistics(logits, state.targets[start:start + chunk])):
                part.append(value.float().cpu())

    def hook_for(index: int):
        def hook(_module, _args, output):
            read(index, output[0] if isinstance(output, (tuple, list)) else output)
        return hook

    def capture_head(_module, args):  # the model's own head call: keep its input, project one position only
        if reading["now"]:
            return None  # a lens call of read()
        head_input["hidden"] = args[0]
        return (args[0][..., :1, :],) + tuple(args[1:])

    handles = [block.register_forward_hook(hook_for(i)) for i, (_, block) in enumerate(blocks)]
    if lens:
        handles.append(head.register_forward_pre_hook(capture_head))
    n = len(items)
    token_stats: list[list[tuple[np.ndarray, ...] | None]] = [[None] * n for _ in range(n_blocks)]
    features = [None] * n_blocks
    checked = not (lens and check_path)
    models.autocast(scoring_pass.precision, device)  # refuse an impossible precision before any work
    try:
        with torch.inference_mode():
            for batch_idx in encoding.length_sorted_batches(items, scoring_pass.batch_size):
                batch = encoding.collate([items[i] for i in batch_idx], scoring_pass.pad_id)
                batch = {k: v.to(device) for k, v in batch.items()}
                state.start(batch)
                with models.autocast(scoring_pass.precision, device):
                    model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
                if not checked:
                    expected = head_input.get("hidden")
                    if (expected is None or state.last_output is None or expected.shape != state.last_output.shape
                            or not torch.allclose(state.last_output.float(), expected.float(), rtol=1e-5,
                                                  atol=1e-5)):
                        raise ValueError(
                            f"{type(model).__name__}: the modules between the last block and the LM head "
                            f"({[type(m).__name__ for m in path]}) do not reproduce the LM head's input: its "
                            "output path is not a chain of modules, so no logit lens")
                    checked = True
                counts = torch.bincount(state.rows.cpu(), minlength=len(batch_idx)).tolist()
                for index in range(n_blocks):
                    if lens:
                        flat = [torch.cat(p).numpy().astype(np.float32) if p else np.zeros(0, np.float32)
                                for p in state.stats[index]]
                        offset = 0
                        for slot, count in zip(batch_idx, counts):
                            token_stats[index][slot] = tuple(f[offset:offset + count].copy() for f in flat)
                            offset += count
                    if pooled:
                        if features[index] is None:
                            features[index] = np.full((n, state.pooled[index].shape[-1]), np.nan, np.float32)
                        features[index][batch_idx] = state.pooled[index].numpy()
                state.clear()  # drop this batch's tensors before the next forward
    finally:
        for handle in handles:
            handle.remove()
    lens_scores: dict[str, np.ndarray] = {}
    if lens:
        context = attacks.AttackContext(texts={}, min_k=min_k, min_k_count=min_k_count)
        loss, min_k_pp = [], []
        for index in range(n_blocks):
            table = pd.DataFrame({
                "id": ids,
                "n_tokens": [len(s[0]) for s in token_stats[index]],
                "token_logprobs": [s[0] for s in token_stats[index]],
                "token_mu": [s[1] for s in token_stats[index]],
                "token_sigma": [s[2] for s in token_stats[index]],
            })
            loss.append(attacks.loss_score(table, context))
            min_k_pp.append(attacks.min_k_pp_score(table, context))
        lens_scores = {"lens_loss": np.vstack(loss), "lens_min_k_pp": np.vstack(min_k_pp)}
    return HiddenPass([name for name, _ in blocks], lens_scores, features if pooled else None)


# ----------------------------------------------------------------------------------------------------------
# The linear membership probe
# ----------------------------------------------------------------------------------------------------------
def stratified_folds(labels, folds: int, seed: int) -> np.ndarray:
    """Fold index per example: each class shuffled with a generator seeded by ``(seed, class)`` and dealt
    round-robin, so every fold holds ``floor`` or ``ceil`` of each class's share."""
    y = np.asarray(labels).ravel()
    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    out = np.full(y.size, -1, dtype=np.int64)
    for cls in (0, 1):
        where = np.flatnonzero(y == cls)
        if where.size < folds:
            raise ValueError(f"{folds}-fold probe needs at least {folds} examples of each class; "
                             f"class {cls} has {where.size}")
        order = np.random.default_rng([int(seed), cls]).permutation(where)
        out[order] = np.arange(order.size) % folds
    return out


def fit_logistic(x: np.ndarray, y: np.ndarray, c: float = 1.0, sample_weight: np.ndarray | None = None,
                 tol: float = 1e-10, max_iter: int = 2000) -> tuple[np.ndarray, float]:
    """``(w, b)`` minimising ``0.5 |w|^2 + c sum_i s_i log(1 + exp(-t_i (x_i . w + b)))``, ``t_i = 2 y_i - 1``
    (scikit-learn's L2 ``LogisticRegression(C=c)`` objective); L-BFGS from zero."""
    x = np.asarray(x, dtype=np.float64)
    t = 2.0 * np.asarray(y, dtype=np.float64).ravel() - 1.0
    s = np.ones(t.size) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    if not c > 0:
        raise ValueError(f"c must be > 0, got {c}")
    d = x.shape[1]

    def objective(theta):
        w, b = theta[:d], theta[d]
        margin = t * (x @ w + b)
        loss = 0.5 * w @ w + c * np.sum(s * np.logaddexp(0.0, -margin))
        g = -c * s * t * special.expit(-margin)
        return loss, np.concatenate([w + x.T @ g, [g.sum()]])

    result = optimize.minimize(objective, np.zeros(d + 1), jac=True, method="L-BFGS-B",
                               options={"maxiter": max_iter, "gtol": tol, "ftol": 1e-15})
    return result.x[:d], float(result.x[d])


def _balanced(y: np.ndarray) -> np.ndarray:
    counts = np.bincount(y, minlength=2).astype(np.float64)
    return (y.size / (2.0 * counts))[y]


def cv_probe(features: np.ndarray, labels, folds: int = 5, c: float = 1.0, seed: int = 0,
             extra_negatives: np.ndarray | None = None) -> np.ndarray:
    """Out-of-fold decision values (higher = member) of the linear probe (module docstring) on ``features``
    ``[n, d]`` with 0/1 ``labels``; ``extra_negatives`` ``[m, d]`` join every training fold labelled 0 and are
    never scored. An example with a non-finite feature (no response token) scores NaN and trains nothing."""
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels).ravel().astype(np.int64)
    if x.ndim != 2 or x.shape[0] != y.size:
        raise ValueError(f"features {x.shape} do not match {y.size} labels")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0/1")
    finite = np.isfinite(x).all(axis=1)
    extra = np.zeros((0, x.shape[1])) if extra_negatives is None else np.asarray(extra_negatives, np.float64)
    if extra.ndim != 2 or extra.shape[1] != x.shape[1]:
        raise ValueError(f"extra negatives {extra.shape} do not match features {x.shape}")
    extra = extra[np.isfinite(extra).all(axis=1)]
    scores = np.full(y.size, np.nan)
    where = np.flatnonzero(finite)
    fold = stratified_folds(y[where], folds, seed)
    for k in range(folds):
        train, test = where[fold != k], where[fold == k]
        x_train = np.vstack([x[train], extra])
        y_train = np.concatenate([y[train], np.zeros(len(extra), np.int64)])
        mean = x_train.mean(axis=0)
        scale = x_train.std(axis=0)
        scale[scale < 1e-12] = 1.0
        w, b = fit_logistic((x_train - mean) / scale, y_train, c, _balanced(y_train))
        scores[test] = ((x[test] - mean) / scale) @ w + b
    return scores
