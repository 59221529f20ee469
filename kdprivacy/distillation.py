"""The KD methods of the study (study.md, "The six KD methods") plus the No-KD control, all on
:func:`kdprivacy.training.fit`.

Every method returns ``(model, history)``; ``history`` has the columns of :func:`~kdprivacy.training.fit`
(``epoch, step, train_loss, dev_loss, lr, selected``) plus per-epoch columns that show the method's
mechanism is actually running (what fraction of batches used student-generated outputs, the schedule's
state, policy-gradient rewards, ...). ``dev_loss`` is always the response NLL on the **dev** pool's ground
truth (never non-members).

p = teacher, q = student. Methods and what they train on:

- ``nokd``     SFT on public ground truth (no teacher).
- ``kd``       word-level KD on public ground truth: ``kd.objective`` (default forward KL; the objective
               ablation uses fkl, rkl, jsd, tvd, sfkl, srkl).
- ``seqkd``    Kim & Rush (2016): the student trains on the **teacher's generations** for the public prompts
               (precomputed by ``scripts/generate_teacher.py``); ``loss="ce"`` (LM loss on the teacher's
               outputs, default) or ``"kd"`` (``kd.objective`` on the teacher's outputs).
- ``imitkd``   Lin et al. (2020) as run in the DistiLLM code base (``--type mixed-fkl --mixed-alpha``): with
               probability ``sgo_ratio`` a batch is an SGO batch: the current student samples responses to
               the batch's prompts, they are pushed into a FIFO replay buffer (``buffer_capacity``), and the
               batch trained on is drawn uniformly from the buffer; otherwise ground truth. Loss:
               ``kd.objective`` (default forward KL) against the teacher on those sequences.
- ``gkd``      Agarwal et al. (2024), with the semantics of TRL's ``GKDTrainer``: each batch is replaced,
               with probability ``lmbda``, by fresh on-policy samples of the student for the same prompts
               (no buffer); loss = generalized JSD(``beta``) on the response tokens
               (:func:`kdprivacy.objectives.generalized_jsd`, TRL's ``generalized_jsd_loss`` convention).
               TRL decides with ``random.random() <= lmbda``; we use ``<`` so ``lmbda = 0`` never samples.
- ``minillm``  Gu et al. (2024): reverse KL(q ‖ p) optimised by policy gradient on samples from the
               teacher-mixed distribution ``p̃ = (1 − α) q + α p`` (α = 0.2), with
               * single-step regularization: the per-position reverse KL computed exactly over the
                 vocabulary (its gradient replaces the token's own reward in the policy gradient);
               * long-term reward with length normalization: ``A_t = (1/(T−t)) Σ_{t' > t} r_t'``,
                 ``r_t = log p(y_t | y<t, x) − log q_old(y_t | y<t, x)`` (the paper's R_{t+1}^Norm);
               * importance weight ``w_t = q_old(y_t)/p̃(y_t)`` (per token, as the paper approximates) and a
                 PPO-style clipped ratio ``ρ_t = w_t · q_θ(y_t)/q_old(y_t)``, clipped to [1 − ε, 1 + ε];
               * plus ``lm_weight`` × LM loss on the batch's public ground truth (MiniLLM's L_PT).
               ``ppo_epochs`` consecutive optimizer steps reuse one rollout (q_old fixed at sampling time).
- ``distillm`` Ko et al. (2024): skewed reverse KL ``KL(q ‖ skew·q + (1 − skew)·p)`` (skew 0.1) with the
               adaptive off-policy schedule (see :func:`adaptive_threshold` and :func:`distillm`).

Privacy guard: every generated sequence keeps the id of the prompt it answers, and a ``guard(ids)``
callable (see :func:`kdprivacy.training.pool_guard`) is run on every batch of student-generated outputs
and on teacher generations before they are used.
"""

from __future__ import annotations

import logging
import math
import random
from collections import deque
from collections.abc import Callable, Sequence

import pandas as pd
import torch
import torch.nn.functional as F

from kdprivacy import generation, objectives, training
from kdprivacy.encoding import Encoded, collate, shift_for_causal_lm

log_ = logging.getLogger("kdprivacy")

METHOD_NAMES = ("nokd", "kd", "seqkd", "imitkd", "gkd", "minillm", "distillm")
TEACHER_FREE = ("nokd",)  # methods that never query the teacher
SGO_METHODS = ("imitkd", "gkd", "minillm", "distillm")  # methods that sample from the student

# Hyperparameters of each method's ``method_params`` block (None/missing -> these defaults).
METHOD_PARAM_DEFAULTS: dict[str, dict] = {
    "nokd": {},
    "kd": {},
    "seqkd": {"loss": "ce"},
    "imitkd": {"sgo_ratio": 1.0, "buffer_capacity": 1000},
    "gkd": {"lmbda": 0.5, "beta": 0.5},
    "minillm": {
        "alpha": 0.2,
        "clip_eps": 0.2,
        "lm_weight": 1.0,
        "ppo_epochs": 1,
        "length_norm": True,
        "single_step_reg": True,
        "whiten": True,
    },
    "distillm": {
        "skew": 0.1,
        "init_threshold": 0.2,
        "threshold_step": 0.1,
        "loss_eps": 0.1,
        "buffer_capacity": 1000,
    },
}

# Sampling of student outputs (ImitKD/GKD/MiniLLM/DistiLLM) and of teacher outputs (SeqKD data).
# max_new_tokens None -> max_length - max_prompt_length; batch_size None -> the train batch size.
GENERATION_DEFAULTS = {
    "max_new_tokens": None,
    "do_sample": True,
    "temperature": 1.0,
    "top_p": 1.0,
    "top_k": 0,
    "batch_size": None,
}


# ------------------------------------------------------------------------------------------ configs
def _unit(name: str, value) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return value


