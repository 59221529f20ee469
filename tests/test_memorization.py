import contextlib
import logging
import math

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from kdprivacy import encoding, generation, models
from kdprivacy.memorization import extraction
from kdprivacy.encoding import Encoded, collate
from kdprivacy.stats import NO_BOOTSTRAP, Bootstrap

PAD, EOS, VOCAB = 0, 1, 50


def tiny_model(seed=0, n_embd=32, vocab=VOCAB, eos=EOS, pad=PAD):
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=vocab, n_layer=2, n_embd=n_embd, n_head=2, n_positions=256,
                        eos_token_id=eos, bos_token_id=eos, pad_token_id=pad,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return GPT2LMHeadModel(config).eval()


# ------------------------------------------------------------------------------------ positional_match
def test_positional_match_exact():
    assert extraction.positional_match([5, 6, 7, EOS], [5, 6, 7, EOS], k=32) == (4, 4)


def test_positional_match_partial_and_k():
    ref = list(range(10, 50))  # 40 tokens
    gen = list(ref)
    gen[3] = 2
    gen[31] = 2
    gen[35] = 2  # beyond k: never compared
    assert extraction.positional_match(gen, ref, k=32) == (32, 30)


def test_positional_match_short_generation_counts_misses():
    assert extraction.positional_match([5, 6], [5, 6, 7, 8, EOS], k=32) == (5, 2)
    assert extraction.positional_match([], [5, 6], k=32) == (2, 0)


def test_positional_match_short_reference_never_counts_padding():
    # Reference of 3 tokens (ending with EOS): only 3 positions compared, whatever was generated after.
    assert extraction.positional_match([5, EOS, PAD, PAD], [5, 6, EOS], k=32) == (3, 1)
    assert extraction.positional_match([5, 6, EOS, 9, 9, 9], [5, 6, EOS], k=32) == (3, 3)


def test_cut_after_eos():
    assert list(generation.cut_after_eos([4, EOS, PAD, PAD], EOS)) == [4, EOS]
    assert list(generation.cut_after_eos([4, 5], EOS)) == [4, 5]


# ------------------------------------------------------------------------------------ token metrics
def test_fixed_positions_divide_by_k():
    """The authors' window (memorization.match_positions: fixed): a 10-token reference reproduced whole is
    10/32, ours 10/10; a longer reference is the same either way."""
    ref = [5, 6, 7, 8, 9, 10, 11, 12, 13, EOS]
    assert extraction.positional_match(ref, ref, k=32) == (10, 10)
    assert extraction.positional_match(ref, ref, k=32, positions="fixed") == (32, 10)
    fixed = extraction.token_metrics(ref, ref, k=32, budget=32, positions="fixed")
    ours = extraction.token_metrics(ref, ref, k=32, budget=32)
    assert ours["match_rate"] == 1.0 and fixed["match_rate"] == pytest.approx(10 / 32)
    assert fixed["exact_k"] and ours["exact_k"]  # every reference position reproduced, either way
    long = list(range(40, 80)) + [EOS]
    assert extraction.positional_match(long, long, k=32, positions="fixed") == (32, 32)
    with pytest.raises(ValueError, match="positions"):
        extraction.positional_match(ref, ref, k=32, positions="all")


def test_token_metrics_exact_match():
    out = extraction.token_metrics([5, 6, 7, EOS], [5, 6, 7, EOS], k=32, budget=40)
    assert out == {"n_reference": 4, "n_generated": 4, "n_compared": 4, "n_matched": 4, "match_rate": 1.0,
                   "exact_k": True, "exact_full": True}


def test_token_metrics_exact_k_but_not_full():
    ref = list(range(10, 30)) + [EOS]  # 21 tokens
    gen = ref[:8] + [2, 3, EOS]
    out = extraction.token_metrics(gen, ref, k=8, budget=32)
    assert (out["n_compared"], out["n_matched"], out["exact_k"], out["exact_full"]) == (8, 8, True, False)
    # A generation that stops one token short of the reference is not a full reproduction.
    out = extraction.token_metrics(ref[:-1], ref, k=32, budget=32)
    assert (out["n_matched"], out["exact_k"], out["exact_full"]) == (20, False, False)


def test_token_metrics_padding_never_a_miss():
    # generate() pads finished rows; cut_after_eos removes that and the reference is 3 tokens: a full match.
    gen = list(generation.cut_after_eos([5, 6, EOS, PAD, PAD, PAD], EOS))
    out = extraction.token_metrics(gen, [5, 6, EOS], k=32, budget=32)
    assert (out["n_compared"], out["n_matched"], out["match_rate"], out["exact_full"]) == (3, 3, 1.0, True)


