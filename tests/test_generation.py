"""Batched, seeded, KV-cached generation and MiniLLM's teacher-mixed sampling on tiny from-scratch models."""

from __future__ import annotations

import pytest
import torch

from kdprivacy import generation, models
from kdprivacy.encoding import Encoded, collate_prompts
from kdprivacy.generation import Sampling

WORDS = "river stone apple quiet lamp orbit violet seven marble cloud tiger paper honey window maple".split()
SPEC = {"arch": "gpt2", "n_layer": 2, "d_model": 32, "n_head": 4}


@pytest.fixture(scope="module")
def tokenizer():
    texts = [" ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(12)) for i in range(60)]
    return models.train_tokenizer(texts, vocab_size=300)


def _model(tokenizer, seed=0, **spec):
    return models.build_from_scratch({**SPEC, **spec}, tokenizer, max_positions=64, seed=seed).eval()


def _items(n=7):
    # prompts of different lengths (left padding matters), token ids well inside the vocabulary
    return [Encoded(f"ex-{i}", tuple(5 + (i * 13 + j * 7) % 250 for j in range(2 + i % 5)), ()) for i in range(n)]


def hf_greedy(model, items, max_new_tokens, batch_size, pad_id, eos_id):
    """Hugging Face's own batched greedy ``generate`` (left-padded prompts, shortest first): the oracle."""
    order = sorted(range(len(items)), key=lambda i: len(items[i].prompt_ids))
    results = [None] * len(items)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = collate_prompts([items[i] for i in idx], pad_id)
            out = model.generate(**batch, max_new_tokens=max_new_tokens, pad_token_id=pad_id, eos_token_id=eos_id,
                                 do_sample=False, num_beams=1)
            for slot, tokens in zip(idx, out[:, batch["input_ids"].shape[1] :].tolist()):
                results[slot] = generation.cut_after_eos(tokens, eos_id)
    return results


def test_greedy_batched_equals_unbatched_and_hf_generate(tokenizer):
    items = _items()
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    for arch in ("gpt2", "llama"):
        model = _model(tokenizer, arch=arch)
        batched = generation.generate(model, items, 10, 3, pad, eos, generation.GREEDY)
        alone = [generation.generate(model, [item], 10, 1, pad, eos, generation.GREEDY)[0] for item in items]
        assert batched == alone, arch
        # same tokens as Hugging Face's own greedy generate (KV cache + left-padding positions are right)
        hf = hf_greedy(model, items, 10, 4, pad, eos)
        assert batched == [tuple(t) for t in hf], arch
        assert all(isinstance(t, tuple) and 1 <= len(t) <= 10 for t in batched)


def test_seeded_sampling_is_reproducible_and_seed_dependent(tokenizer):
    model = _model(tokenizer)
    items = _items()
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    torch.manual_seed(123)
    global_state = torch.get_rng_state()
    a = generation.generate(model, items, 12, 3, pad, eos, Sampling(True, seed=1))
    assert torch.equal(torch.get_rng_state(), global_state), "sampling must not consume torch's global RNG"
    b = generation.generate(model, items, 12, 3, pad, eos, Sampling(True, seed=1))
    c = generation.generate(model, list(reversed(items)), 12, 7, pad, eos, Sampling(True, seed=1))[::-1]
    d = generation.generate(model, items, 12, 3, pad, eos, Sampling(True, seed=2))
    assert a == b == c  # same seed: same tokens, whatever the batch size and order
    assert a != d
    assert sum(x != y for x, y in zip(a, d)) >= len(items) - 1
    greedy = generation.generate(model, items, 12, 3, pad, eos, generation.GREEDY)
    assert a != greedy
    # a repeated id draws a different sample per occurrence (not a copy)
    twice = generation.generate(model, [items[0], items[0]], 12, 2, pad, eos, Sampling(True, seed=1))
    assert twice[0] == a[0] and twice[1] != twice[0]


def test_eos_cut_keeps_eos(tokenizer):
    model = _model(tokenizer)
    items = _items(4)
    pad = tokenizer.pad_token_id
    for do_sample in (False, True):
        free = generation.generate(model, items, 12, 4, pad, None, Sampling(do_sample, seed=5))
        assert all(len(t) == 12 for t in free)  # no EOS: exactly max_new_tokens
        eos = free[0][3]  # pretend the 4th token of the first row is EOS
        cut = generation.generate(model, items, 12, 4, pad, eos, Sampling(do_sample, seed=5))
        for full, short in zip(free, cut):
            want = full[: full.index(eos) + 1] if eos in full else full
            assert short == want
        assert cut[0][-1] == eos and len(cut[0]) <= 4
    assert generation.cut_after_eos([4, 2, 9, 2], 2) == (4, 2)
    assert generation.cut_after_eos([4, 9], 2) == (4, 9)


def test_generation_restores_mode_and_validates(tokenizer):
    model = _model(tokenizer).train()
    generation.generate(model, _items(2), 3, 2, tokenizer.pad_token_id, tokenizer.eos_token_id,
                        Sampling(True))
    assert model.training
    with pytest.raises(ValueError, match="max_new_tokens"):
        generation.generate(model, _items(2), 0, 2, 1, 0, generation.GREEDY)
    with pytest.raises(ValueError, match="temperature"):
        generation.generate(model, _items(2), 2, 2, 1, 0, Sampling(True, temperature=0.0))
    with pytest.raises(ValueError, match="empty prompt"):
        generation.generate(model, [Encoded("e", (), ())], 2, 2, 1, 0, generation.GREEDY)


def test_warp_logits_top_k_top_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = lambda warped: torch.isfinite(warped[0]).tolist()  # noqa: E731
    assert kept(generation.warp_logits(logits, top_k=2)) == [True, True, False, False]
    assert kept(generation.warp_logits(logits, top_p=0.6)) == [True, True, False, False]  # 0.5 < 0.6: crossing kept
    assert kept(generation.warp_logits(logits, top_p=0.5)) == [True, False, False, False]
    assert kept(generation.warp_logits(logits, top_p=0.01)) == [True, False, False, False]  # never empty
    assert kept(generation.warp_logits(logits)) == [True] * 4
    probs = torch.softmax(generation.warp_logits(logits, temperature=0.5), -1)
    assert probs[0, 0] > 0.5  # sharper


def test_mixed_sampling_endpoints_follow_student_and_teacher(tokenizer):
    student, teacher = _model(tokenizer, seed=0), _model(tokenizer, seed=1, n_layer=1)
    items = _items()
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    kw = dict(max_new_tokens=10, batch_size=3, pad_id=pad, eos_id=eos, sampling=Sampling(True, seed=4))
    s = generation.generate(student, items, **kw)
    t = generation.generate(teacher, items, **kw)
    assert s != t
    assert generation.mixed_sample(student, teacher, items, 0.0, **kw) == s
    assert generation.mixed_sample(student, teacher, items, 1.0, **kw) == t
    half = generation.mixed_sample(student, teacher, items, 0.5, **kw)
    assert half != s and half != t
    with pytest.raises(ValueError, match="alpha"):
        generation.mixed_sample(student, teacher, items, 1.5, **kw)
    with pytest.raises(ValueError, match="do_sample"):
        generation.mixed_sample(student, teacher, items, 0.5, **{**kw, "sampling": generation.GREEDY})


def test_mixed_sampling_draws_from_the_mixture(tokenizer):
    """First-token frequencies over many seeded draws match (1 − α)·q + α·p, not q or p alone."""
    student, teacher = _model(tokenizer, seed=0), _model(tokenizer, seed=3)
    prompt = Encoded("p", (11, 42, 77), ())
    n, alpha, warp = 800, 0.5, dict(temperature=0.5, top_k=4)
    draws = generation.mixed_sample(student, teacher, [prompt] * n, alpha, 1, 200, tokenizer.pad_token_id, None,
                                    Sampling(True, seed=0, **warp))
    counts = torch.bincount(torch.tensor([d[0] for d in draws]), minlength=len(tokenizer)).double() / n
    with torch.no_grad():
        ids = torch.tensor([prompt.prompt_ids])
        q = torch.softmax(generation.warp_logits(student(input_ids=ids).logits[0, -1:], **warp), -1)[0].double()
        p = torch.softmax(generation.warp_logits(teacher(input_ids=ids).logits[0, -1:], **warp), -1)[0].double()
    mix = (1 - alpha) * q + alpha * p
    tv = lambda a, b: 0.5 * (a - b).abs().sum().item()  # noqa: E731
    assert tv(q, p) > 0.3  # the two models really disagree
    assert tv(counts, mix) < 0.08  # sampling noise at n = 800 is about 0.03-0.05
    assert tv(counts, mix) < tv(counts, q) / 2 and tv(counts, mix) < tv(counts, p) / 2


def test_with_responses():
    items = [Encoded("a", (1, 2, 3), (9,)), Encoded("b", (4,), ())]
    out = generation.with_responses(items, [(5, 6, 7, 8), [0]], max_length=5)
    assert out == [Encoded("a", (1, 2, 3), (5, 6)), Encoded("b", (4,), (0,))]
    with pytest.raises(ValueError, match="responses"):
        generation.with_responses(items, [(5,)], max_length=5)
    with pytest.raises(ValueError, match="empty"):
        generation.with_responses(items[:1], [()], max_length=5)
    with pytest.raises(ValueError, match="no room"):
        generation.with_responses(items[:1], [(1,)], max_length=3)


def test_prompt_pass_keeps_only_the_last_logits_and_matches_hf_on_saved_hf_models(tmp_path, tokenizer):
    """GPT-2, OPT and LLaMA directories written with ``save_pretrained`` (the ``name_or_path`` route): the
    prompt pass asks for the last position's logits only, and the tokens stay Hugging Face ``generate``'s."""
    import transformers as tf

    vocab, pad, eos = len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id
    configs = {
        "gpt2": tf.GPT2Config(vocab_size=vocab, n_positions=64, n_embd=32, n_layer=2, n_head=4),
        "opt": tf.OPTConfig(vocab_size=vocab, max_position_embeddings=64, hidden_size=32, ffn_dim=64,
                            num_hidden_layers=2, num_attention_heads=4, word_embed_proj_dim=32),
        "llama": tf.LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64),
    }
    items = _items()
    for arch, config in configs.items():
        torch.manual_seed(0)
        tf.AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / arch)
        model = models.load_model(str(tmp_path / arch)).eval()
        assert generation._last_logits_kwargs(model) == {"logits_to_keep": 1}, arch
        seen = []
        hook = model.lm_head.register_forward_hook(lambda _m, _i, out: seen.append(out.shape[1]))
        ours = generation.generate(model, items, 6, 4, pad, eos, generation.GREEDY)
        hook.remove()
        # one LM-head row per sequence in every forward, the prompt pass included (not one per prompt token)
        assert seen and set(seen) == {1}, (arch, seen)
        assert ours == [tuple(t) for t in hf_greedy(model, items, 6, 4, pad, eos)], arch


def test_models_without_logits_to_keep_get_every_logit_row():
    class Plain(torch.nn.Module):
        def forward(self, input_ids, attention_mask=None, position_ids=None, use_cache=True):
            raise AssertionError("not called")

    assert generation._last_logits_kwargs(Plain()) == {}