def resolve_method_params(method: str, params: dict | None) -> dict:
    """``method_params`` with the method's defaults filled in; unknown keys and bad values raise."""
    if method not in METHOD_PARAM_DEFAULTS:
        raise ValueError(f"unknown student method {method!r}; choose one of {list(METHOD_NAMES)}")
    defaults = METHOD_PARAM_DEFAULTS[method]
    given = {k: v for k, v in (params or {}).items() if v is not None}
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(f"method_params for {method!r} has unknown keys {unknown}; allowed {sorted(defaults)}")
    out = {**defaults, **given}
    if method == "seqkd" and out["loss"] not in ("ce", "kd"):
        raise ValueError(f"seqkd loss must be 'ce' or 'kd', got {out['loss']!r}")
    for key in ("sgo_ratio", "lmbda", "beta", "alpha", "skew", "init_threshold", "threshold_step"):
        if key in out:
            out[key] = _unit(key, out[key])
    for key in ("buffer_capacity", "ppo_epochs"):
        if key in out and int(out[key]) < 1:
            raise ValueError(f"{key} must be >= 1, got {out[key]}")
    if "clip_eps" in out and not 0.0 < float(out["clip_eps"]) < 1.0:
        raise ValueError(f"clip_eps must be in (0, 1), got {out['clip_eps']}")
    if "loss_eps" in out and float(out["loss_eps"]) < 0:
        raise ValueError(f"loss_eps must be >= 0, got {out['loss_eps']}")
    if "lm_weight" in out and float(out["lm_weight"]) < 0:
        raise ValueError(f"lm_weight must be >= 0, got {out['lm_weight']}")
    return out


def resolve_generation_config(
    gen: dict | None, max_length: int, max_prompt_length: int | None, batch_size: int
) -> dict:
    """The ``generation`` block with defaults; ``max_new_tokens`` defaults to the room a prompt leaves."""
    given = {k: v for k, v in (gen or {}).items() if v is not None}
    unknown = sorted(set(given) - set(GENERATION_DEFAULTS))
    if unknown:
        raise ValueError(f"generation config has unknown keys {unknown}; allowed {sorted(GENERATION_DEFAULTS)}")
    out = {**GENERATION_DEFAULTS, **given}
    if out["max_new_tokens"] is None:
        if max_prompt_length is None:
            raise ValueError("generation.max_new_tokens is unset and there is no max_prompt_length to derive it")
        out["max_new_tokens"] = int(max_length) - int(max_prompt_length)
    out["batch_size"] = int(out["batch_size"] or batch_size)
    out["max_new_tokens"] = int(out["max_new_tokens"])
    if out["max_new_tokens"] < 1 or out["batch_size"] < 1:
        raise ValueError(f"generation max_new_tokens/batch_size must be >= 1, got {out}")
    generation.warp_logits(torch.zeros(1, 2), float(out["temperature"]), int(out["top_k"]), float(out["top_p"]))
    return out


def _eos_id(model, eos_id: int | None) -> int:
    if eos_id is None:
        eos_id = getattr(model.config, "eos_token_id", None)
        if isinstance(eos_id, (list, tuple)):
            eos_id = eos_id[0] if eos_id else None
    if eos_id is None:
        raise ValueError("sampling needs an eos_id (none given and the model config has none)")
    return int(eos_id)


class _Setup:
    """Everything a method reads from the student cfg, resolved once."""

    def __init__(self, method: str, cfg: dict):
        self.method = method
        self.seed = int(cfg.get("seed", 0))
        self.train = {"seed": self.seed, **cfg["train"]}
        self.train_resolved = training.resolve_train_config(self.train)
        self.kd_cfg = cfg.get("kd") or {}
        self.params = resolve_method_params(method, cfg.get("method_params"))
        self.max_length = int(cfg["max_length"]) if cfg.get("max_length") is not None else None
        self.max_prompt_length = cfg.get("max_prompt_length")
        self.gen = None
        if method in SGO_METHODS:
            if self.max_length is None:
                raise ValueError(f"method {method!r} needs max_length (generated sequences are cut to it)")
            self.gen = resolve_generation_config(
                cfg.get("generation"), self.max_length, self.max_prompt_length, int(self.train_resolved["batch_size"])
            )

    def kd_temperature_lm(self) -> tuple[float, float]:
        """``kd.temperature`` and ``kd.lm_weight`` for methods whose divergence is fixed (gkd, distillm):
        ``kd.objective`` and its ``beta``/``alpha`` are not used (``method_params`` sets them)."""
        kd = {**training.KD_DEFAULTS, **{k: v for k, v in self.kd_cfg.items() if v is not None}}
        unknown = sorted(set(kd) - set(training.KD_DEFAULTS) - {"beta", "alpha"})
        if unknown:
            raise ValueError(f"kd config has unknown keys {unknown}")
        temperature, lm_weight = float(kd["temperature"]), float(kd["lm_weight"])
        if temperature <= 0 or not 0.0 <= lm_weight <= 1.0:
            raise ValueError(f"kd.temperature must be > 0 and kd.lm_weight in [0, 1], got {temperature}, {lm_weight}")
        return temperature, lm_weight

    def total_steps(self, n_items: int) -> int:
        return int(self.train_resolved["epochs"]) * math.ceil(n_items / int(self.train_resolved["batch_size"]))


