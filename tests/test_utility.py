import random

import pandas as pd
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from kdprivacy import generation, models
from kdprivacy.memorization import utility
from kdprivacy.stats import Bootstrap


# ------------------------------------------------------------------------------------ tokenization / LCS
def test_rouge_tokenize_rules():
    # lower-case; every run of non [a-z0-9] characters splits; non-ASCII letters dropped
    assert utility.rouge_tokenize("The CAT's 2 mats, e.g. Nørgaard!") == [
        "the", "cat", "s", "2", "mats", "e", "g", "n", "rgaard"]
    assert utility.rouge_tokenize("  \n ...  ") == []
    # a stemmer applies only to tokens longer than 3 characters
    assert utility.rouge_tokenize("cats running ran", stemmer=lambda w: w[:3]) == ["cat", "run", "ran"]


def lcs_dp(a, b):
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            table[i][j] = table[i - 1][j - 1] + 1 if a[i - 1] == b[j - 1] else max(table[i - 1][j], table[i][j - 1])
    return table[-1][-1]


def test_lcs_hand_made():
    assert utility.lcs_length("ABCBDAB", "BDCABA") == 4  # the textbook example (BCBA)
    assert utility.lcs_length(["a", "b"], []) == 0
    assert utility.lcs_length(["x"], ["x"]) == 1
    assert utility.lcs_length(list("abc"), list("def")) == 0


def test_lcs_matches_dynamic_programming():
    rng = random.Random(0)
    for _ in range(300):
        a = [rng.randint(0, 4) for _ in range(rng.randint(0, 80))]
        b = [rng.randint(0, 4) for _ in range(rng.randint(0, 80))]
        assert utility.lcs_length(a, b) == lcs_dp(a, b)


def test_rouge_l_hand_computed():
    # reference 6 tokens, prediction 6 tokens, LCS "the cat on the mat" = 5: P = R = F = 5/6
    assert utility.rouge_l_prf("the cat on the mat sat", "The cat sat on the mat.") == pytest.approx((5 / 6,) * 3)
    # prediction "a b" vs reference "a b c d": P = 1, R = 1/2, F = 2/3
    assert utility.rouge_l("a b", "a b c d") == pytest.approx(2 / 3)
    assert utility.rouge_l("", "a b") == 0.0 and utility.rouge_l("a", "!!") == 0.0
    assert utility.rouge_l("x y", "a b") == 0.0


def random_text(rng, words):
    return " ".join(rng.choice(words) for _ in range(rng.randint(0, 30))) + rng.choice(["", ".", "!", " ,"])


def test_rouge_l_matches_rouge_score_package():
    rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    rng = random.Random(1)
    words = "The cat sat on mat running runs Dogs dog's 42 e.g. Zürich quickly".split()
    for _ in range(200):
        pred, ref = random_text(rng, words), random_text(rng, words)
        expected = scorer.score(ref, pred)["rougeL"]
        got = utility.rouge_l_prf(pred, ref)
        assert got == pytest.approx((expected.precision, expected.recall, expected.fmeasure), abs=1e-12)


def test_stemmed_rouge_l_matches_rouge_score_package():
    rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
    pytest.importorskip("nltk")
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    stemmer = utility.porter_stemmer()
    rng = random.Random(2)
    words = "running runs ran studies studying happily cats cat connected connection the".split()
    for _ in range(100):
        pred, ref = random_text(rng, words), random_text(rng, words)
        assert utility.rouge_l(pred, ref, stemmer) == pytest.approx(scorer.score(ref, pred)["rougeL"].fmeasure)


# ------------------------------------------------------------------------------------ utility
def toy_manifest():
    rows = []
    for pool, n in (("private", 4), ("nonmember", 4), ("dev", 10), ("public", 3)):
        for i in range(n):
            rows.append({"id": f"{pool}{i:02d}", "pool": pool, "category": ["open_qa", "brainstorming"][i % 2],
                         "instruction": f"Name thing {i}.", "context": "",
                         "response": f"The thing {i} is a red lamp."})
    return pd.DataFrame(rows).sample(frac=1.0, random_state=0).reset_index(drop=True)