def test_token_metrics_reference_longer_than_budget_is_na():
    ref = list(range(2, 42))
    out = extraction.token_metrics(ref[:32], ref, k=32, budget=32)
    assert out["exact_k"] is True and out["exact_full"] is pd.NA
    # A reference truncated by max_length (no EOS) is reproduced when its tokens are.
    out = extraction.token_metrics(ref + [7, EOS], ref, k=32, budget=64)
    assert out["exact_full"] is True


def test_generation_budget():
    items = [Encoded("a", (3,), tuple(range(2, 12))), Encoded("b", (3,), tuple(range(2, 52)))]
    assert extraction.generation_budget(items, k=32) == 50
    assert extraction.generation_budget(items, k=64) == 64
    assert extraction.generation_budget(items, k=8, max_new_tokens=20) == 20
    assert extraction.generation_budget(items, k=32, max_new_tokens=20) == 32


# ------------------------------------------------------------------------------------ text / secrets
def test_rouge_threshold_hand_computed_lcs():
    # reference: the cat sat on the mat | prediction: the cat on the mat sat
    # LCS = "the cat on the mat" = 5 tokens; P = R = 5/6; F = 5/6.
    out = extraction.text_metrics("The cat, on the MAT... sat!", "the cat sat on the mat", rouge_threshold=0.8)
    assert out["rouge_l"] == pytest.approx(5 / 6)
    assert out["approx_memorized"] is True
    assert extraction.text_metrics("the cat on the mat sat", "the cat sat on the mat", 0.9)[
        "approx_memorized"] is False
    # >= threshold: exactly at the threshold counts as memorized
    assert extraction.text_metrics("a b", "a b c d", 2 / 3)["approx_memorized"] is True  # P=1, R=1/2, F=2/3
    assert extraction.text_metrics("", "a b", 0.0)["rouge_l"] == 0.0


def test_secret_metrics():
    out = extraction.secret_metrics("It employs 4711 people.", "4711", "How many people?", "",
                                      reference="It has 4711 staff.")
    assert out == {"secret_in_prompt": False, "secret_in_reference": True, "secret_hit": True}
    out = extraction.secret_metrics("No idea.", "Stanwood", "Where was she born?", "She was born in Stanwood.",
                                      reference="She was born in")  # truncated before the secret
    assert out == {"secret_in_prompt": True, "secret_in_reference": False, "secret_hit": False}
    none = {"secret_in_prompt": pd.NA, "secret_in_reference": pd.NA, "secret_hit": pd.NA}
    assert extraction.secret_metrics("x", "") == none
    assert extraction.secret_metrics("x", None) == none
    assert extraction.secret_metrics("stanwood", "Stanwood")["secret_hit"] is False  # case-sensitive


def test_reference_text_uses_truncated_reference(tokenizer):
    full = encoding.encode_example(tokenizer, "a", "Q?", "Clara Kowalczyk founded it.", 64, 16)
    assert extraction.reference_text(tokenizer, full, "Clara Kowalczyk founded it.") == (
        "Clara Kowalczyk founded it.")
    cut = encoding.encode_example(tokenizer, "a", "Q?", "Clara Kowalczyk founded it.", 8, 4)
    assert cut.response_ids[-1] != tokenizer.eos_token_id
    text = extraction.reference_text(tokenizer, cut, "Clara Kowalczyk founded it.")
    assert "Clara Kowalczyk founded it.".startswith(text) and len(text) < len("Clara Kowalczyk founded it.")


def test_exposure_from_hand_made_scores():
    # true -5; candidates -1 and -3 are more likely: rank 3 of C + 1 = 5
    rank, exposure = extraction.exposure_from_scores(-5.0, [-1.0, -3.0, -7.0, -9.0])
    assert rank == 3.0
    assert exposure == pytest.approx(math.log2(5) - math.log2(3))
    rank, exposure = extraction.exposure_from_scores(0.0, [-1.0, -2.0, -3.0])
    assert (rank, exposure) == (1.0, pytest.approx(2.0))  # most likely: log2(C + 1)
    rank, exposure = extraction.exposure_from_scores(-9.0, [-1.0, -2.0, -3.0])
    assert (rank, exposure) == (4.0, pytest.approx(0.0))  # least likely
    assert extraction.exposure_from_scores(-5.0, [-5.0, -9.0, -1.0])[0] == 2.5  # a tie counts half
    with pytest.raises(ValueError):
        extraction.exposure_from_scores(-1.0, [])


