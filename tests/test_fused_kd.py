"""The fused, chunked KD loss (kdprivacy.kd.fused) against the plain full-logits path: same loss, same
statistics, same gradients, on GPT-2, OPT and LLaMA Hugging Face models; the models it must refuse."""

from __future__ import annotations

import copy

import pytest
import torch
import transformers as tf

from kdprivacy.encoding import Encoded, collate
from kdprivacy.kd import fused, objectives
from kdprivacy.kd import teacher as kd_teacher

V = 211


def _model(arch: str, layers: int, width: int, seed: int, **extra):
    torch.manual_seed(seed)
    if arch == "gpt2":
        return tf.GPT2LMHeadModel(tf.GPT2Config(n_layer=layers, n_embd=width, n_head=2, vocab_size=V,
                                                n_positions=64, bos_token_id=0, eos_token_id=0, **extra))
    if arch == "opt":
        return tf.OPTForCausalLM(tf.OPTConfig(num_hidden_layers=layers, hidden_size=width, ffn_dim=2 * width,
                                              num_attention_heads=2, vocab_size=V, word_embed_proj_dim=width // 2,
                                              max_position_embeddings=64, bos_token_id=0, eos_token_id=0,
                                              pad_token_id=1, **extra))
    if arch == "llama":
        return tf.LlamaForCausalLM(tf.LlamaConfig(num_hidden_layers=layers, hidden_size=width,
                                                  intermediate_size=2 * width, num_attention_heads=2,
                                                  vocab_size=V, bos_token_id=0, eos_token_id=0, pad_token_id=1,
                                                  tie_word_embeddings=False, **extra))
    if arch == "gemma2":  # logit soft-capping after the head: not a plain chain
        return tf.Gemma2ForCausalLM(tf.Gemma2Config(num_hidden_layers=layers, hidden_size=width,
                                                    intermediate_size=2 * width, num_attention_heads=2,
                                                    num_key_value_heads=1, head_dim=width // 2, vocab_size=V,
                                                    bos_token_id=0, eos_token_id=0, pad_token_id=1,
                                                    final_logit_softcapping=5.0, **extra))
    raise ValueError(arch)


def _batch(n: int = 5):
    items = [Encoded(f"x{i}", tuple((7 * i + 3 * j) % (V - 2) + 2 for j in range(4 + i)),
                     tuple((11 * i + 5 * j) % (V - 2) + 2 for j in range(3 + 2 * i))) for i in range(n)]
    return collate(items, 1)


def _run(student, teacher, divergence, lm_weight, batch, fused_on: bool):
    student = copy.deepcopy(student)  # train mode: dropout on, from the same seed (the same mask on both paths)
    student.zero_grad(set_to_none=True)
    torch.manual_seed(1234)
    loss, stats = kd_teacher.kd_loss_fn(teacher, divergence, lm_weight, fused=fused_on)(student, batch)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in student.named_parameters() if p.grad is not None}
    return loss.item(), stats, grads


OBJ = [("fkl", {}), ("rkl", {}), ("jsd", {"beta": 0.5}), ("jsd", {"beta": 0.0}), ("jsd", {"beta": 1.0}),
       ("tvd", {}), ("sfkl", {"alpha": 0.1}), ("srkl", {"alpha": 0.1})]