# ------------------------------------------------------------------------------------ shared pieces
class ReplayBuffer:
    """FIFO buffer of generated items (oldest evicted beyond ``capacity``); seeded uniform sampling without
    replacement (DistiLLM's ``ReplayBuffer``: a ``deque(maxlen=capacity)`` + ``random.sample``)."""

    def __init__(self, capacity: int, seed: int | str = 0):
        if int(capacity) < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self.items: deque[Encoded] = deque(maxlen=self.capacity)
        self.rng = random.Random(seed)

    def __len__(self) -> int:
        return len(self.items)

    def push(self, items: Sequence[Encoded]) -> None:
        self.items.extend(items)

    def sample(self, n: int) -> list[Encoded]:
        if not self.items:
            raise ValueError("cannot sample from an empty replay buffer")
        return self.rng.sample(list(self.items), k=min(int(n), len(self.items)))

    def state_dict(self) -> dict:
        """Contents (as plain tuples) and sampling RNG, for checkpoint/resume."""
        return {"items": [_item_tuple(item) for item in self.items], "rng": self.rng.getstate()}

    def load_state_dict(self, state: dict) -> None:
        self.items.clear()
        self.items.extend(_item_from_tuple(t) for t in state["items"])
        self.rng.setstate(_as_random_state(state["rng"]))


def _item_tuple(item: Encoded) -> tuple:
    return (item.id, tuple(item.prompt_ids), tuple(item.response_ids))


def _item_from_tuple(t) -> Encoded:
    return Encoded(str(t[0]), tuple(int(x) for x in t[1]), tuple(int(x) for x in t[2]))


class StudentSampler:
    """Samples student outputs (SGO) for a batch's prompts: seeded per call, guarded, with counters."""

    def __init__(self, gen: dict, pad_id: int, eos_id: int, max_length: int, seed: int, guard: Callable | None):
        self.gen, self.pad_id, self.eos_id, self.max_length = gen, pad_id, eos_id, max_length
        self.seed, self.guard = int(seed), guard
        self.calls = 0
        self.reset_counts()

    def reset_counts(self) -> None:
        self.n_sequences, self.n_tokens = 0, 0

    def next_seed(self) -> int:
        self.calls += 1
        return self.seed * 1_000_003 + self.calls

    def check(self, items: Sequence[Encoded]) -> None:
        if self.guard is not None:
            self.guard([item.id for item in items])

    def record(self, items: Sequence[Encoded]) -> None:
        self.n_sequences += len(items)
        self.n_tokens += sum(len(item.response_ids) for item in items)

    def sample(self, student, items: Sequence[Encoded]) -> list[Encoded]:
        self.check(items)  # prompts first: nothing is generated for a secret prompt
        g = self.gen
        tokens = generation.generate(
            sampling_model(student),
            items,
            g["max_new_tokens"],
            g["batch_size"],
            self.pad_id,
            self.eos_id,
            bool(g["do_sample"]),
            float(g["temperature"]),
            float(g["top_p"]),
            int(g["top_k"]),
            self.next_seed(),
        )
        out = generation.with_responses(items, tokens, self.max_length)
        self.check(out)
        self.record(out)
        return out

    def mean_length(self) -> float:
        return self.n_tokens / self.n_sequences if self.n_sequences else math.nan

    def state_dict(self) -> dict:
        """The call counter (it sets the next sampling seed) and the epoch's counts, for checkpoint/resume."""
        return {"calls": self.calls, "n_sequences": self.n_sequences, "n_tokens": self.n_tokens}

    def load_state_dict(self, state: dict) -> None:
        self.calls, self.n_sequences, self.n_tokens = (
            int(state["calls"]),
            state["n_sequences"],
            state["n_tokens"],
        )


class MethodState:
    """What a method keeps between batches, for :func:`kdprivacy.training.fit`'s checkpoints: named parts,
    each a ``random.Random``, a plain ``dict`` (restored in place) or an object with ``state_dict`` /
    ``load_state_dict`` (replay buffers, samplers, MiniLLM's rollout)."""

    def __init__(self, **parts):
        self.parts = parts

    def state_dict(self) -> dict:
        out = {}
        for name, part in self.parts.items():
            if isinstance(part, random.Random):
                out[name] = part.getstate()
            elif isinstance(part, dict):
                out[name] = dict(part)
            else:
                out[name] = part.state_dict()
        return out

    def load_state_dict(self, state: dict) -> None:
        missing = sorted(set(self.parts) - set(state))
        if missing:
            raise ValueError(f"method state lacks {missing}")
        for name, part in self.parts.items():
            if isinstance(part, random.Random):
                part.setstate(_as_random_state(state[name]))
            elif isinstance(part, dict):
                part.clear()
                part.update(state[name])
            else:
                part.load_state_dict(state[name])


def _as_random_state(state):
    """``random.Random.getstate()`` tuples may come back from a checkpoint as lists: rebuild the tuples."""
    version, internal, gauss = state
    return (version, tuple(internal), gauss)


def sampling_model(model):
    """The module to decode with: a LoRA (peft) student's underlying transformers model, whose layers carry
    the adapter in place (same outputs; its ``forward`` exposes the KV-cache argument by name, which
    :mod:`kdprivacy.generation` looks for), else the model itself."""
    from kdprivacy import models

    return model.get_base_model() if models.is_lora(model) else model


def _decision_rng(seed: int, method: str) -> random.Random:
    """Which batches use SGO: a private RNG (never Python's or torch's global one)."""
    return random.Random(f"{int(seed)}:{method}:sgo")


def _with_sgo_flag(loss_fn: Callable) -> Callable:
    """Adds ``frac_sgo_batches`` (0/1 per batch, so its epoch mean is the fraction) to a loss's stats."""

    def wrapped(model, batch):
        loss, stats = loss_fn(model, batch)
        return loss, {**stats, "frac_sgo_batches": float(bool(batch.get("sgo", False)))}

    return wrapped


def _collate_flagged(items: Sequence[Encoded], pad_id: int, sgo: bool, **extra) -> dict:
    batch = collate(items, pad_id)
    batch["sgo"] = sgo
    batch.update(extra)
    return batch


def _divergence_loss(teacher, objective: str, temperature: float, lm_weight: float, **hparams) -> Callable:
    divergence = objectives.get_objective(objective, temperature=temperature, **hparams)
    return training.kd_loss_fn(teacher, divergence, lm_weight)