def test_extrapolated_exposure_against_the_gaussian_closed_form():
    """Carlini et al.'s distribution-fit exposure: on normal candidate scores the fit's tail is the normal's,
    -log2 sf(true); past the best candidate it keeps growing where the rank exposure stops at log2(C + 1)."""
    from scipy import stats as scipy_stats

    candidates = np.random.default_rng(0).normal(0.0, 1.0, 5000)
    for true, expected in ((3.0, -scipy_stats.norm.logsf(3.0) / math.log(2)),
                           (6.0, -scipy_stats.norm.logsf(6.0) / math.log(2))):
        assert extraction.extrapolated_exposure(true, candidates) == pytest.approx(expected, rel=0.1)
    capped = extraction.exposure_from_scores(6.0, candidates)[1]
    assert capped == pytest.approx(math.log2(5001))  # 12.3 bits: the rank exposure's ceiling
    assert extraction.extrapolated_exposure(6.0, candidates) > 2 * capped  # about 29.7 bits
    # a secret in the bulk has a small exposure; one far below every candidate about 0
    assert extraction.extrapolated_exposure(0.0, candidates) == pytest.approx(1.0, abs=0.1)
    assert extraction.extrapolated_exposure(-8.0, candidates) == pytest.approx(0.0, abs=1e-6)
    # not estimable: too few candidates, or all alike
    assert math.isnan(extraction.extrapolated_exposure(1.0, candidates[:9]))
    assert math.isnan(extraction.extrapolated_exposure(1.0, np.full(20, -3.0)))
    with pytest.raises(ValueError, match="NaN"):
        extraction.extrapolated_exposure(math.nan, candidates)


# ------------------------------------------------------------------------------------ with a tokenizer
WORDS = ("the company employs people across offices in town of was founded by and makes bread her name is "
         "Clara Jonas Marta Tomas Kowalczyk Lindqvist Okafor Moreau").split()


@pytest.fixture(scope="module")
def tokenizer():
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(WORDS, 12)) for _ in range(200)] + [
        encoding.format_prompt("Who founded it?", "x y"), "0123456789 ,.:?"]
    return models.train_tokenizer(texts, vocab_size=300, min_frequency=1)


def secret_frame():
    """Three toy records with canary secrets of the synthetic generator's 'person' format."""
    return pd.DataFrame({
        "id": ["m0", "m1", "m2"],
        "instruction": ["Who founded the bakery?", "Who runs the company?", "Who wrote the letter?"],
        "context": ["", "", "The letter was signed by Jonas Okafor."],
        "response": ["The bakery was founded by Clara Kowalczyk in town.",
                     "Marta Lindqvist runs the company and makes bread.",
                     "Jonas Okafor wrote the letter."],
        "secret": ["Clara Kowalczyk", "Marta Lindqvist", "Jonas Okafor"],
        "secret_kind": ["person", "person", "person"],
    })


def _fake_scorer(monkeypatch, tokenizer, loglik):
    """score_examples replaced by one whose log-likelihood is fixed per substituted name (``loglik``); returns
    the list of decoded responses it was asked to score."""
    seen = []

    def fake_score_examples(model, items, scoring_pass):
        rows = []
        for item in items:
            text = tokenizer.decode(item.response_ids, skip_special_tokens=True)
            (name,) = [n for n in loglik if n in text]
            seen.append(text)
            rows.append({"id": item.id, "n_tokens": 1, "token_logprobs": np.array([loglik[name]]),
                         "token_mu": np.zeros(1), "token_sigma": np.ones(1)})
        return pd.DataFrame(rows)

    monkeypatch.setattr(extraction.scoring, "score_examples", fake_score_examples)
    return seen


def test_canary_exposure_hand_made_likelihood_ordering(tokenizer, monkeypatch):
    """A fake scorer whose log-likelihood is fixed per substituted name: the rank follows that ordering."""
    frame = secret_frame().iloc[:1]
    true = frame.secret.item()
    from kdprivacy.data.synthetic import secret_candidates
    candidates = secret_candidates("person", 5, extraction.example_candidate_seed(7, "m0"), exclude=[true])
    # hand-made ordering: candidates[0] and candidates[1] are more likely than the truth, the rest less
    loglik = {candidates[0]: -1.0, candidates[1]: -2.0, true: -3.0, candidates[2]: -4.0, candidates[3]: -5.0,
              candidates[4]: -6.0}
    seen = _fake_scorer(monkeypatch, tokenizer, loglik)
    out = extraction.canary_exposure(None, tokenizer, frame, n_candidates=5, seed=7, batch_size=4,
                                       max_length=192, max_prompt_length=64)
    assert out.secret_rank.item() == 3.0
    assert out.exposure.item() == pytest.approx(math.log2(6) - math.log2(3))
    assert out.n_candidates.item() == 5
    assert math.isnan(out.exposure_extrapolated.item())  # 5 candidates are too few to fit a distribution
    # the secret is replaced, the rest of the response kept
    assert seen[0] == frame.response.item()
    assert seen[1] == frame.response.item().replace(true, candidates[0])


