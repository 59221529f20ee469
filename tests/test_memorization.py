import numpy as np
import pandas as pd
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from kdprivacy import memorization
from kdprivacy.encoding import Encoded, collate

PAD, EOS, VOCAB = 0, 1, 50


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run faster on one thread (and do not fight parallel jobs for the 2 cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_model(seed=0, n_embd=32):
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=VOCAB, n_layer=2, n_embd=n_embd, n_head=2, n_positions=64,
                        eos_token_id=EOS, bos_token_id=EOS, pad_token_id=PAD,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return GPT2LMHeadModel(config).eval()


# ------------------------------------------------------------------------------------ positional_match
def test_positional_match_exact():
    assert memorization.positional_match([5, 6, 7, EOS], [5, 6, 7, EOS], k=32) == (4, 4)


def test_positional_match_partial_and_k():
    ref = list(range(10, 50))  # 40 tokens
    gen = list(ref)
    gen[3] = 2
    gen[31] = 2
    gen[35] = 2  # beyond k: never compared
    assert memorization.positional_match(gen, ref, k=32) == (32, 30)


def test_positional_match_short_generation_counts_misses():
    assert memorization.positional_match([5, 6], [5, 6, 7, 8, EOS], k=32) == (5, 2)
    assert memorization.positional_match([], [5, 6], k=32) == (2, 0)


def test_positional_match_short_reference_never_counts_padding():
    # Reference of 3 tokens (ending with EOS): only 3 positions compared, whatever was generated after.
    assert memorization.positional_match([5, EOS, PAD, PAD], [5, 6, EOS], k=32) == (3, 1)
    assert memorization.positional_match([5, 6, EOS, 9, 9, 9], [5, 6, EOS], k=32) == (3, 3)


def test_cut_after_eos():
    assert memorization.cut_after_eos([4, EOS, PAD, PAD], EOS) == [4, EOS]
    assert memorization.cut_after_eos([4, 5], EOS) == [4, 5]


# ------------------------------------------------------------------------------------ greedy_generate
def items_with_prompts(seed=0, n=6):
    rng = np.random.default_rng(seed)
    return [
        Encoded(f"x{i}", tuple(int(t) for t in rng.integers(2, VOCAB, int(rng.integers(2, 12)))), (7, 8, EOS))
        for i in range(n)
    ]


def test_batched_equals_unbatched_generate():
    model = tiny_model(seed=1)
    items = items_with_prompts()
    batched = memorization.greedy_generate(model, items, 12, batch_size=4, pad_id=PAD, eos_id=EOS)
    for item, tokens in zip(items, batched):
        ids = torch.tensor([item.prompt_ids])
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=12,
                                 do_sample=False, num_beams=1, pad_token_id=PAD, eos_token_id=EOS)
        alone = memorization.cut_after_eos(out[0, ids.shape[1]:].tolist(), EOS)
        assert tokens == alone
        assert 1 <= len(tokens) <= 12


def test_generation_ignores_saved_no_repeat_ngram():
    # A model whose saved generation config forbids repeated n-grams must still decode plainly.
    model = tiny_model(seed=2)
    items = items_with_prompts(seed=3, n=3)
    plain = memorization.greedy_generate(model, items, 16, batch_size=3, pad_id=PAD, eos_id=EOS)
    assert any(len(set(tokens)) < len(tokens) for tokens in plain)  # a repeat that the setting would forbid
    model.generation_config.no_repeat_ngram_size = 1
    model.generation_config.repetition_penalty = 5.0
    again = memorization.greedy_generate(model, items, 16, batch_size=3, pad_id=PAD, eos_id=EOS)
    assert again == plain


def test_memorized_sequences_match_fully():
    torch.manual_seed(0)
    model = tiny_model(seed=0, n_embd=64).train()
    items = [
        Encoded("m0", (3, 4, 5, 6), (10, 11, 12, 13, 14, 15, EOS)),
        Encoded("m1", (20, 21), (30, 31, 32, 33, EOS)),
        Encoded("m2", (40, 41, 42), (44, 45, 46, 47, 48, 49, 2, EOS)),
    ]
    batch = collate(items, PAD)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(120):  # overfit: the three sequences are memorized verbatim
        loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05
    model.eval()
    table = memorization.memorization_table(model, items, k=32, batch_size=3, pad_id=PAD, eos_id=EOS)
    assert list(table.columns) == memorization.MEMORIZATION_COLUMNS
    assert table.id.tolist() == ["m0", "m1", "m2"]
    assert table.n_compared.tolist() == [7, 5, 8]
    assert table.match_rate.tolist() == [1.0, 1.0, 1.0]
    assert table.exact_prefix.all()


# ------------------------------------------------------------------------------------ summary
def test_summarize_memorization():
    frame = pd.DataFrame(
        {"label": [1, 1, 0, 0, 0], "match_rate": [1.0, 0.5, 0.25, 0.0, 0.5],
         "exact_prefix": [True, False, False, False, False]}
    )
    out = memorization.summarize_memorization(frame)
    assert out["member_rate"] == pytest.approx(0.75)
    assert out["nonmember_rate"] == pytest.approx(0.25)
    assert out["gap"] == pytest.approx(0.5)
    assert out["member_exact_rate"] == pytest.approx(0.5)
    assert out["nonmember_exact_rate"] == 0.0
    assert (out["n_members"], out["n_nonmembers"]) == (2, 3)