def _prepare_teacher(student, teacher, method: str):
    if teacher is None:
        raise ValueError(f"method {method!r} needs a teacher")
    training.check_shared_vocab(student, teacher)
    return training.freeze(teacher)


# ------------------------------------------------------------------------------------------ methods
def nokd(student, teacher, train_items, dev_items, cfg, pad_id, log=None, *, resume=None, on_step=None, **_):
    """No-KD control: SFT on public ground truth; the teacher is never touched."""
    setup = _Setup("nokd", cfg)
    return training.sft(
        student,
        train_items,
        dev_items,
        setup.train,
        pad_id,
        log,
        desc="student[nokd]",
        resume=resume,
        on_step=on_step,
    )


def kd(student, teacher, train_items, dev_items, cfg, pad_id, log=None, *, resume=None, on_step=None, **_):
    """Word-level KD on public ground truth (:func:`kdprivacy.training.distill_kd`; ``kd`` block)."""
    setup = _Setup("kd", cfg)
    if teacher is None:
        raise ValueError("method 'kd' needs a teacher")
    return training.distill_kd(
        student,
        teacher,
        train_items,
        dev_items,
        setup.train,
        setup.kd_cfg,
        pad_id,
        log,
        resume=resume,
        on_step=on_step,
    )


def fraction_differing(generated: Sequence[Encoded], ground_truth: Sequence[Encoded]) -> float:
    """Fraction of ``generated`` items whose response differs from the ground truth of the same id."""
    truth = {item.id: item.response_ids for item in ground_truth}
    missing = [item.id for item in generated if item.id not in truth]
    if missing:
        raise ValueError(f"{len(missing)} generated items have no ground truth, e.g. {missing[:3]}")
    if not generated:
        return math.nan
    return sum(item.response_ids != truth[item.id] for item in generated) / len(generated)


def seqkd(
    student,
    teacher,
    train_items,
    dev_items,
    cfg,
    pad_id,
    log=None,
    *,
    teacher_generations=None,
    guard=None,
    resume=None,
    on_step=None,
    **_,
):
    """SeqKD: train on the teacher's generations for the public prompts (``teacher_generations``, one per
    training prompt id). ``method_params.loss``: ``"ce"`` = LM loss on the teacher outputs (no teacher
    model needed), ``"kd"`` = ``kd.objective`` against the teacher on the teacher outputs.

    History: ``frac_differs_from_gt`` (share of training responses that are not the ground truth; 0 would
    mean SeqKD silently trained on ground truth, the authors' bug), ``n_train``.
    """
    setup = _Setup("seqkd", cfg)
    if not teacher_generations:
        raise ValueError("seqkd needs teacher_generations (the teacher's outputs for the public prompts)")
    generated = list(teacher_generations)
    if guard is not None:
        guard([item.id for item in generated])
    ids = [item.id for item in generated]
    if len(set(ids)) != len(ids):
        raise ValueError("teacher generations contain duplicate ids")
    train_ids = {item.id for item in train_items}
    if set(ids) != train_ids:
        raise ValueError(
            f"teacher generations cover {len(set(ids) & train_ids)} of {len(train_ids)} training prompts and "
            f"{len(set(ids) - train_ids)} others; they must answer exactly the training prompts"
        )
    prompts = {item.id: item.prompt_ids for item in train_items}
    stale = [item.id for item in generated if item.prompt_ids != prompts[item.id]]
    if stale:
        raise ValueError(f"{len(stale)} teacher generations have prompts that differ from the encoded training "
                         f"prompts (another tokenizer or max_prompt_length?), e.g. {stale[:3]}")
    differs = fraction_differing(generated, train_items)
    if setup.params["loss"] == "ce":
        loss_fn = training.lm_loss
    else:
        _prepare_teacher(student, teacher, "seqkd")
        kd_cfg, divergence = training.resolve_kd_config(setup.kd_cfg)
        loss_fn = training.kd_loss_fn(teacher, divergence, float(kd_cfg["lm_weight"]))
    (log or log_).info("seqkd: %d teacher generations, %.1f%% differ from ground truth", len(generated), 100 * differs)

    def on_epoch_end(epoch, row):
        return {"frac_differs_from_gt": differs, "n_train": len(generated)}

    return training.fit(
        student,
        generated,
        dev_items,
        setup.train,
        pad_id,
        loss_fn,
        log,
        desc=f"student[seqkd-{setup.params['loss']}]",
        on_epoch_end=on_epoch_end,
        resume=resume,
        on_step=on_step,
    )


def imitkd(
    student,
    teacher,
    train_items,
    dev_items,
    cfg,
    pad_id,
    log=None,
    *,
    eos_id=None,
    guard=None,
    resume=None,
    on_step=None,
    **_,
):
    """ImitKD: SGO batches (probability ``sgo_ratio``) come from a replay buffer of student samples;
    ``kd.objective`` (default forward KL) against the teacher.

    History: ``frac_sgo_batches``, ``buffer_size`` (end of epoch), ``n_sgo_generated`` and ``sgo_mean_len``
    (sequences sampled this epoch and their mean response length).
    """
    setup = _Setup("imitkd", cfg)
    teacher = _prepare_teacher(student, teacher, "imitkd")
    kd_cfg, divergence = training.resolve_kd_config(setup.kd_cfg)
    loss_fn = _with_sgo_flag(training.kd_loss_fn(teacher, divergence, float(kd_cfg["lm_weight"])))
    sampler = StudentSampler(setup.gen, pad_id, _eos_id(student, eos_id), setup.max_length, setup.seed, guard)
    buffer = ReplayBuffer(setup.params["buffer_capacity"], seed=f"{setup.seed}:imitkd:buffer")
    rng = _decision_rng(setup.seed, "imitkd")
    ratio = setup.params["sgo_ratio"]

    def make_batch(items):
        if rng.random() < ratio:
            buffer.push(sampler.sample(student, items))
            return _collate_flagged(buffer.sample(len(items)), pad_id, True)
        return _collate_flagged(items, pad_id, False)

    def on_epoch_end(epoch, row):
        extra = {"buffer_size": len(buffer), "n_sgo_generated": sampler.n_sequences,
                 "sgo_mean_len": sampler.mean_length()}
        sampler.reset_counts()
        return extra

    return training.fit(
        student,
        train_items,
        dev_items,
        setup.train,
        pad_id,
        loss_fn,
        log,
        desc=f"student[imitkd-{kd_cfg['objective']}]",
        make_batch=make_batch,
        on_epoch_end=on_epoch_end,
        state=MethodState(rng=rng, buffer=buffer, sampler=sampler),
        resume=resume,
        on_step=on_step,
    )