def test_canary_exposure_carries_the_extrapolated_exposure(tokenizer, monkeypatch):
    """12 candidates with hand-made log-likelihoods below the truth: the rank exposure is capped at log2(13),
    the extrapolated one is the skew-normal fit's on the same scores."""
    frame = secret_frame().iloc[:1]
    true = frame.secret.item()
    from kdprivacy.data.synthetic import secret_candidates
    candidates = secret_candidates("person", 12, extraction.example_candidate_seed(7, "m0"), exclude=[true])
    loglik = {true: 0.0, **{c: -5.0 - 0.5 * i for i, c in enumerate(candidates)}}
    _fake_scorer(monkeypatch, tokenizer, loglik)
    out = extraction.canary_exposure(None, tokenizer, frame, n_candidates=12, seed=7, batch_size=4,
                                     max_length=192, max_prompt_length=64)
    assert out.exposure.item() == pytest.approx(math.log2(13))
    expected = extraction.extrapolated_exposure(0.0, [loglik[c] for c in candidates])
    assert out.exposure_extrapolated.item() == pytest.approx(expected)
    assert expected > math.log2(13)


def test_canary_candidates_replace_every_copy_of_the_secret(tokenizer, monkeypatch):
    """A response holding the secret twice: every candidate variant replaces both copies, so no candidate
    text still contains the true secret (only the true variant, scored first, does)."""
    frame = secret_frame().iloc[:1].copy()
    true = frame.secret.item()
    frame.loc[0, "response"] = f"The bakery was founded by {true} in town; {true} still runs it."
    seen = []

    def fake_score_examples(model, items, scoring_pass):
        seen.extend(tokenizer.decode(item.response_ids, skip_special_tokens=True) for item in items)
        return pd.DataFrame([{"id": item.id, "n_tokens": 1, "token_logprobs": np.array([-1.0]),
                              "token_mu": np.zeros(1), "token_sigma": np.ones(1)} for item in items])

    monkeypatch.setattr(extraction.scoring, "score_examples", fake_score_examples)
    out = extraction.canary_exposure(None, tokenizer, frame, n_candidates=5, seed=7, batch_size=4,
                                       max_length=192, max_prompt_length=64)
    assert out.n_candidates.item() == 5 and len(seen) == 6
    assert seen[0] == frame.response.item()
    assert all(true not in text for text in seen[1:])


def test_canary_exposure_skips_with_reasons(tokenizer, caplog):
    frame = secret_frame()
    frame.loc[0, "secret"] = ""  # no secret
    frame.loc[1, "secret"] = "Tomas Moreau"  # not in the response
    frame.loc[2, "secret_kind"] = "shoe_size"  # no candidate drawer
    with caplog.at_level(logging.INFO):
        out = extraction.canary_exposure(tiny_model(vocab=len(tokenizer)), tokenizer, frame, 5, 0, 4, 192, 64,
                                           include_in_prompt=True)
    assert out.exposure.isna().all() and (out.n_candidates == 0).all()
    assert "no secret" in caplog.text and "not in the response" in caplog.text and "no candidates" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO):
        out = extraction.canary_exposure(tiny_model(vocab=len(tokenizer)), tokenizer, secret_frame(), 5, 0, 4,
                                           192, 64)
    assert out.n_candidates.tolist() == [5, 5, 0] and "secret in the prompt" in caplog.text


N_CANDIDATES = 8  # canary candidates in the exposure assertions on the memorized model


def response_margin(model, batch) -> float:
    """The smallest lead, over all response positions (teacher-forced), of the reference token's logit over
    every other token's. Positive: greedy decoding reproduces every response token by token; the lead keeps
    it so under the rounding of another batching, padding, CPU kernel or thread count."""
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logits, targets, mask = encoding.shift_for_causal_lm(logits, batch["input_ids"], batch["response_mask"])
    logits, targets = logits[mask.bool()], targets[mask.bool()][:, None]
    lead = logits.gather(-1, targets)[:, 0] - logits.scatter(-1, targets, -math.inf).amax(-1)
    return lead.min().item()