@pytest.mark.parametrize("arch", ["gpt2", "opt", "llama"])
def test_fused_equals_plain_loss_and_gradients(arch, monkeypatch):
    monkeypatch.setattr(fused, "CHUNK_ELEMENTS", 1)  # 16 positions per chunk: several chunks per batch
    student = _model(arch, 1, 32, seed=1)
    teacher = kd_teacher.freeze(_model(arch, 2, 48, seed=2))
    batch = _batch()
    n_targets = int(batch["response_mask"][:, 1:].sum())
    assert n_targets > 2 * fused.chunk_size(V)
    assert fused.head_chain(student, trainable=True) is not None
    for name, hp in OBJ:
        for temperature in (1.0, 2.0):
            for lm_weight in (0.0, 0.3):
                div = objectives.get_objective(name, temperature=temperature, **hp)
                plain = _run(student, teacher, div, lm_weight, batch, fused_on=False)
                mine = _run(student, teacher, div, lm_weight, batch, fused_on=True)
                assert mine[0] == pytest.approx(plain[0], rel=1e-5, abs=1e-7), (name, hp, temperature, lm_weight)
                for key in ("kd_loss", "lm_loss"):
                    assert mine[1][key] == pytest.approx(plain[1][key], rel=1e-5, abs=1e-7)
                assert plain[2].keys() == mine[2].keys()
                for key, g in plain[2].items():
                    scale = float(g.abs().max()) + 1e-12
                    assert float((g - mine[2][key]).abs().max()) <= 1e-4 * scale + 1e-9, (name, key)


def test_tied_head_gets_both_gradients():
    student = _model("gpt2", 1, 32, seed=3)  # GPT-2 ties the head to the token embedding
    assert student.get_output_embeddings().weight is student.get_input_embeddings().weight
    teacher = kd_teacher.freeze(_model("gpt2", 1, 32, seed=4))
    div = objectives.get_objective("fkl")
    plain = _run(student, teacher, div, 0.0, _batch(), fused_on=False)
    mine = _run(student, teacher, div, 0.0, _batch(), fused_on=True)
    key = "transformer.wte.weight"
    torch.testing.assert_close(mine[2][key], plain[2][key], rtol=1e-4, atol=1e-9)


def test_empty_response_mask_gives_zero_and_finite_gradients():
    student = _model("llama", 1, 32, seed=1)
    teacher = kd_teacher.freeze(_model("llama", 1, 32, seed=2))
    batch = _batch()
    batch["response_mask"] = torch.zeros_like(batch["response_mask"])
    loss, stats, grads = _run(student, teacher, objectives.get_objective("fkl"), 0.3, batch, fused_on=True)
    assert loss == 0.0 and stats == {"kd_loss": 0.0, "lm_loss": 0.0}
    assert all(torch.isfinite(g).all() and float(g.abs().max()) == 0.0 for g in grads.values())


def test_no_grad_context_gives_the_same_value():
    student = _model("opt", 1, 32, seed=1)
    teacher = kd_teacher.freeze(_model("opt", 1, 32, seed=2))
    div = objectives.get_objective("jsd", beta=0.5)
    batch = _batch()
    with torch.no_grad():
        torch.manual_seed(0)
        a, _ = kd_teacher.kd_loss_fn(teacher, div, 0.0, fused=True)(student, batch)
        torch.manual_seed(0)
        b, _ = kd_teacher.kd_loss_fn(teacher, div, 0.0, fused=False)(student, batch)
    assert float(a) == pytest.approx(float(b), rel=1e-5)


def test_soft_capped_models_are_not_a_plain_chain_and_keep_the_plain_path():
    capped = _model("gemma2", 1, 32, seed=1)
    assert fused.head_chain(capped, trainable=True) is None
    assert fused.head_chain(capped, trainable=False) is None
    plain_student = _model("llama", 1, 32, seed=5)
    # a capped teacher: the student side still fuses, the teacher's logits come from its full forward
    for student, teacher in ((capped, kd_teacher.freeze(_model("llama", 1, 32, seed=2))),
                             (plain_student, kd_teacher.freeze(_model("gemma2", 1, 32, seed=6)))):
        div = objectives.get_objective("fkl", temperature=2.0)
        a = _run(student, teacher, div, 0.2, _batch(), fused_on=True)
        b = _run(student, teacher, div, 0.2, _batch(), fused_on=False)
        assert a[0] == pytest.approx(b[0], rel=1e-5)
        for key, g in b[2].items():
            assert float((g - a[2][key]).abs().max()) <= 1e-4 * (float(g.abs().max()) + 1e-12) + 1e-9