def gkd(
    student,
    teacher,
    train_items,
    dev_items,
    cfg,
    pad_id,
    log=None,
    *,
    eos_id=None,
    guard=None,
    resume=None,
    on_step=None,
    **_,
):
    """GKD (TRL ``GKDTrainer`` semantics): with probability ``lmbda`` a batch is replaced by fresh student
    samples for its prompts; loss = generalized JSD(``beta``) with ``kd.temperature`` (``kd.objective`` is
    not used). History: ``frac_sgo_batches``, ``n_sgo_generated``, ``sgo_mean_len``.
    """
    setup = _Setup("gkd", cfg)
    teacher = _prepare_teacher(student, teacher, "gkd")
    temperature, lm_weight = setup.kd_temperature_lm()
    loss_fn = _with_sgo_flag(_divergence_loss(teacher, "jsd", temperature, lm_weight, beta=setup.params["beta"]))
    sampler = StudentSampler(setup.gen, pad_id, _eos_id(student, eos_id), setup.max_length, setup.seed, guard)
    rng = _decision_rng(setup.seed, "gkd")
    lmbda = setup.params["lmbda"]

    def make_batch(items):
        if rng.random() < lmbda:
            return _collate_flagged(sampler.sample(student, items), pad_id, True)
        return _collate_flagged(items, pad_id, False)

    def on_epoch_end(epoch, row):
        extra = {"n_sgo_generated": sampler.n_sequences, "sgo_mean_len": sampler.mean_length()}
        sampler.reset_counts()
        return extra

    return training.fit(
        student,
        train_items,
        dev_items,
        setup.train,
        pad_id,
        loss_fn,
        log,
        desc=f"student[gkd-jsd{setup.params['beta']}]",
        make_batch=make_batch,
        on_epoch_end=on_epoch_end,
        state=MethodState(rng=rng, sampler=sampler),
        resume=resume,
        on_step=on_step,
    )


# ---------------------------------------------------------------------------------------- DistiLLM
def adaptive_threshold(threshold: float, prev_loss: float, curr_loss: float, step: float, eps: float) -> float:
    """DistiLLM's adaptive SGO probability update: ``min(1, φ + step)`` when the dev loss got worse by
    more than ``eps`` (``curr > prev + eps``), else ``φ`` unchanged (NaN losses never raise it)."""
    if math.isfinite(prev_loss) and math.isfinite(curr_loss) and curr_loss > prev_loss + eps:
        return min(1.0, threshold + step)
    return threshold


