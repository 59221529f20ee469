"""Word-level KD training step vs TRL's ``GKDTrainer``; and what a cached teacher could save.

Ours: :func:`kdprivacy.train.loop.fit` with :func:`kdprivacy.kd.teacher.kd_loss_fn` and the divergence of
:func:`kdprivacy.kd.teacher.divergence_of` -- the body of :func:`kdprivacy.kd.kd.distill_kd` (the
``kd`` student method) with its ``loss_fn`` wrapped to timestamp each step (the wrapper only reads the clock).

Baseline: ``trl.experimental.gkd.GKDTrainer`` (installed TRL) with ``lmbda=0`` (off-policy: the ground-truth
responses, as our ``kd`` method), ``seq_kd=False``, the same student/teacher weights, batch, examples, lr,
AdamW weight decay, grad clip and cosine schedule; ``beta=0`` for forward KL (TRL's special case:
KL(teacher || student)), ``beta=0.5`` for generalized JSD. A ``TrainerCallback`` timestamps each step. If TRL
cannot be imported, :class:`GKDComputeLoss` -- a line-by-line copy of TRL's ``compute_loss`` +
``generalized_jsd_loss`` in a plain loop -- stands in and the table says so.

Throughput: examples/s over steady-state steps (the first ``kd_warmup_steps`` steps are excluded on both
sides; setup, the last step and wrap-up are not counted on either side), median over ``kd_repeats``
interleaved runs.
"""

from __future__ import annotations

import contextlib
import copy
import io
import tempfile
import time

import torch
import torch.nn.functional as F

from benchmarks import common
from benchmarks.common import Row

LR = 1e-3
OBJECTIVES = {"fkl": ({"objective": "fkl"}, 0.0), "jsd": ({"objective": "jsd", "beta": 0.5}, 0.5)}


def trl_available() -> bool:
    try:
        from trl.experimental.gkd import GKDConfig, GKDTrainer  # noqa: F401
    except Exception:  # noqa: BLE001 - any import problem means: use the re-implementation
        return False
    return True


def fixed_length_items(mode: dict, n: int, length: int, seed: int = 11):
    """``n`` examples cut to exactly ``length`` tokens (longer ones only): every batch then has the same
    shape whatever order a trainer shuffles them in, so both sides do the same work per step."""
    from kdprivacy.encoding import Encoded

    pool = common.items(mode, 3 * n, seed=seed)
    out = [Encoded(i.id, i.prompt_ids, i.response_ids[: length - len(i.prompt_ids)])
           for i in pool if i.length >= length and len(i.prompt_ids) < length - 4]
    if len(out) < n:
        raise RuntimeError(f"only {len(out)} of {3 * n} synthetic examples reach {length} tokens")
    return out[:n]


def _train_cfg(mode: dict, steps: int):
    from kdprivacy.config import Train

    return Train(epochs=1, lr=LR, batch_size=int(mode["kd_batch"]), weight_decay=0.01, grad_clip=1.0,
                 scheduler="cosine")


# --------------------------------------------------------------------------------------------- ours
def ours_step_times(student, teacher, items, mode: dict, kd_cfg: dict, pad_id: int,
                    teacher_seconds: list[float] | None = None, fused: bool = True) -> list[float]:
    """Timestamps of each optimizer step of the library's KD loop (``distill_kd``'s body); with
    ``teacher_seconds``, forward hooks on the teacher (its decoder, on the fused path) also record how long
    its forward takes in each step. ``fused=False``: the plain full-logits loss (``kd_loss_fn(fused=False)``)."""
    from kdprivacy.config import KD
    from kdprivacy.kd import fused as fused_kd
    from kdprivacy.kd import teacher as kd_teacher
    from kdprivacy.train import loop

    kd = KD(**kd_cfg)
    divergence = kd_teacher.divergence_of(kd)
    kd_teacher.check_shared_vocab(student, teacher)
    kd_teacher.freeze(teacher)
    loss_fn = kd_teacher.kd_loss_fn(teacher, divergence, float(kd.lm_weight), fused=fused)
    stamps: list[float] = []
    handles = []
    if teacher_seconds is not None:
        begun: list[float] = []

        def done(*_):
            teacher_seconds.append(time.perf_counter() - begun.pop())

        chain = fused_kd.head_chain(teacher, trainable=False) if fused else None
        timed_part = teacher if chain is None else chain[0]
        handles = [timed_part.register_forward_pre_hook(lambda *_: begun.append(time.perf_counter())),
                   timed_part.register_forward_hook(done)]

    def timed(model, batch):
        stamps.append(time.perf_counter())
        return loss_fn(model, batch)

    try:
        loop.fit(student, items, None, _train_cfg(mode, len(items)), pad_id, timed, desc="bench-kd")
    finally:
        for handle in handles:
            handle.remove()
    return stamps