def test_dev_set_only_dev_seeded():
    manifest = toy_manifest()
    dev = utility.dev_set(manifest, None, 0)
    assert (dev.pool == "dev").all() and len(dev) == 10 and dev.id.is_monotonic_increasing
    sub = utility.dev_set(manifest, 4, 0)
    assert len(sub) == 4 and set(sub.id) <= set(dev.id) and sub.id.is_monotonic_increasing
    pd.testing.assert_frame_equal(sub, utility.dev_set(manifest.iloc[::-1], 4, 0))  # order-independent
    with pytest.raises(ValueError, match="dev"):
        utility.dev_set(manifest[manifest.pool != "dev"], None, 0)


@pytest.fixture(scope="module")
def tokenizer():
    manifest = toy_manifest()
    return models.train_tokenizer(list(manifest.response) + list(manifest.instruction), 300, min_frequency=1)


def tiny_model(tokenizer):
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_layer=1, n_embd=32, n_head=2, n_positions=256,
                        eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.eos_token_id,
                        pad_token_id=tokenizer.pad_token_id)
    return GPT2LMHeadModel(config).eval()


def test_utility_table_real_generation(tokenizer):
    dev = utility.dev_set(toy_manifest(), 6, 0)
    table = utility.utility_table(tiny_model(tokenizer), tokenizer, dev, batch_size=4, max_length=96,
                                  max_prompt_length=64, max_new_tokens=8)
    assert list(table.columns) == utility.UTILITY_COLUMNS
    assert table.id.tolist() == dev.id.tolist()
    assert table.rouge_l.between(0, 100).all() and (table.n_generated <= 8).all()


def test_utility_table_perfect_generation_scores_100(tokenizer, monkeypatch):
    """With a generator that returns the reference tokens, ROUGE-L is 100 on every example."""
    dev = utility.dev_set(toy_manifest(), None, 0)
    budgets = []

    def oracle(model, items, max_new_tokens, batch_size, pad_id, eos_id, sampling):
        budgets.append(max_new_tokens)
        return [list(item.response_ids) for item in items]

    monkeypatch.setattr(utility.generation, "generate", oracle)
    table = utility.utility_table(None, tokenizer, dev, batch_size=4, max_length=96, max_prompt_length=64)
    assert budgets == [32]  # default: max_length - max_prompt_length
    assert table.rouge_l.tolist() == [100.0] * len(dev)
    assert table.generation.tolist() == dev.response.tolist()
    summary = utility.summarize_utility(table, Bootstrap(n=100))
    assert list(summary.columns) == utility.UTILITY_SUMMARY_COLUMNS
    assert summary.category.tolist() == ["brainstorming", "open_qa", "ALL"]
    assert summary.n_examples.tolist() == [5, 5, 10]
    assert summary.rouge_l.tolist() == [100.0, 100.0, 100.0]


def test_utility_table_sampled_decoding(tokenizer):
    """``sampling`` reaches the decoder: the same seed repeats, another seed and greedy differ (the tiny
    random model's next-token distribution is nearly flat over its 300 tokens)."""
    dev = utility.dev_set(toy_manifest(), 6, 0)
    model = tiny_model(tokenizer)

    def run(sampling):
        return utility.utility_table(model, tokenizer, dev, batch_size=4, max_length=96, max_prompt_length=64,
                                     max_new_tokens=8, sampling=sampling).generation.tolist()

    greedy = run(generation.GREEDY)
    sampled = run(generation.Sampling(True, 1.0, 1.0, 0, seed=0))
    assert sampled == run(generation.Sampling(True, 1.0, 1.0, 0, seed=0))
    assert sampled != greedy and sampled != run(generation.Sampling(True, 1.0, 1.0, 0, seed=1))
    assert greedy == run(generation.GREEDY)


def test_summarize_utility_means():
    table = pd.DataFrame({"category": ["a", "a", "b"], "rouge_l": [10.0, 30.0, 50.0]})
    summary = utility.summarize_utility(table, Bootstrap(n=200, seed=0)).set_index("category")
    assert summary.loc["a", "rouge_l"] == pytest.approx(20.0)
    assert summary.loc["ALL", "rouge_l"] == pytest.approx(30.0)
    assert summary.loc["ALL", "rouge_l_ci_low"] <= 30.0 <= summary.loc["ALL", "rouge_l_ci_high"]