def distillm(
    student,
    teacher,
    train_items,
    dev_items,
    cfg,
    pad_id,
    log=None,
    *,
    eos_id=None,
    guard=None,
    resume=None,
    on_step=None,
    **_,
):
    """DistiLLM: skewed reverse KL ``srkl(alpha=skew)`` with the adaptive off-policy schedule.

    The schedule implemented (per batch, ``r ~ U(0, 1)`` from a seeded RNG, ``φ`` the SGO probability,
    ``progress = step / total_steps``):

    1. ``r < φ·(1 − progress)``, or ``r < φ`` while the buffer holds fewer than ``buffer_capacity`` items:
       the student samples responses to the batch's prompts, they go into the replay buffer, and the batch
       trained on is these fresh samples;
    2. else ``r < φ``: the batch is drawn from the replay buffer;
    3. else: the batch's public ground truth.

    ``φ`` starts at ``init_threshold``. After every epoch the dev loss (response NLL on the **dev** pool)
    is compared with the **previous** evaluation (before epoch 1: the dev loss of the starting student);
    if it got worse by more than ``loss_eps``, ``φ ← min(1, φ + threshold_step)`` for the next epoch.

    How this differs from the authors' code (``jongwooko/distillm`` ``finetune.py``, which the paper's
    fork ran): steps 1–3 are theirs, but (a) their validation set was the non-member pool, ours is dev;
    (b) their reference loss was only updated when φ was raised, so every epoch was compared with the loss
    of the *untrained* student, a level later epochs essentially never exceed; ours is the previous epoch;
    (c) their scripts start at φ = 0 (``--init-threshold 0.0``), so SGO never starts; our default is 0.2, so
    the method differs from ``kd[srkl]`` from the first epoch; ``loss_eps`` (0.1) and ``threshold_step``
    (0.1) are theirs. Evaluation happens once per epoch (their ``--eval-interval -1`` also meant per epoch).

    History: ``sgo_threshold`` (φ in effect during the epoch), ``sgo_threshold_next`` (after the update),
    ``frac_sgo_batches``, ``frac_fresh_batches``, ``buffer_size``, ``n_sgo_generated``, ``sgo_mean_len``.
    """
    setup = _Setup("distillm", cfg)
    teacher = _prepare_teacher(student, teacher, "distillm")
    if not dev_items:
        raise ValueError("distillm's adaptive schedule needs dev items")
    p = setup.params
    temperature, lm_weight = setup.kd_temperature_lm()
    base_loss = _divergence_loss(teacher, "srkl", temperature, lm_weight, alpha=p["skew"])

    def loss_fn(model, batch):
        loss, stats = _with_sgo_flag(base_loss)(model, batch)
        return loss, {**stats, "frac_fresh_batches": float(bool(batch.get("fresh", False)))}

    sampler = StudentSampler(setup.gen, pad_id, _eos_id(student, eos_id), setup.max_length, setup.seed, guard)
    buffer = ReplayBuffer(p["buffer_capacity"], seed=f"{setup.seed}:distillm:buffer")
    rng = _decision_rng(setup.seed, "distillm")
    total = max(1, setup.total_steps(len(train_items)))
    eval_bs = int(setup.train_resolved["eval_batch_size"])
    state = {"phi": p["init_threshold"], "step": 0, "prev": training.mean_nll(student, dev_items, eval_bs, pad_id)}

    def make_batch(items):
        r, phi = rng.random(), state["phi"]
        progress = state["step"] / total
        state["step"] += 1
        if r < phi * (1.0 - progress) or (r < phi and len(buffer) < buffer.capacity):
            fresh = sampler.sample(student, items)
            buffer.push(fresh)
            return _collate_flagged(fresh, pad_id, True, fresh=True)
        if r < phi:
            return _collate_flagged(buffer.sample(len(items)), pad_id, True, fresh=False)
        return _collate_flagged(items, pad_id, False, fresh=False)

    def on_epoch_end(epoch, row):
        phi = state["phi"]
        new_phi = adaptive_threshold(phi, state["prev"], row["dev_loss"], p["threshold_step"], float(p["loss_eps"]))
        if new_phi != phi:
            (log or log_).info("distillm epoch %d: dev loss %.4f > %.4f + %g: SGO probability %.2f -> %.2f",
                               epoch, row["dev_loss"], state["prev"], p["loss_eps"], phi, new_phi)
        state["prev"], state["phi"] = row["dev_loss"], new_phi
        extra = {"sgo_threshold": phi, "sgo_threshold_next": new_phi, "buffer_size": len(buffer),
                 "n_sgo_generated": sampler.n_sequences, "sgo_mean_len": sampler.mean_length()}
        sampler.reset_counts()
        return extra

    return training.fit(
        student,
        train_items,
        dev_items,
        setup.train,
        pad_id,
        loss_fn,
        log,
        desc="student[distillm]",
        make_batch=make_batch,
        on_epoch_end=on_epoch_end,
        state=MethodState(rng=rng, buffer=buffer, sampler=sampler, schedule=state),
        resume=resume,
        on_step=on_step,
    )