def test_the_chain_check_catches_a_changed_head():
    student = _model("gpt2", 1, 32, seed=1)
    assert fused._same_logits(student, *fused._parts(student))

    class Scaled(torch.nn.Module):  # a step after the decoder the model's own forward does not take
        def __init__(self, head):
            super().__init__()
            self.head = head
            self.weight = head.weight

        def forward(self, h):
            return 2 * self.head(h)

    decoder, head = fused._parts(student)
    assert not fused._same_logits(student, decoder, Scaled(head))


def test_vocabulary_mismatch_is_refused():
    student = _model("llama", 1, 32, seed=1)
    torch.manual_seed(0)
    other = tf.LlamaForCausalLM(tf.LlamaConfig(num_hidden_layers=1, hidden_size=32, intermediate_size=64,
                                               num_attention_heads=2, vocab_size=V + 5))
    with pytest.raises(ValueError, match="vocabulary"):
        kd_teacher.kd_loss_fn(other, objectives.get_objective("fkl"), 0.0)(student, _batch())


CLOSED = [("fkl", {}), ("rkl", {}), ("jsd", {"beta": 0.0}), ("jsd", {"beta": 1.0})]


def test_closed_form_gradients_are_picked_for_the_kl_objectives_only():
    for name, hp in CLOSED:
        assert fused.closed_form(objectives.get_objective(name, temperature=2.0, **hp)) is not None, name
    for name, hp in [("jsd", {"beta": 0.5}), ("tvd", {}), ("sfkl", {"alpha": 0.1}), ("srkl", {"alpha": 0.0})]:
        assert fused.closed_form(objectives.get_objective(name, **hp)) is None, name
    assert fused.closed_form(lambda s, t, m: (s - t).sum()) is None  # an arbitrary callable: autograd
    from kdprivacy.config import KD

    assert fused.closed_form(kd_teacher.divergence_of(KD(objective="fkl"))) is not None  # the workflow's


@pytest.mark.parametrize("name,hp", CLOSED)
@pytest.mark.parametrize("temperature", [1.0, 0.5, 3.0])
@pytest.mark.parametrize("lm_weight", [0.0, 0.4, 1.0])
def test_closed_form_equals_autograd_through_the_objective(name, hp, temperature, lm_weight):
    """Value and logit gradient against autograd through kdprivacy.kd.objectives (float64), including a
    teacher with -inf logits (a masked vocabulary entry) and a position where teacher == student."""
    gen = torch.Generator().manual_seed(0)
    s = torch.randn(6, 40, generator=gen, dtype=torch.float64) * 3
    t = torch.randn(6, 40, generator=gen, dtype=torch.float64) * 3
    t[1, :5] = float("-inf")
    t[2] = s[2]  # reference equal to the target: zero divergence, zero divergence gradient there
    targets = torch.randint(0, 40, (6,), generator=gen)
    div = objectives.get_objective(name, temperature=temperature, **hp)
    kd, lm, grad = fused.closed_form(div)(s, t, targets, lm_weight)
    leaf = s.clone().requires_grad_(True)
    ref_kd = div(leaf, t, torch.ones(6, dtype=torch.float64)) * 6
    ref_lm = torch.nn.functional.cross_entropy(leaf, targets, reduction="sum")
    ref = (1 - lm_weight) * ref_kd + lm_weight * ref_lm if lm_weight > 0 else ref_kd
    (ref_grad,) = torch.autograd.grad(ref, leaf)
    assert float(kd) == pytest.approx(ref_kd.item(), rel=1e-10, abs=1e-10)
    assert float(lm) == pytest.approx(ref_lm.item(), rel=1e-10)
    assert torch.allclose(grad, ref_grad, rtol=1e-9, atol=1e-9)
    if lm_weight == 0:
        assert float(grad[2].abs().max()) < 1e-12
