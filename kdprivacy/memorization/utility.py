"""Text overlap (ROUGE-L) and the utility of a model on held-out dev prompts.

ROUGE-L is implemented here (no runtime dependency) to match Google's ``rouge-score`` package
(``RougeScorer(["rougeL"])``, the sentence-level LCS score that the MiniLLM/DistiLLM evaluation, and so the
paper's 18-27 utility numbers, use), token for token:

- tokenization (:func:`rouge_tokenize`): lower-case the text; replace every run of characters other than
  ``a-z`` and ``0-9`` with a space (so punctuation splits words and non-ASCII letters are dropped:
  ``"Nørgaard"`` -> ``["n", "rgaard"]``); split on whitespace; optionally stem words longer than 3
  characters; keep only non-empty ``[a-z0-9]+`` tokens;
- ``LCS`` = length of the longest common (not necessarily contiguous) subsequence of the two token lists;
  ``precision = LCS / len(prediction)``, ``recall = LCS / len(reference)``, ``F = 2PR / (P + R)``
  (0 when ``P + R == 0``); an empty prediction or reference scores 0.

The paper's evaluation code constructs the scorer with ``use_stemmer=True`` (NLTK's Porter stemmer).
Stemming is optional here (``stemmer=`` any ``str -> str`` callable; :func:`porter_stemmer` returns NLTK's
when NLTK is installed); the default is no stemming, which gives slightly lower scores than stemmed ROUGE-L.

Utility (:func:`utility_table`): greedy responses to the **dev** prompts (never members or non-members),
scored against the dev references with ROUGE-L F x 100 (the paper's scale). ``utility.do_sample`` (set by
``protocol: paper``) samples them instead, as the authors' evaluation did (temperature 1, top-k 0, top-p 1:
the model's own distribution), each example from its own generator seeded by ``utility.seed``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from kdprivacy import encoding, generation, stats

log = logging.getLogger(__name__)

_NON_ALPHANUM = re.compile(r"[^a-z0-9]+")
_SPACES = re.compile(r"\s+")
_VALID_TOKEN = re.compile(r"^[a-z0-9]+$")

Stemmer = Callable[[str], str]

DEV_POOL = "dev"
UTILITY_COLUMNS = ["id", "category", "n_generated", "rouge_l", "generation"]
UTILITY_SUMMARY_COLUMNS = ["category", "n_examples", "rouge_l", "rouge_l_ci_low", "rouge_l_ci_high"]


# ----------------------------------------------------------------------------------------------- ROUGE-L
def rouge_tokenize(text: str, stemmer: Stemmer | None = None) -> list[str]:
    """``rouge-score``'s default tokenizer (see the module docstring)."""
    text = _NON_ALPHANUM.sub(" ", text.lower())
    tokens = _SPACES.split(text)
    if stemmer is not None:
        tokens = [stemmer(token) if len(token) > 3 else token for token in tokens]
    return [token for token in tokens if _VALID_TOKEN.match(token)]


def lcs_length(a: Sequence, b: Sequence) -> int:
    """Length of the longest common subsequence of two sequences of hashable items.

    Bit-parallel (Allison-Dix / Hyyro): one big-integer update per item of ``b``, O(len(a) * len(b) / word)
    time, exact for any lengths.
    """
    if not a or not b:
        return 0
    match: dict = {}
    for position, item in enumerate(a):
        match[item] = match.get(item, 0) | (1 << position)
    full = (1 << len(a)) - 1
    v = full
    for item in b:
        u = v & match.get(item, 0)
        v = ((v + u) | (v - u)) & full
    return len(a) - bin(v).count("1")


def rouge_l_prf(
    prediction: str, reference: str, stemmer: Stemmer | None = None
) -> tuple[float, float, float]:
    """``(precision, recall, F)`` of ROUGE-L between a prediction and a reference text (each in [0, 1])."""
    pred = rouge_tokenize(prediction, stemmer)
    ref = rouge_tokenize(reference, stemmer)
    if not pred or not ref:
        return 0.0, 0.0, 0.0
    lcs = lcs_length(ref, pred)
    precision = lcs / len(pred)
    recall = lcs / len(ref)
    f = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return precision, recall, f


def rouge_l(prediction: str, reference: str, stemmer: Stemmer | None = None) -> float:
    """ROUGE-L F-measure in [0, 1] (``rouge_score.RougeScorer(["rougeL"]).score(reference, prediction)``)."""
    return rouge_l_prf(prediction, reference, stemmer)[2]