# ------------------------------------------------------------------------------------ the workflow script
class Named(dict):
    """Stands in for Snakemake's named lists (attribute access, keys(), items())."""

    __getattr__ = dict.__getitem__


def test_utility_script(tmp_path, tokenizer):
    import json
    import runpy
    from pathlib import Path
    from types import SimpleNamespace

    manifest_path = tmp_path / "manifest.parquet"
    toy_manifest().to_parquet(manifest_path, index=False)
    models.save_model(tiny_model(tokenizer), tokenizer, tmp_path / "model")
    cfg = {"max_examples": 6, "batch_size": 4, "max_new_tokens": 8, "max_length": 96, "max_prompt_length": 64,
           "n_bootstrap": 20, "sample_seed": 0, "rouge_stemmer": False, "bootstrap_seed": 0,
           "do_sample": False, "temperature": 1.0, "top_p": 1.0, "top_k": 0, "seed": 0}
    out = {"per_example": str(tmp_path / "u.parquet"), "summary": str(tmp_path / "u.csv")}
    repo = Path(__file__).resolve().parents[1]
    smk = SimpleNamespace(scriptdir=str(repo / "scripts"), params=SimpleNamespace(cfg=cfg, code="c"),
                          input=Named(manifest=str(manifest_path), model=str(tmp_path / "model")),
                          output=Named(out), log=[], threads=1, rule="utility")
    runpy.run_path(str(repo / "scripts" / "utility.py"), init_globals={"snakemake": smk}, run_name="__main__")
    table = pd.read_parquet(out["per_example"])
    assert list(table.columns) == utility.UTILITY_COLUMNS and len(table) == 6
    assert table.id.str.startswith("dev").all()
    summary = pd.read_csv(out["summary"])
    assert summary.category.iloc[-1] == "ALL" and summary.n_examples.iloc[-1] == 6
    assert json.loads((tmp_path / "u.parquet.provenance.json").read_text())["params"]["cfg"] == cfg


def test_utility_script_samples_with_do_sample(tmp_path, tokenizer):
    """The job reads do_sample/temperature/top_p/top_k/seed from its params: the sampled table differs from
    the greedy one and equals utility_table with the same Sampling."""
    import runpy
    from pathlib import Path
    from types import SimpleNamespace

    manifest_path = tmp_path / "manifest.parquet"
    toy_manifest().to_parquet(manifest_path, index=False)
    model = tiny_model(tokenizer)
    models.save_model(model, tokenizer, tmp_path / "model")
    repo = Path(__file__).resolve().parents[1]
    tables = {}
    for do_sample in (False, True):
        cfg = {"max_examples": 6, "batch_size": 4, "max_new_tokens": 8, "max_length": 96, "max_prompt_length": 64,
               "n_bootstrap": 0, "sample_seed": 0, "rouge_stemmer": False, "bootstrap_seed": 0,
               "do_sample": do_sample, "temperature": 1.0, "top_p": 1.0, "top_k": 0, "seed": 3}
        out = {"per_example": str(tmp_path / f"u{do_sample}.parquet"), "summary": str(tmp_path / f"u{do_sample}.csv")}
        smk = SimpleNamespace(scriptdir=str(repo / "scripts"), params=SimpleNamespace(cfg=cfg, code="c"),
                              input=Named(manifest=str(manifest_path), model=str(tmp_path / "model")),
                              output=Named(out), log=[], threads=1, rule="utility")
        runpy.run_path(str(repo / "scripts" / "utility.py"), init_globals={"snakemake": smk}, run_name="__main__")
        tables[do_sample] = pd.read_parquet(out["per_example"])
    assert tables[True].generation.tolist() != tables[False].generation.tolist()
    from kdprivacy.mia import scoring

    loaded, tok = scoring.load_for_inference(str(tmp_path / "model"))
    dev = utility.dev_set(toy_manifest(), 6, 0)
    expected = utility.utility_table(loaded, tok, dev, batch_size=4, max_length=96, max_prompt_length=64,
                                     max_new_tokens=8, sampling=generation.Sampling(True, 1.0, 1.0, 0, seed=3))
    assert tables[True].generation.tolist() == expected.generation.tolist()
