"""MiniLLM (Gu et al. 2024): reverse KL(q ‖ p) optimised by policy gradient on samples from the
teacher-mixed distribution ``p̃ = (1 − α) q + α p`` (α = 0.2), with

* single-step regularization: the per-position reverse KL computed exactly over the vocabulary (its
  gradient replaces the token's own reward in the policy gradient);
* long-term reward with length normalization: ``A_t = (1/(T−t)) Σ_{t' > t} γ^{t'−t−1} r_t'``,
  ``r_t = log p(y_t | y<t, x) − log q_old(y_t | y<t, x)`` (the paper's R_{t+1}^Norm; ``gamma`` γ = 1 by
  default, the paper's formula; the LMOps code discounts with 0.95, ``protocol: paper``);
* importance weight ``w_t = q_old(y_t)/p̃(y_t)`` (per token, as the paper approximates) and a PPO-style
  clipped ratio ``ρ_t = w_t · q_θ(y_t)/q_old(y_t)``, clipped to [1 − ε, 1 + ε];
* plus ``lm_weight`` × LM loss on the batch's public ground truth (MiniLLM's L_PT).

``ppo_epochs`` consecutive optimizer steps reuse one rollout (q_old fixed at sampling time). torch is
imported where it is used, so that the config can read :class:`MiniLLMParams` without it.

Its params are :class:`kdprivacy.kd.pretrain.PretrainParams` (``disable_dropout``, and the optional
pretraining LM loss: ``pretrain_weight``, ``pretrain_kd_ratio``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kdprivacy.fields import Fraction, NonNegFloat, PosFloat, PosInt
from kdprivacy.kd.pretrain import PretrainParams

if TYPE_CHECKING:
    import torch


class MiniLLMParams(PretrainParams):
    alpha: Fraction = 0.2
    clip_eps: PosFloat = 0.2
    lm_weight: NonNegFloat = 1.0
    ppo_epochs: PosInt = 1
    length_norm: bool = True
    single_step_reg: bool = True
    whiten: bool = True
    gamma: Fraction = 1.0


def _gather(log_probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def future_mean_rewards(
    rewards: torch.Tensor, mask: torch.Tensor, length_norm: bool = True, gamma: float = 1.0
) -> torch.Tensor:
    """``A_t = Σ_{t' > t} γ^{t'−t−1} r_t'`` over masked positions, divided by their number when
    ``length_norm`` (MiniLLM's length-normalised long-term reward R_{t+1}^Norm; LMOps divides its discounted
    return the same way); 0 where nothing follows, and off the mask."""
    import torch

    mask = mask.to(rewards.dtype)
    r = rewards * mask
    if gamma == 1.0:
        suffix = r.flip(-1).cumsum(-1).flip(-1) - r
    else:
        suffix, running = torch.zeros_like(r), torch.zeros_like(r[:, 0])
        for t in range(r.shape[-1] - 1, -1, -1):
            suffix[:, t] = running
            running = r[:, t] + gamma * running
    if not length_norm:
        return suffix * mask
    count = mask.flip(-1).cumsum(-1).flip(-1) - mask
    return torch.where(count > 0, suffix / count.clamp_min(1.0), torch.zeros_like(suffix)) * mask


def _whiten(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    import torch

    weight = mask.to(values.dtype)
    n = weight.sum().clamp_min(1.0)
    mean = (values * weight).sum() / n
    var = (((values - mean) * weight) ** 2).sum() / n
    return (values - mean) * torch.rsqrt(var + 1e-8) * weight


class _MiniLLM:
    """State shared by MiniLLM's ``make_batch`` (rollouts) and ``loss_fn`` (the policy-gradient loss)."""

    def __init__(self, student, teacher, run, pad_id: int, eos_id: int, guard):
        from kdprivacy.kd.sampling import StudentSampler

        self.student, self.teacher, self.run, self.pad_id, self.eos_id = student, teacher, run, pad_id, eos_id
        self.p, self.gen = run.params, run.sampling
        self.guard = guard
        self.sampler = StudentSampler(self.gen, pad_id, eos_id, run.max_length, run.seed, guard)
        self.rollout: dict | None = None
        self.uses = 0

    def make_batch(self, items):
        """Ground truth for the LM term + a rollout (fresh, or reused for ``ppo_epochs`` steps)."""
        from kdprivacy.encoding import collate

        if self.rollout is None or self.uses >= int(self.p.ppo_epochs):
            import torch

            from kdprivacy import generation, models
            from kdprivacy.kd.sampling import sampling_model
            from kdprivacy.train.losses import forward_logits, model_device, to_device

            self.sampler.check(items)
            g = self.gen
            tokens = generation.mixed_sample(
                sampling_model(self.student),
                self.teacher,
                items,
                self.p.alpha,
                g.max_new_tokens,
                g.batch_size,
                self.pad_id,
                self.eos_id,
                generation.Sampling.of(g, self.sampler.next_seed(), do_sample=True),
            )
            samples = generation.with_responses(items, tokens, self.run.max_length)
            self.sampler.check(samples)
            self.sampler.record(samples)
            device = model_device(self.student)
            batch = to_device(collate(samples, self.pad_id), device)
            was_training = self.student.training
            self.student.eval()  # q_old = the policy that sampled (no dropout)
            try:
                # loss precision: the first step's ratio q_θ/q_old is 1 (dropout off: disable_dropout)
                with torch.no_grad(), models.autocast(self.run.train.precision, device):
                    teacher_logits = forward_logits(self.teacher, batch).float()
                    student_logits = forward_logits(self.student, batch).float()
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
        keep = self.rollout is not None and self.uses < int(self.p.ppo_epochs)
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
        import torch
        import torch.nn.functional as F

        from kdprivacy import generation
        from kdprivacy.encoding import shift_for_causal_lm

        p, g = self.p, self.gen
        batch = rollout["batch"]
        s, targets, mask = shift_for_causal_lm(logits.float(), batch["input_ids"], batch["response_mask"])
        t = rollout["teacher_logits"][:, :-1].to(s.device)
        old_logq = _gather(F.log_softmax(s, -1), targets)
        logp = _gather(F.log_softmax(t, -1), targets)
        rewards = (logp - old_logq) * mask
        # the distribution the tokens were actually drawn from (same warping as the sampler)
        q_warp = generation._sampling_probs(s, float(g.temperature), int(g.top_k), float(g.top_p))
        p_warp = generation._sampling_probs(t, float(g.temperature), int(g.top_k), float(g.top_p))
        mix = (1.0 - p.alpha) * _gather(q_warp, targets) + p.alpha * _gather(p_warp, targets)
        log_w = old_logq - torch.log(mix.clamp_min(1e-30))
        w = torch.exp(log_w.clamp(max=20.0)) * mask
        adv = future_mean_rewards(rewards, mask, bool(p.length_norm), float(p.gamma))
        if p.whiten:
            adv = _whiten(adv, mask)
        lengths = mask.sum(-1).clamp_min(1.0)
        return {"old_logq": old_logq, "w": w, "adv": adv.detach(), "mask": mask,
                "reward": float(((rewards.sum(-1)) / lengths).mean())}

    def loss_fn(self, student, batch):
        import torch
        import torch.nn.functional as F

        from kdprivacy.encoding import shift_for_causal_lm
        from kdprivacy.kd import objectives
        from kdprivacy.train.losses import forward_logits, lm_loss

        rollout = batch["rollout"]
        rb = rollout["batch"]
        logits = forward_logits(student, rb)
        old = rollout["old"]
        s, targets, mask = shift_for_causal_lm(logits.float(), rb["input_ids"], rb["response_mask"])
        logq = _gather(F.log_softmax(s, -1), targets)
        eps = float(self.p.clip_eps)
        ratio = torch.exp((logq - old["old_logq"]) * mask) * old["w"]
        pg1 = -old["adv"] * ratio
        pg2 = -old["adv"] * ratio.clamp(1.0 - eps, 1.0 + eps)
        n = mask.sum().clamp_min(1.0)
        pg_loss = (torch.maximum(pg1, pg2) * mask).sum() / n
        clip_frac = ((((ratio - 1.0).abs() > eps).float() * mask).sum() / n).item()
        teacher_logits = rollout["teacher_logits"][:, :-1].to(s.device)
        reg = objectives.reverse_kl(s, teacher_logits, mask)  # exact KL(q_θ ‖ p) per position
        loss = pg_loss + (reg if self.p.single_step_reg else 0.0)
        lm_weight = float(self.p.lm_weight)
        with torch.set_grad_enabled(torch.is_grad_enabled() and lm_weight > 0):
            lm, _ = lm_loss(student, batch)
        if lm_weight > 0:
            loss = loss + lm_weight * lm
        stats = {"pg_loss": pg_loss.item(), "reg_loss": reg.item(), "lm_loss": lm.item(), "reward": old["reward"],
                 "rev_kl": reg.item(), "clip_frac": clip_frac, "sample_len": rollout["length"],
                 "mean_w": ((old["w"] * mask).sum() / n).item()}
        return loss, stats