@contextlib.contextmanager
def deterministic_single_thread():
    """One intra-op thread and torch's deterministic algorithms for the block, restored afterwards: the
    float reductions of a CPU kernel are ordered by its thread count, so training here gives bit-identical
    weights (and step count and loss) at any ``OMP_NUM_THREADS`` the suite runs under (issue #15, defect
    8)."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(deterministic)
        torch.set_num_threads(threads)


def memorize(model, tokenizer, frame, items, lr=5e-3, max_steps=500, margin=1.0, check_every=5):
    """Full-batch Adam on prompt + response tokens until the records are memorized: every response token
    leads by ``margin`` logits (so greedy decoding reproduces the responses) and every true secret outranks
    its ``N_CANDIDATES`` canary candidates. A fixed step count and a loss threshold made this flaky (issue
    #20: the loss at a fixed step depended on the thread count); the property does not, and training runs
    on one thread with deterministic algorithms (:func:`deterministic_single_thread`), so the trajectory is
    the same whatever ``OMP_NUM_THREADS`` is. Returns the model (eval mode), the number of steps and the
    last training loss."""
    batch = collate(items, model.config.pad_token_id)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    lead = -math.inf
    with deterministic_single_thread():
        for step in range(1, max_steps + 1):
            model.train()
            loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                         labels=labels).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step % check_every:
                continue
            model.eval()
            lead = response_margin(model, batch)
            if lead >= margin:
                ranks = extraction.canary_exposure(model, tokenizer, frame, N_CANDIDATES, 0, 3, 160, 64,
                                                     include_in_prompt=True).secret_rank
                if (ranks == 1.0).all():
                    return model, step, loss.item()
    pytest.fail(f"not memorized after {max_steps} steps (threads pinned to 1): last loss {loss.item():.4f}, "
                f"response margin {lead:.3f} (wanted {margin}); raise max_steps or lr")


@pytest.fixture(scope="module")
def memorized(tokenizer):
    """A tiny GPT-2 that has memorized the three secret records verbatim (prompt + response)."""
    frame = secret_frame()
    items = encoding.encode_frame(tokenizer, frame, 160, 64)
    model = tiny_model(seed=0, n_embd=64, vocab=len(tokenizer), eos=tokenizer.eos_token_id,
                       pad=tokenizer.pad_token_id)
    model, steps, loss = memorize(model, tokenizer, frame, items)
    logging.getLogger(__name__).info("memorized fixture: %d steps, final loss %.6f", steps, loss)
    longest = max(len(item.response_ids) for item in items)
    generated = greedy(model, items, longest, 3, tokenizer.pad_token_id,
                                             tokenizer.eos_token_id)
    assert generated == [list(item.response_ids) for item in items]  # what the tests below build on
    return model, frame


def test_memorized_records_every_metric(memorized, tokenizer, monkeypatch):
    model, frame = memorized
    calls = []
    real = generation.generate

    def counting(*args, **kwargs):
        calls.append(kwargs.get("max_new_tokens"))
        return real(*args, **kwargs)

    monkeypatch.setattr(extraction.generation, "generate", counting)
    table = extraction.memorization_table(model, tokenizer, frame, k=4, batch_size=3, max_length=160,
                                            max_prompt_length=64, n_candidates=N_CANDIDATES, candidate_seed=0)
    items = encoding.encode_frame(tokenizer, frame, 160, 64)
    longest = max(len(item.response_ids) for item in items)
    assert calls == [longest]  # one greedy pass, long enough for the whole responses
    assert list(table.columns) == extraction.MEMORIZATION_COLUMNS
    assert table.id.tolist() == ["m0", "m1", "m2"]
    assert table.n_compared.tolist() == [4, 4, 4]
    assert table.n_reference.tolist() == [len(item.response_ids) for item in items]
    assert table.match_rate.tolist() == [1.0, 1.0, 1.0]
    assert table.exact_k.all() and table.exact_full.all() and table.approx_memorized.all()
    assert table.rouge_l.tolist() == [1.0, 1.0, 1.0]
    assert table.generation.tolist() == frame.response.tolist()
    assert table.secret_hit.tolist() == [True, True, True]
    assert table.secret_in_prompt.tolist() == [False, False, True]
    assert table.secret_in_reference.tolist() == [True, True, True]
    # m2's secret is in its context: exposure only as an explicit positive control
    assert table.n_candidates.tolist() == [N_CANDIDATES, N_CANDIDATES, 0]
    assert table.secret_rank.tolist()[:2] == [1.0, 1.0] and np.isnan(table.secret_rank[2])
    assert table.exposure.to_numpy()[:2] == pytest.approx([math.log2(N_CANDIDATES + 1)] * 2)
    control = extraction.canary_exposure(model, tokenizer, frame.iloc[2:], N_CANDIDATES, 0, 3, 160, 64,
                                           include_in_prompt=True)
    assert control.secret_rank.tolist() == [1.0] and control.n_candidates.tolist() == [N_CANDIDATES]


def test_prefix_of_long_generation_equals_k_generation(memorized, tokenizer):
    """The paper's k-token metric is unchanged by generating longer (greedy is a prefix property)."""
    model, _ = memorized
    rng = np.random.default_rng(1)
    items = [Encoded(f"r{i}", tuple(int(t) for t in rng.integers(2, len(tokenizer), 6)), (5, 6, 7))
             for i in range(4)]
    short = greedy(model, items, 4, 4, tokenizer.pad_token_id, tokenizer.eos_token_id)
    long = greedy(model, items, 20, 4, tokenizer.pad_token_id, tokenizer.eos_token_id)
    for a, b in zip(short, long):
        assert b[: len(a)] == a


def test_without_secret_columns_skips_with_reason(memorized, tokenizer, caplog):
    model, frame = memorized
    with caplog.at_level(logging.INFO):
        table = extraction.memorization_table(model, tokenizer, frame.drop(columns=["secret", "secret_kind"]),
                                                k=4, batch_size=3, max_length=192, max_prompt_length=64)
    assert "secret hit rate and canary exposure skipped" in caplog.text
    assert table.secret_hit.isna().all() and table.secret_in_prompt.isna().all()
    assert table.exposure.isna().all() and (table.n_candidates == 0).all()
    assert table.match_rate.tolist() == [1.0, 1.0, 1.0]
    assert list(table.columns) == extraction.MEMORIZATION_COLUMNS


def test_per_example_table_roundtrips_parquet(memorized, tokenizer, tmp_path):
    model, frame = memorized
    table = extraction.memorization_table(model, tokenizer, frame, k=4, batch_size=3, max_length=160,
                                            max_prompt_length=64, n_candidates=2)
    path = tmp_path / "t.parquet"
    table.to_parquet(path, index=False)
    back = pd.read_parquet(path)
    assert list(back.columns) == extraction.MEMORIZATION_COLUMNS
    assert back.secret_hit.tolist() == table.secret_hit.tolist()


# ------------------------------------------------------------------------------------ greedy decoding
def greedy(model, items, max_new_tokens, batch_size, pad_id, eos_id):
    """The memorization rule's decoder: plain greedy, new tokens cut after the first EOS, as lists."""
    return [list(tokens) for tokens in generation.generate(model, items, max_new_tokens, batch_size, pad_id,
                                                            eos_id, generation.GREEDY)]


def items_with_prompts(seed=0, n=6):
    rng = np.random.default_rng(seed)
    return [
        Encoded(f"x{i}", tuple(int(t) for t in rng.integers(2, VOCAB, int(rng.integers(2, 12)))), (7, 8, EOS))
        for i in range(n)
    ]


def test_batched_equals_unbatched_generate():
    model = tiny_model(seed=1)
    items = items_with_prompts()
    batched = greedy(model, items, 12, batch_size=4, pad_id=PAD, eos_id=EOS)
    for item, tokens in zip(items, batched):
        ids = torch.tensor([item.prompt_ids])
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=12,
                                 do_sample=False, num_beams=1, pad_token_id=PAD, eos_token_id=EOS)
        alone = list(generation.cut_after_eos(out[0, ids.shape[1]:].tolist(), EOS))
        assert tokens == alone
        assert 1 <= len(tokens) <= 12