# --------------------------------------------------------------------------------------------- TRL
def _trl_collate(pad_id: int):
    from kdprivacy import encoding

    def collate(features):
        items = [encoding.Encoded(f["id"], tuple(f["prompt_ids"]), tuple(f["response_ids"]))
                 for f in features]
        batch = encoding.collate(items, pad_id)
        labels = batch["input_ids"].masked_fill(batch["response_mask"] == 0, -100)
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "labels": labels}

    return collate


def trl_step_times(student, teacher, items, mode: dict, beta: float, tokenizer) -> list[float]:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl.experimental.gkd import GKDConfig, GKDTrainer

    stamps: list[float] = []

    class Stamp(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            stamps.append(time.perf_counter())

    data = Dataset.from_dict({
        "id": [i.id for i in items], "prompt_ids": [list(i.prompt_ids) for i in items],
        "response_ids": [list(i.response_ids) for i in items],
    })
    steps = -(-len(items) // int(mode["kd_batch"]))
    with tempfile.TemporaryDirectory(prefix="kdp-bench-trl-") as tmp:
        args = GKDConfig(
            output_dir=tmp, per_device_train_batch_size=int(mode["kd_batch"]), max_steps=steps,
            learning_rate=LR, weight_decay=0.01, max_grad_norm=1.0, lr_scheduler_type="cosine",
            warmup_steps=0,
            lmbda=0.0, beta=beta, temperature=1.0, seq_kd=False, max_length=int(mode["max_length"]),
            logging_strategy="no", save_strategy="no", eval_strategy="no", report_to="none", use_cpu=True,
            disable_tqdm=True, dataloader_num_workers=0, seed=0, bf16=False, fp16=False,
        )
        trainer = GKDTrainer(model=student, teacher_model=teacher, args=args, train_dataset=data,
                             processing_class=tokenizer, data_collator=_trl_collate(tokenizer.pad_token_id),
                             callbacks=[Stamp()])
        with contextlib.redirect_stdout(io.StringIO()):  # Trainer prints its summary dict
            trainer.train()
    return stamps


class GKDComputeLoss:
    """Fallback when TRL is missing: TRL ``GKDTrainer.compute_loss``/``generalized_jsd_loss`` (v1.16) in a
    plain AdamW loop (no Trainer overhead, so this baseline is *faster* than the real TRL)."""

    @staticmethod
    def generalized_jsd_loss(student_logits, teacher_logits, labels, beta):
        student_log_probs = F.log_softmax(student_logits, dim=-1)
        teacher_log_probs = F.log_softmax(teacher_logits, dim=-1)
        if beta == 0:
            jsd = F.kl_div(student_log_probs, teacher_log_probs, reduction="none", log_target=True)
        elif beta == 1:
            jsd = F.kl_div(teacher_log_probs, student_log_probs, reduction="none", log_target=True)
        else:
            b = torch.tensor(beta, dtype=student_log_probs.dtype)
            mix = torch.logsumexp(torch.stack([student_log_probs + torch.log1p(-b),
                                               teacher_log_probs + torch.log(b)]), dim=0)
            jsd = (b * F.kl_div(mix, teacher_log_probs, reduction="none", log_target=True)
                   + (1 - b) * F.kl_div(mix, student_log_probs, reduction="none", log_target=True))
        mask = labels != -100
        return jsd[mask].sum() / mask.sum().clamp_min(1)

    @classmethod
    def loss(cls, student, teacher, batch: dict, labels, beta: float, upcast: bool = False):
        """TRL's ``compute_loss`` on one batch: both models' full ``[B, T, V]`` logits (the teacher without
        grad), shifted, then :meth:`generalized_jsd_loss` (``upcast``: logits in float32 first, for autocast)."""
        s = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        with torch.no_grad():
            t = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        s, t = (s[:, :-1].float(), t[:, :-1].float()) if upcast else (s[:, :-1], t[:, :-1])
        return cls.generalized_jsd_loss(s, t, labels[:, 1:], beta)

    @classmethod
    def step_times(cls, student, teacher, items, mode: dict, beta: float, tokenizer) -> list[float]:
        from kdprivacy import encoding
        from kdprivacy.train import loop

        collate = _trl_collate(tokenizer.pad_token_id)
        opt = loop.make_optimizer(student, LR, 0.01)
        teacher.eval()
        student.train()
        stamps = []
        for idx in encoding.batch_indices(len(items), int(mode["kd_batch"]), shuffle=True, seed=0):
            stamps.append(time.perf_counter())
            batch = collate([{"id": items[i].id, "prompt_ids": items[i].prompt_ids,
                              "response_ids": items[i].response_ids} for i in idx])
            loss = cls.loss(student, teacher, batch, batch["labels"], beta)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
            opt.step()
        return stamps


def steady_seconds_per_step(stamps: list[float], warmup: int) -> float:
    """Mean step time between the start of step ``warmup`` and the start of the last step (``stamps`` = the
    start of each step; the last step only closes the window, so neither side's wrap-up is counted)."""
    warmup = min(warmup, len(stamps) - 2)
    return (stamps[-1] - stamps[warmup]) / (len(stamps) - 1 - warmup)


def same_loss(student, teacher, items, kd_cfg: dict, beta: float, pad_id: int) -> float:
    """|ours - TRL formula| of the KD loss on one batch (the two sides optimise the same objective)."""
    from kdprivacy import encoding
    from kdprivacy.config import KD
    from kdprivacy.kd import teacher as kd_teacher

    divergence = kd_teacher.divergence_of(KD(**kd_cfg))
    batch = encoding.collate(items[:4], pad_id)
    with torch.no_grad():
        ours, _ = kd_teacher.kd_loss_fn(teacher, divergence, 0.0)(student, batch)
        labels = batch["input_ids"].masked_fill(batch["response_mask"] == 0, -100)
        theirs = GKDComputeLoss.loss(student, teacher, batch, labels, beta)
    return abs(float(ours) - float(theirs))


# --------------------------------------------------------------------------------------------- benchmark
def bench_kd(mode: dict) -> tuple[list[Row], dict]:
    tok = common.tokenizer(mode)
    steps = int(mode["kd_warmup_steps"]) + int(mode["kd_steps"]) + 1
    items = fixed_length_items(mode, steps * int(mode["kd_batch"]), int(mode["kd_length"]))
    teacher0 = common.model(mode, mode["teacher"], seed=1)
    student0 = common.model(mode, mode["student"], seed=2)
    use_trl = trl_available()
    baseline_name = "TRL GKDTrainer" if use_trl else "GKD compute_loss re-implementation (TRL not installed)"
    warm = int(mode["kd_warmup_steps"])
    rows, extra = [], {}
    for name, (kd_cfg, beta) in OBJECTIVES.items():
        per = {"ours": [], "baseline": []}
        shares = []
        for round_ in range(int(mode["kd_repeats"])):
            order = ["ours", "baseline"] if round_ % 2 == 0 else ["baseline", "ours"]
            for side in order:
                student, teacher = copy.deepcopy(student0), copy.deepcopy(teacher0)
                if side == "ours":
                    teacher_s: list[float] = []
                    stamps = ours_step_times(student, teacher, items, mode, kd_cfg, tok.pad_token_id,
                                             teacher_s)
                    w = min(warm, len(stamps) - 2)
                    shares.append(sum(teacher_s[w:len(stamps) - 1]) / (stamps[-1] - stamps[w]))
                elif use_trl:
                    stamps = trl_step_times(student, teacher, items, mode, beta, tok)
                else:
                    stamps = GKDComputeLoss.step_times(student, teacher, items, mode, beta, tok)
                per[side].append(steady_seconds_per_step(stamps, warm))
        s_o, s_b = common.median(per["ours"]), common.median(per["baseline"])
        best = min(per["baseline"]) / min(per["ours"])
        bs = int(mode["kd_batch"])
        ratio = s_b / s_o
        diff = same_loss(copy.deepcopy(student0), copy.deepcopy(teacher0), items, kd_cfg, beta,
                         tok.pad_token_id)
        label = "forward KL" if name == "fkl" else "generalized JSD, beta 0.5"
        rows.append(Row(
            item=f"KD training step ({label})",
            ours=f"{bs / s_o:.1f} ex/s",
            baseline=f"{bs / s_b:.1f} ex/s "
            + ("(TRL GKDTrainer)" if use_trl else "(TRL loss re-impl.; no TRL)"),
            ratio=ratio, ratio_text=f"{ratio:.2f}x throughput", goal=">= 1.0x (aim higher)",
            met=common.met(ratio >= 1.0),
            notes=[
                f"baseline: {baseline_name}, lmbda=0 (off-policy), beta={beta}; batch {bs}, "
                f"{mode['kd_length']} tokens per example, {int(mode['kd_steps'])} steady steps after "
                f"{warm} warm-up, student gpt2 "
                f"{mode['student']['n_layer']}x{mode['student']['d_model']}, teacher gpt2 "
                f"{mode['teacher']['n_layer']}x{mode['teacher']['d_model']}, vocab {len(tok)}",
                f"s/step ours {', '.join(f'{x:.3f}' for x in per['ours'])}; "
                f"baseline {', '.join(f'{x:.3f}' for x in per['baseline'])}; best-of-n ratio {best:.2f}x",
                f"same objective: |our loss - TRL formula| on one batch = {diff:.1e}",
            ],
        ))
        if name == "fkl":
            extra["fkl_step_s"] = s_o
            extra["teacher_share"] = common.median(shares)
    extra["baseline_name"] = baseline_name
    return rows, extra


def bench_cached_teacher(mode: dict, extra: dict) -> Row:
    """Whole KD student runs: :func:`kdprivacy.kd.kd.distill_kd` with ``teacher_top_k`` (one teacher pass,
    cached) vs without (teacher forward every step) -- the ``kd`` method's two settings; then the loss attack
    on both students (members = the teacher's SFT data)."""
    from kdprivacy.mia import metrics, scoring
    from kdprivacy.config import KD, Train
    from kdprivacy.kd import kd as word_kd
    from kdprivacy.kd import teacher as kd_teacher
    from kdprivacy.train import loop

    tok = common.tokenizer(mode)
    pad = tok.pad_token_id
    n_mem, n_pub = int(mode["cache_members"]), int(mode["cache_public"])
    pool = common.items(mode, 2 * n_mem + n_pub, seed=31)  # one draw, sliced: disjoint by construction
    members, nonmembers, public = pool[:n_mem], pool[n_mem : 2 * n_mem], pool[2 * n_mem :]
    bs, k = int(mode["kd_batch"]), int(mode["cache_top_k"])
    teacher = common.model(mode, mode["teacher"], seed=1)
    teacher, _ = loop.sft(teacher, members, None, Train(epochs=int(mode["cache_teacher_epochs"]), lr=LR,
                                                        batch_size=bs), pad)
    kd_teacher.freeze(teacher)
    student0 = common.model(mode, mode["student"], seed=2)
    cfg = Train(epochs=int(mode["cache_epochs"]), lr=LR, batch_size=bs, weight_decay=0.01, grad_clip=1.0,
                scheduler="cosine")
    labels = [1] * n_mem + [0] * n_mem
    out: dict[str, object] = {}
    times: dict[str, list[float]] = {"ours": [], "baseline": []}

    def run(side: str) -> None:  # times the training only; the attack below is the same on both sides
        kd_cfg = KD(objective="fkl") if side == "baseline" else KD(objective="fkl", teacher_top_k=k)
        started = time.perf_counter()
        student, _ = word_kd.distill_kd(copy.deepcopy(student0), teacher, public, None, cfg, kd_cfg, pad)
        times[side].append(time.perf_counter() - started)
        nll = scoring.mean_nll(student, members + nonmembers, scoring.ScoringPass(32, pad))
        out[side] = metrics.roc_auc(-nll, labels)

    common.interleaved({"ours": lambda: run("ours"), "baseline": lambda: run("baseline")},
                       int(mode["cache_repeats"]), warmup=False)
    t_o, t_b = common.median(times["ours"]), common.median(times["baseline"])
    ratio = t_b / t_o
    teacher_nll = scoring.mean_nll(teacher, members + nonmembers, scoring.ScoringPass(32, pad))
    teacher_auc = metrics.roc_auc(-teacher_nll, labels)
    share = extra.get("teacher_share")
    bound = f"; the step-level bound from the KD row: <= {1 / max(1 - share, 1e-9):.2f}x" if share else ""
    vocab = teacher.get_output_embeddings().weight.shape[0]
    return Row(
        item=f"off-policy KD, frozen teacher: cached top-k teacher logits (k={k})",
        ours=f"{common.fmt_s(t_o)} per student (cache pass included)",
        baseline=f"{common.fmt_s(t_b)} (teacher forward every step)",
        ratio=ratio, ratio_text=f"{common.speedup(ratio)}; loss-attack AUC {out['ours']:.3f} vs "
                                f"{out['baseline']:.3f} ({out['ours'] - out['baseline']:+.3f})",
        goal="optional cache; ratio + AUC change", met=common.met(ratio > 1.0),
        notes=[
            (f"kd.teacher_top_k={k} of a {vocab}-token vocabulary (the main path: distill_kd, i.e. the kd "
             f"method with that config key); {n_pub} public examples x {cfg.epochs} epochs, batch {bs}, "
             f"student gpt2 {mode['student']['n_layer']}x{mode['student']['d_model']}, teacher gpt2 "
             f"{mode['teacher']['n_layer']}x{mode['teacher']['d_model']} after {mode['cache_teacher_epochs']} "
             f"SFT epochs on {n_mem} members (its loss-attack AUC {teacher_auc:.3f})"),
            (f"ours {common.spread(times['ours'])}; baseline {common.spread(times['baseline'])}{bound} "
             "(the cache pass is one teacher epoch; it pays off from the second epoch on)"),
            (f"AUC: loss attack on both students, {n_mem} members vs {n_mem} non-members; the cached student "
             "learns the teacher's top-k log-probs plus one tail bucket, a coarsening that can only lose "
             "information (exact when k >= vocabulary; tested)"),
        ],
    )