def train(student, teacher, train_items, dev_items, run, pad_id, log=None, *, eos_id=None, guard=None, resume=None,
          on_step=None, pretrain_items=None, **_):
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
    from kdprivacy.kd.pretrain import with_pretrain
    from kdprivacy.kd.sampling import MethodState, eos_id_of
    from kdprivacy.kd.teacher import prepare_teacher
    from kdprivacy.train.loop import fit

    teacher = prepare_teacher(student, teacher, "minillm")
    state = _MiniLLM(student, teacher, run, pad_id, eos_id_of(student, eos_id), guard)

    make_batch, loss_fn, pretrain_parts = with_pretrain(state.p, pretrain_items, teacher, state.make_batch,
                                                        state.loss_fn, run.train.batch_size, run.seed, pad_id)
    # without the pretraining loss the method state is the rollout object itself, as before
    method_state = MethodState(minillm=state, **pretrain_parts) if pretrain_parts else state

    def on_epoch_end(epoch, row):
        extra = {"n_sgo_generated": state.sampler.n_sequences}
        state.sampler.reset_counts()
        return extra

    return fit(student, train_items, dev_items, run.train, pad_id, loss_fn, log, desc="student[minillm]",
               make_batch=make_batch, on_epoch_end=on_epoch_end, seed=run.seed, state=method_state, resume=resume,
               on_step=on_step)