def test_generation_ignores_saved_no_repeat_ngram():
    # A model whose saved generation config forbids repeated n-grams must still decode plainly.
    model = tiny_model(seed=2)
    items = items_with_prompts(seed=3, n=3)
    plain = greedy(model, items, 16, batch_size=3, pad_id=PAD, eos_id=EOS)
    assert any(len(set(tokens)) < len(tokens) for tokens in plain)  # a repeat that the setting would forbid
    model.generation_config.no_repeat_ngram_size = 1
    model.generation_config.repetition_penalty = 5.0
    again = greedy(model, items, 16, batch_size=3, pad_id=PAD, eos_id=EOS)
    assert again == plain


# ------------------------------------------------------------------------------------ summaries
def hand_table():
    return pd.DataFrame({
        "id": [f"e{i}" for i in range(6)],
        "label": [1, 1, 1, 0, 0, 0],
        "match_rate": [1.0, 0.5, 0.0, 0.25, 0.0, 0.5],
        "exact_k": [True, False, False, False, False, False],
        "exact_full": pd.array([True, pd.NA, False, False, False, pd.NA], dtype="boolean"),
        "rouge_l": [0.9, 0.6, 0.1, 0.2, 0.3, 0.4],
        "approx_memorized": [True, True, False, False, False, False],
        "secret_in_prompt": pd.array([False, False, True, False, True, pd.NA], dtype="boolean"),
        "secret_in_reference": pd.array([True, True, True, True, True, pd.NA], dtype="boolean"),
        "secret_hit": pd.array([True, False, True, False, True, pd.NA], dtype="boolean"),
        "exposure": [6.0, 2.0, 6.6, 1.0, 6.6, np.nan],
        "secret_rank": [1.0, 20.0, 1.0, 50.0, 1.0, np.nan],
    })