def porter_stemmer() -> Stemmer:
    """NLTK's Porter stemmer (what ``rouge-score`` uses with ``use_stemmer=True``); needs ``nltk``."""
    try:
        from nltk.stem import porter
    except ImportError as err:  # optional dependency
        raise ImportError("stemmed ROUGE-L needs nltk (pip install nltk); or turn stemming off") from err
    return porter.PorterStemmer().stem


def stemmer_from_flag(use_stemmer: bool) -> Stemmer | None:
    return porter_stemmer() if use_stemmer else None


# ----------------------------------------------------------------------------------------------- utility
def dev_set(manifest: pd.DataFrame, max_examples: int | None, seed: int) -> pd.DataFrame:
    """Pool ``dev`` sorted by id; above ``max_examples`` (None = all) a seeded subsample, kept in id order."""
    for column in ("id", "pool", "instruction", "context", "response"):
        if column not in manifest.columns:
            raise ValueError(f"manifest lacks column {column!r}")
    dev = manifest[manifest["pool"] == DEV_POOL].sort_values("id", kind="stable").reset_index(drop=True)
    if dev.empty:
        raise ValueError(f"the manifest has no {DEV_POOL!r} examples to measure utility on")
    if max_examples is None or max_examples >= len(dev):
        return dev
    if max_examples < 1:
        raise ValueError(f"max_examples must be >= 1 or None, got {max_examples}")
    rng = np.random.default_rng([int(seed), 2])
    keep = np.sort(rng.choice(len(dev), size=int(max_examples), replace=False))
    return dev.iloc[keep].reset_index(drop=True)


def decode_generation(tokenizer, tokens: Sequence[int]) -> str:
    """Text of generated tokens: a trailing EOS and other special tokens dropped, spaces not 'cleaned up'."""
    tokens = list(tokens)
    if tokens and tokens[-1] == tokenizer.eos_token_id:
        tokens = tokens[:-1]
    return tokenizer.decode(tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False)


def utility_table(
    model,
    tokenizer,
    frame: pd.DataFrame,
    batch_size: int,
    max_length: int,
    max_prompt_length: int,
    max_new_tokens: int | None = None,
    stemmer: Stemmer | None = None,
    sampling: generation.Sampling = generation.GREEDY,
) -> pd.DataFrame:
    """Per-example ROUGE-L F x 100 of greedy responses vs references (columns ``UTILITY_COLUMNS``).

    ``frame`` has ``id, instruction, context, response`` (+ ``category``); prompts are encoded exactly as
    for training. ``max_new_tokens`` defaults to ``max_length - max_prompt_length`` (the longest response
    the models are trained to produce). Plain greedy decoding (:func:`kdprivacy.generation.generate`) unless
    ``sampling`` samples.
    """
    if max_new_tokens is None:
        max_new_tokens = max_length - max_prompt_length
    items = encoding.encode_frame(tokenizer, frame, max_length, max_prompt_length)
    generated = generation.generate(
        model, items, max_new_tokens=max_new_tokens, batch_size=batch_size,
        pad_id=tokenizer.pad_token_id, eos_id=tokenizer.eos_token_id, sampling=sampling,
    )
    texts = [decode_generation(tokenizer, tokens) for tokens in generated]
    categories = frame["category"] if "category" in frame.columns else pd.Series("", index=frame.index)
    table = pd.DataFrame(
        {
            "id": frame["id"].to_numpy(),
            "category": categories.to_numpy(),
            "n_generated": [len(tokens) for tokens in generated],
            "rouge_l": [100.0 * rouge_l(text, ref, stemmer) for text, ref in zip(texts, frame["response"])],
            "generation": texts,
        }
    )
    return table.astype({"n_generated": "int64", "rouge_l": "float64"})[UTILITY_COLUMNS]


def summarize_utility(
    per_example: pd.DataFrame, bootstrap: stats.Bootstrap = stats.Bootstrap()
) -> pd.DataFrame:
    """Mean ROUGE-L (x 100) with a seeded bootstrap CI, per category (sorted) and ``ALL`` (last row)."""
    for column in ("category", "rouge_l"):
        if column not in per_example.columns:
            raise ValueError(f"utility table lacks column {column!r}")
    groups = [(c, g) for c, g in per_example.groupby("category", sort=True)] + [("ALL", per_example)]
    rows = []
    for category, group in groups:
        values = group["rouge_l"].to_numpy(dtype=np.float64)
        low, high = stats.bootstrap_mean_ci(values, bootstrap)
        rows.append({"category": category, "n_examples": len(values),
                     "rouge_l": float(values.mean()) if len(values) else float("nan"),
                     "rouge_l_ci_low": low, "rouge_l_ci_high": high})
    return pd.DataFrame(rows, columns=UTILITY_SUMMARY_COLUMNS)