# ----------------------------------------------------------------------------------------- MiniLLM
def _gather(log_probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def future_mean_rewards(rewards: torch.Tensor, mask: torch.Tensor, length_norm: bool = True) -> torch.Tensor:
    """``A_t = Σ_{t' > t} r_t'`` over masked positions, divided by their number when ``length_norm``
    (MiniLLM's length-normalised long-term reward R_{t+1}^Norm); 0 where nothing follows, and off the mask."""
    mask = mask.to(rewards.dtype)
    r = rewards * mask
    suffix = r.flip(-1).cumsum(-1).flip(-1) - r
    if not length_norm:
        return suffix * mask
    count = mask.flip(-1).cumsum(-1).flip(-1) - mask
    return torch.where(count > 0, suffix / count.clamp_min(1.0), torch.zeros_like(suffix)) * mask


def _whiten(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weight = mask.to(values.dtype)
    n = weight.sum().clamp_min(1.0)
    mean = (values * weight).sum() / n
    var = (((values - mean) * weight) ** 2).sum() / n
    return (values - mean) * torch.rsqrt(var + 1e-8) * weight


class _MiniLLM:
    """State shared by MiniLLM's ``make_batch`` (rollouts) and ``loss_fn`` (the policy-gradient loss)."""

    def __init__(self, student, teacher, setup: _Setup, pad_id: int, eos_id: int, guard):
        self.student, self.teacher, self.setup, self.pad_id, self.eos_id = student, teacher, setup, pad_id, eos_id
        self.p, self.gen = setup.params, setup.gen
        self.guard = guard
        self.sampler = StudentSampler(self.gen, pad_id, eos_id, setup.max_length, setup.seed, guard)
        self.rollout: dict | None = None
        self.uses = 0

    def make_batch(self, items):
        """Ground truth for the LM term + a rollout (fresh, or reused for ``ppo_epochs`` steps)."""
        if self.rollout is None or self.uses >= int(self.p["ppo_epochs"]):
            from kdprivacy import models

            self.sampler.check(items)
            g = self.gen
            tokens = generation.mixed_sample(
                sampling_model(self.student),
                self.teacher,
                items,
                self.p["alpha"],
                g["max_new_tokens"],
                g["batch_size"],
                self.pad_id,
                self.eos_id,
                float(g["temperature"]),
                float(g["top_p"]),
                int(g["top_k"]),
                self.sampler.next_seed(),
            )
            samples = generation.with_responses(items, tokens, self.setup.max_length)
            self.sampler.check(samples)
            self.sampler.record(samples)
            device = training.model_device(self.student)
            batch = training.to_device(collate(samples, self.pad_id), device)
            was_training = self.student.training
            self.student.eval()  # q_old = the policy that sampled (no dropout)
            try:
                # in the loss's precision, so that the first step's ratio q_θ/q_old is 1 up to dropout
                with torch.no_grad(), models.autocast(self.setup.train_resolved["precision"], device):
                    teacher_logits = training._forward(self.teacher, batch).float()
                    student_logits = training._forward(self.student, batch).float()
            finally:
                self.student.train(was_training)
            self.rollout = {"batch": batch, "teacher_logits": teacher_logits,
                            "length": float(sum(len(s.response_ids) for s in samples)) / len(samples)}
            self.rollout["old"] = self._rollout_constants(student_logits, self.rollout)
            self.uses = 0
        self.uses += 1
        return {**collate(items, self.pad_id), "rollout": self.rollout}

    def state_dict(self) -> dict:
        """Sampler counters and, while it is still to be reused (``ppo_epochs`` > 1), the current rollout."""
        keep = self.rollout is not None and self.uses < int(self.p["ppo_epochs"])
        return {
            "sampler": self.sampler.state_dict(),
            "uses": self.uses,
            "rollout": self.rollout if keep else None,
        }

    def load_state_dict(self, state: dict) -> None:
        self.sampler.load_state_dict(state["sampler"])
        self.uses, self.rollout = int(state["uses"]), state["rollout"]

    def _rollout_constants(self, logits: torch.Tensor, rollout: dict) -> dict:
        """q_old, rewards, importance weights and advantages, fixed at the rollout's first use."""
        p, g = self.p, self.gen
        batch = rollout["batch"]
        s, targets, mask = shift_for_causal_lm(logits.float(), batch["input_ids"], batch["response_mask"])
        t = rollout["teacher_logits"][:, :-1].to(s.device)
        old_logq = _gather(F.log_softmax(s, -1), targets)
        logp = _gather(F.log_softmax(t, -1), targets)
        rewards = (logp - old_logq) * mask
        # the distribution the tokens were actually drawn from (same warping as the sampler)
        q_warp = generation._sampling_probs(s, float(g["temperature"]), int(g["top_k"]), float(g["top_p"]))
        p_warp = generation._sampling_probs(t, float(g["temperature"]), int(g["top_k"]), float(g["top_p"]))
        mix = (1.0 - p["alpha"]) * _gather(q_warp, targets) + p["alpha"] * _gather(p_warp, targets)
        log_w = old_logq - torch.log(mix.clamp_min(1e-30))
        w = torch.exp(log_w.clamp(max=20.0)) * mask
        adv = future_mean_rewards(rewards, mask, bool(p["length_norm"]))
        if p["whiten"]:
            adv = _whiten(adv, mask)
        lengths = mask.sum(-1).clamp_min(1.0)
        return {"old_logq": old_logq, "w": w, "adv": adv.detach(), "mask": mask,
                "reward": float(((rewards.sum(-1)) / lengths).mean())}

    def loss_fn(self, student, batch):
        rollout = batch["rollout"]
        rb = rollout["batch"]
        logits = training._forward(student, rb)
        old = rollout["old"]
        s, targets, mask = shift_for_causal_lm(logits.float(), rb["input_ids"], rb["response_mask"])
        logq = _gather(F.log_softmax(s, -1), targets)
        eps = float(self.p["clip_eps"])
        ratio = torch.exp((logq - old["old_logq"]) * mask) * old["w"]
        pg1 = -old["adv"] * ratio
        pg2 = -old["adv"] * ratio.clamp(1.0 - eps, 1.0 + eps)
        n = mask.sum().clamp_min(1.0)
        pg_loss = (torch.maximum(pg1, pg2) * mask).sum() / n
        clip_frac = ((((ratio - 1.0).abs() > eps).float() * mask).sum() / n).item()
        teacher_logits = rollout["teacher_logits"][:, :-1].to(s.device)
        reg = objectives.reverse_kl(s, teacher_logits, mask)  # exact KL(q_θ ‖ p) per position
        loss = pg_loss + (reg if self.p["single_step_reg"] else 0.0)
        lm_weight = float(self.p["lm_weight"])
        with torch.set_grad_enabled(torch.is_grad_enabled() and lm_weight > 0):
            lm, _ = training.lm_loss(student, batch)
        if lm_weight > 0:
            loss = loss + lm_weight * lm
        stats = {"pg_loss": pg_loss.item(), "reg_loss": reg.item(), "lm_loss": lm.item(), "reward": old["reward"],
                 "rev_kl": reg.item(), "clip_frac": clip_frac, "sample_len": rollout["length"],
                 "mean_w": ((old["w"] * mask).sum() / n).item()}
        return loss, stats


def minillm(
    student,
    teacher,
    train_items,
    dev_items,
    cfg,
    pad_id,
    log=None,
    *,
    eos_id=None,
    guard=None,
    resume=None,
    on_step=None,
    **_,
):
    """MiniLLM: policy-gradient reverse KL on teacher-mixed samples (see the module docstring).

    History (epoch means): ``reward`` (per-token mean of r_t per rollout sequence; a Monte Carlo estimate of
    −KL(q ‖ p) under the mixed sampler), ``rev_kl`` (exact per-position KL(q_θ ‖ p) on the rollouts: the
    single-step term), ``clip_frac`` (share of response tokens whose ratio ρ_t was outside [1 − ε, 1 + ε]),
    ``sample_len`` (mean rollout response length), ``pg_loss``, ``reg_loss``, ``lm_loss``, ``mean_w``.

    Differences from the MiniLLM code: the long-term advantage sums rewards *after* t (the paper's
    R_{t+1}; the code also includes r_t, which the single-step term already covers); rollouts are drawn per
    training batch from that batch's public prompts (their code keeps a 256-rollout store and runs 4 PPO
    epochs over it: set ``ppo_epochs`` to reuse a rollout for several steps); no reward scaling/clipping.
    """
    setup = _Setup("minillm", cfg)
    teacher = _prepare_teacher(student, teacher, "minillm")
    state = _MiniLLM(student, teacher, setup, pad_id, _eos_id(student, eos_id), guard)

    def on_epoch_end(epoch, row):
        extra = {"n_sgo_generated": state.sampler.n_sequences}
        state.sampler.reset_counts()
        return extra

    return training.fit(
        student,
        train_items,
        dev_items,
        setup.train,
        pad_id,
        state.loss_fn,
        log,
        desc="student[minillm]",
        make_batch=state.make_batch,
        on_epoch_end=on_epoch_end,
        state=state,
        resume=resume,
        on_step=on_step,
    )


# ---------------------------------------------------------------------------------------- registry
METHODS: dict[str, Callable] = {
    "nokd": nokd,
    "kd": kd,
    "seqkd": seqkd,
    "imitkd": imitkd,
    "gkd": gkd,
    "minillm": minillm,
    "distillm": distillm,
}
assert tuple(METHODS) == METHOD_NAMES


def train_method(
    method: str,
    student,
    teacher,
    train_items: Sequence[Encoded],
    dev_items: Sequence[Encoded] | None,
    cfg: dict,
    pad_id: int,
    log: logging.Logger | None = None,
    teacher_generations: Sequence[Encoded] | None = None,
    *,
    eos_id: int | None = None,
    guard: Callable | None = None,
    resume=None,
    on_step: Callable[[int], None] | None = None,
) -> tuple[torch.nn.Module, pd.DataFrame]:
    """Train ``student`` with ``method``; ``cfg`` is the student cfg (``train``, ``kd``, ``generation``,
    ``method_params``, ``seed``, ``max_length``, ``max_prompt_length``; other keys are ignored).

    ``guard(ids)`` is run on every batch of generated data and on ``teacher_generations``; ``eos_id``
    defaults to the student's ``config.eos_token_id``. ``resume`` (:class:`kdprivacy.checkpoint.Resume`) and
    ``on_step`` go to :func:`kdprivacy.training.fit`; every method checkpoints its own state with the loop
    (SGO decision RNG, replay buffer, sampler counter, DistiLLM's schedule, MiniLLM's live rollout), so a
    resumed run continues exactly.
    """
    if method not in METHODS:
        raise ValueError(f"unknown student method {method!r}; choose one of {list(METHODS)}")
    if teacher_generations is not None and method != "seqkd":
        raise ValueError(f"teacher_generations are only used by seqkd, not {method!r}")
    return METHODS[method](
        student,
        teacher,
        train_items,
        dev_items,
        cfg,
        pad_id,
        log,
        teacher_generations=teacher_generations,
        eos_id=eos_id,
        guard=guard,
        resume=resume,
        on_step=on_step,
    )


# ------------------------------------------------------------------------------ teacher generations
GENERATION_COLUMNS = ["id", "prompt_ids", "response_ids", "response_text"]


def generations_frame(items: Sequence[Encoded], tokenizer=None) -> pd.DataFrame:
    """The SeqKD artifact: one row per prompt (``id, prompt_ids, response_ids, response_text``)."""
    rows = [
        {
            "id": item.id,
            "prompt_ids": list(item.prompt_ids),
            "response_ids": list(item.response_ids),
            "response_text": tokenizer.decode(list(item.response_ids), skip_special_tokens=True) if tokenizer else "",
        }
        for item in items
    ]
    return pd.DataFrame(rows, columns=GENERATION_COLUMNS)


def read_generations(path) -> list[Encoded]:
    """Teacher generations (parquet written by :func:`generations_frame`) as ``Encoded`` items."""
    frame = pd.read_parquet(path)
    missing = sorted(set(GENERATION_COLUMNS) - set(frame.columns))
    if missing:
        raise ValueError(f"{path}: teacher generations lack columns {missing}")
    return [
        Encoded(str(r.id), tuple(int(t) for t in r.prompt_ids), tuple(int(t) for t in r.response_ids))
        for r in frame.itertuples(index=False)
    ]


def generate_teacher_from_cfg(cfg: dict, manifest_path, log=None) -> tuple[pd.DataFrame, dict]:
    """SeqKD data: the teacher (``cfg.teacher``) answers every **public** prompt (asserted).

    ``cfg``: ``teacher`` (model ref), ``generation`` (see :data:`GENERATION_DEFAULTS`; default: pure
    sampling at temperature 1, as the DistiLLM/MiniLLM SeqKD scripts), ``seed``, ``max_length``,
    ``max_prompt_length``. Returns the frame and a summary (counts, mean length, EOS rate, resolved
    generation settings) for provenance.
    """
    from kdprivacy import models

    teacher, tokenizer = models.load_base(cfg["teacher"])
    manifest = training.read_manifest(manifest_path)
    guard = training.pool_guard(manifest, ("public",), "teacher-generation prompts")
    frame = training.select_pools(manifest, ["public"])
    from kdprivacy.encoding import encode_frame

    items = encode_frame(tokenizer, frame, int(cfg["max_length"]), int(cfg["max_prompt_length"]))
    guard([item.id for item in items])
    gen = resolve_generation_config(cfg.get("generation"), int(cfg["max_length"]), int(cfg["max_prompt_length"]), 32)
    eos = _eos_id(teacher, tokenizer.eos_token_id)
    (log or log_).info("generating teacher outputs for %d public prompts: %s", len(items), gen)
    tokens = generation.generate(
        teacher, items, gen["max_new_tokens"], gen["batch_size"], tokenizer.pad_token_id, eos, bool(gen["do_sample"]),
        float(gen["temperature"]), float(gen["top_p"]), int(gen["top_k"]), int(cfg.get("seed", 0)),
    )
    generated = generation.with_responses(items, tokens, int(cfg["max_length"]))
    guard([item.id for item in generated])
    out = generations_frame(generated, tokenizer)
    summary = {
        "n": len(generated),
        "mean_response_tokens": float(sum(len(i.response_ids) for i in generated) / max(len(generated), 1)),
        "eos_rate": float(sum(bool(i.response_ids) and i.response_ids[-1] == eos for i in generated)
                          / max(len(generated), 1)),
        "frac_differs_from_gt": fraction_differing(generated, items),
        "generation": gen,
        "pools": ["public"],
    }
    return out, summary