def test_memorization_summary_rates_gap_and_subsets():
    out = extraction.memorization_summary(hand_table(), Bootstrap(n=200, seed=3)).set_index("metric")
    assert list(out.columns) == extraction.SUMMARY_COLUMNS[1:]
    assert out.loc["match_rate", "member_rate"] == pytest.approx(0.5)
    assert out.loc["match_rate", "nonmember_rate"] == pytest.approx(0.25)
    assert out.loc["match_rate", "gap"] == pytest.approx(0.25)
    assert out.loc["exact_full", ["n_members", "n_nonmembers"]].tolist() == [2, 2]  # NA left out
    assert out.loc["exact_full", "member_rate"] == pytest.approx(0.5)
    assert out.loc["approx_memorized", "member_rate"] == pytest.approx(2 / 3)
    # secret metrics only where the secret is not in the prompt: members e0, e1; non-member e3
    assert out.loc["secret_hit", "subset"] == "secret_learnable"
    assert out.loc["secret_hit", ["n_members", "n_nonmembers"]].tolist() == [2, 1]
    assert out.loc["secret_hit", "member_rate"] == pytest.approx(0.5)
    assert out.loc["exposure", "member_rate"] == pytest.approx(4.0)
    assert out.loc["exposure", "gap"] == pytest.approx(3.0)
    assert out.loc["secret_rank", "nonmember_rate"] == pytest.approx(50.0)
    for metric, row in out.iterrows():
        for key in ("member", "nonmember"):
            assert row[f"{key}_ci_low"] <= row[f"{key}_rate"] + 1e-12 <= row[f"{key}_ci_high"] + 2e-12, metric
        assert row["gap_ci_low"] <= row["gap_ci_high"]
    again = extraction.memorization_summary(hand_table(), Bootstrap(n=200, seed=3)).set_index("metric")
    pd.testing.assert_frame_equal(out, again)  # seeded
    no_ci = extraction.memorization_summary(hand_table(), NO_BOOTSTRAP)
    assert no_ci["gap_ci_low"].isna().all()


def test_secret_truncated_out_of_reference_is_not_learnable():
    table = hand_table()
    table["secret_in_reference"] = pd.array([False, True, True, True, True, pd.NA], dtype="boolean")
    out = extraction.memorization_summary(table, NO_BOOTSTRAP).set_index("metric")
    assert out.loc["secret_hit", ["n_members", "n_nonmembers"]].tolist() == [1, 1]  # e0 dropped
    assert out.loc["exposure", "member_rate"] == pytest.approx(2.0)


def test_memorization_summary_skips_absent_columns():
    out = extraction.memorization_summary(hand_table()[["id", "label", "match_rate", "exact_k"]],
                                          Bootstrap(n=10))
    assert out.metric.tolist() == ["match_rate", "exact_k"]


def test_summarize_memorization():
    frame = pd.DataFrame(
        {"label": [1, 1, 0, 0, 0], "match_rate": [1.0, 0.5, 0.25, 0.0, 0.5],
         "exact_k": [True, False, False, False, False]}
    )
    out = extraction.summarize_memorization(frame, Bootstrap(n=100))
    assert out["member_rate"] == pytest.approx(0.75)
    assert out["nonmember_rate"] == pytest.approx(0.25)
    assert out["gap"] == pytest.approx(0.5)
    assert out["member_rate_ci_low"] >= 0.5 and out["member_rate_ci_high"] <= 1.0
    assert out["gap_ci_low"] <= 0.5 <= out["gap_ci_high"]
    assert out["member_exact_rate"] == pytest.approx(0.5)
    assert out["nonmember_exact_rate"] == 0.0
    assert (out["n_members"], out["n_nonmembers"]) == (2, 3)
    legacy = frame.rename(columns={"exact_k": "exact_prefix"})
    assert extraction.summarize_memorization(legacy, NO_BOOTSTRAP)["member_exact_rate"] == pytest.approx(0.5)


# ------------------------------------------------------------------------------------ the workflow script
class Named(dict):
    """Stands in for Snakemake's named lists (attribute access, keys(), items())."""

    __getattr__ = dict.__getitem__


def run_script(name, cfg, inputs, outputs, rule):
    import runpy
    from pathlib import Path
    from types import SimpleNamespace

    repo = Path(__file__).resolve().parents[1]
    smk = SimpleNamespace(scriptdir=str(repo / "scripts"), params=SimpleNamespace(cfg=cfg, code="test-code"),
                          input=Named(inputs), output=Named(outputs), log=[], threads=1, rule=rule)
    runpy.run_path(str(repo / "scripts" / name), init_globals={"snakemake": smk}, run_name="__main__")


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    from kdprivacy.config import Split
    from kdprivacy.data.manifest import build_manifest
    from kdprivacy.data.synthetic import generate_synthetic

    root = tmp_path_factory.mktemp("script")
    records = generate_synthetic(160, seed=1)
    manifest = build_manifest(records, Split(nonmember=20, dev=10, private=20, public=20, seed=0))
    manifest_path = root / "manifest.parquet"
    manifest.to_parquet(manifest_path, index=False)
    tok = models.train_tokenizer(list(manifest.response) + list(manifest.instruction), 300)
    model = models.build_from_scratch({"arch": "gpt2", "n_layer": 1, "d_model": 32, "n_head": 2}, tok, 256, 0)
    models.save_model(model, tok, root / "model")
    return root, manifest_path, root / "model"


def test_memorization_script(saved_model):
    import json

    root, manifest_path, model_dir = saved_model
    cfg = {"first_k": 8, "max_members": 5, "max_nonmembers": 4, "sample_seed": 0, "batch_size": 4,
           "max_length": 250, "max_prompt_length": 80, "n_candidates": 3, "max_new_tokens": 16, "n_bootstrap": 20,
           "rouge_threshold": 0.5, "rouge_stemmer": False, "exposure_in_prompt": False, "bootstrap_seed": 0,
           "match_positions": "reference"}
    out = {"per_example": str(root / "mem.parquet"), "summary": str(root / "mem.csv")}
    run_script("memorization.py", cfg, {"manifest": str(manifest_path), "model": str(model_dir)}, out, "memorization")
    table = pd.read_parquet(out["per_example"])
    assert list(table.columns) == ["id", "label", "category", *extraction.MEMORIZATION_COLUMNS[1:]]
    assert table.label.tolist() == [1] * 5 + [0] * 4
    assert (table.n_generated <= 16).all() and (table.n_compared <= 8).all()
    assert (table.n_candidates[table.exposure.notna()] == 3).all() and table.exposure.notna().any()
    summary = pd.read_csv(out["summary"])
    assert summary.metric.tolist()[0] == "match_rate" and "exposure" in set(summary.metric)
    prov = json.loads((root / "mem.parquet.provenance.json").read_text())
    assert prov["params"]["cfg"] == cfg and set(prov["inputs"]) == {"manifest", "model"}
    # the aggregate step's reader keeps working on the new table
    assert extraction.summarize_memorization(table)["n_members"] == 5


def test_exposure_skipped_when_a_variant_is_truncated(tokenizer, caplog):
    """Totals over truncated responses are not comparable: such examples are skipped, with the reason."""
    frame = secret_frame().iloc[:1]
    items = encoding.encode_frame(tokenizer, frame, 160, 64)
    tight = len(items[0].prompt_ids) + len(items[0].response_ids) - 1  # one token short of the true response
    with caplog.at_level(logging.INFO):
        out = extraction.canary_exposure(tiny_model(vocab=len(tokenizer)), tokenizer, frame, 5, 0, 4, tight, 64)
    assert out.exposure.isna().all() and "truncated by max_length" in caplog.text
