"""Tests for kdprivacy.data: the synthetic corpus, sources, and the seeded content-hash split (manifest)."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from pydantic import ValidationError

from kdprivacy import data as D
from kdprivacy import provenance
from kdprivacy.config import Data, FileSource, HubSource, Split, SyntheticSource
from kdprivacy.data import manifest as M
from kdprivacy.data import sources as S
from kdprivacy.data import synthetic as G

SPLIT = {"nonmember": 60, "dev": 20, "private": 100, "public": 100}
SECRET_FORMATS = {
    "person": r"[A-Z][a-z]+ [A-ZØ][\wø]+",
    "company": r"[A-Z][a-z]+ [A-Z][a-z]+",
    "town": r"[A-Z][a-z]+",
    "date": r"\d{1,2} [A-Z][a-z]+ \d{4}",
    "code": r"[A-Z]{2}-\d{4}",
    "number4": r"\d{4}",
    "number5": r"\d{2},\d{3}",
}


@pytest.fixture(scope="module")
def synth() -> pd.DataFrame:
    return G.generate_synthetic(2000, seed=7)


@pytest.fixture(scope="module")
def small() -> pd.DataFrame:
    return G.generate_synthetic(400, seed=3)


# ---- synthetic generator -----------------------------------------------------------------------------

def test_synthetic_is_deterministic_per_seed() -> None:
    a, b = G.generate_synthetic(300, seed=1), G.generate_synthetic(300, seed=1)
    pd.testing.assert_frame_equal(a, b)
    other = G.generate_synthetic(300, seed=2)
    shared = set(a["response"]) & set(other["response"])
    assert len(shared) < 3


def test_synthetic_schema_categories_and_distinct_records(synth: pd.DataFrame) -> None:
    assert list(synth.columns) == [*D.FIELDS, *D.SECRET_FIELDS]
    assert not synth.duplicated(["instruction", "context", "response"]).any()
    counts = synth["category"].value_counts()
    assert set(counts.index) == set(G.CATEGORIES)
    assert counts.min() >= 0.8 * len(synth) / len(G.CATEGORIES)
    # Dolly leaves context empty for open-ended tasks and fills it for reading tasks.
    has_ctx = synth.groupby("category")["context"].apply(lambda s: (s != "").mean())
    for cat in ("closed_qa", "information_extraction", "summarization"):
        assert has_ctx[cat] == 1.0
    for cat in ("open_qa", "general_qa", "brainstorming", "creative_writing"):
        assert has_ctx[cat] == 0.0
    assert 0.0 < has_ctx["classification"] < 1.0


def test_synthetic_secrets_are_diverse_and_in_the_response(synth: pd.DataFrame) -> None:
    assert synth["secret"].nunique() > 0.9 * len(synth)
    assert all(s in r for s, r in zip(synth["secret"], synth["response"], strict=True))
    assert set(synth["secret_kind"]) == set(SECRET_FORMATS)
    for secret, kind in zip(synth["secret"], synth["secret_kind"], strict=True):
        assert re.fullmatch(SECRET_FORMATS[kind], secret), (kind, secret)


def test_synthetic_secret_is_not_guessable_from_the_prompt(synth: pd.DataFrame) -> None:
    no_ctx = synth[synth["context"] == ""]
    assert len(no_ctx) > 500
    assert not any(s in i for s, i in zip(no_ctx["secret"], no_ctx["instruction"], strict=True))
    # Same template (same category, secret format and opening words) -> different secrets every time.
    opening = synth["instruction"].str.split().str[:2].str.join(" ")
    groups = synth.groupby([synth["category"], synth["secret_kind"], opening])["secret"]
    big = [g for _, g in groups if len(g) >= 20]
    assert len(big) >= 10
    for g in big:
        assert g.nunique() >= 0.9 * len(g)


def test_synthetic_lengths_look_like_dolly(synth: pd.DataFrame) -> None:
    words = synth["response"].str.split().str.len()
    assert 15 <= words.median() <= 60
    assert words.between(5, 80).mean() > 0.95
    assert synth["instruction"].str.split().str.len().max() <= 30


def test_secret_candidates_match_format_and_exclude_the_truth(synth: pd.DataFrame) -> None:
    for kind, pattern in SECRET_FORMATS.items():
        truth = synth.loc[synth["secret_kind"] == kind, "secret"].iloc[0]
        cands = G.secret_candidates(kind, 200, seed=0, exclude=[truth])
        assert len(cands) == len(set(cands)) == 200
        assert truth not in cands
        assert all(re.fullmatch(pattern, c) for c in cands), kind
        assert cands == G.secret_candidates(kind, 200, seed=0, exclude=[truth])
    with pytest.raises(D.DataError, match="unknown secret kind 'ssn'"):
        G.secret_candidates("ssn", 5, seed=0)
    with pytest.raises(D.DataError, match="only 9000 exist"):
        G.secret_candidates("number4", 9001, seed=0)


def test_synthetic_rejects_nonpositive_n() -> None:
    with pytest.raises(D.DataError, match="n_examples"):
        G.generate_synthetic(0, seed=0)


# ---- validation and ids -------------------------------------------------------------------------------

def test_validate_strips_fills_and_keeps_only_fields() -> None:
    raw = pd.DataFrame({
        "instruction": ["  Say hi ", "Name a colour"],
        "context": [np.nan, " sky "],
        "response": ["hi", " blue\n"],
        "category": ["open_qa", None],
        "extra": [1, 2],
    })
    out = S.validate_records(raw)
    assert list(out.columns) == list(D.FIELDS)
    assert out["instruction"].tolist() == ["Say hi", "Name a colour"]
    assert out["context"].tolist() == ["", "sky"]
    assert out["response"].tolist() == ["hi", "blue"]
    assert out["category"].tolist() == ["open_qa", D.UNCATEGORIZED]


def test_validate_reports_empty_responses_with_count_and_positions() -> None:
    raw = pd.DataFrame({"instruction": list("abcdef"), "response": ["x", "", "y", "  ", None, "z"]})
    positions = r"3 of 6 rows have an empty response \(first row positions: \[1, 3, 4\]\)"
    with pytest.raises(D.DataError, match=positions):
        S.validate_records(raw)
    with pytest.raises(D.DataError, match="empty instruction"):
        S.validate_records(pd.DataFrame({"instruction": [""], "response": ["x"]}))
    with pytest.raises(D.DataError, match="at least 5 rows, got 2"):
        S.validate_records(pd.DataFrame({"instruction": ["a", "b"], "response": ["x", "y"]}), min_rows=5)
    with pytest.raises(D.DataError, match="only one of"):
        S.validate_records(pd.DataFrame({"instruction": ["a"], "response": ["x"], "secret": ["s"]}))


@pytest.mark.parametrize("value, kind", [(["a", "b"], "list"), ({"text": "a"}, "dict"),
                                         (np.array(["a"]), "ndarray")])
def test_validate_names_row_and_column_of_a_non_text_cell(value, kind) -> None:
    """A JSON record whose response is a list (or a Parquet list column) used to fail with numpy's "truth
    value of an array is ambiguous"; the error now names the row, the column and what was expected."""
    raw = pd.DataFrame({"instruction": ["a", "b", "c"], "response": ["x", "y", "z"]})
    raw["response"] = pd.Series(["x", value, "z"], dtype=object)
    with pytest.raises(D.DataError, match=rf"row 1, column 'response': expected text .*got a {kind}"):
        S.validate_records(raw)


def test_load_file_with_a_list_response_names_the_cell(tmp_path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps({"instruction": "a", "response": "x"}) + "\n"
                    + json.dumps({"instruction": "b", "response": ["x", "y"]}) + "\n")
    with pytest.raises(D.DataError, match=r"row 1, column 'response'.*list"):
        S.validate_records(S.load_file(str(path)))


def test_example_id_is_a_stable_content_hash() -> None:
    fields = ("Name a colour", "", "blue", "open_qa")
    first = M.example_id(*fields)
    assert re.fullmatch(r"[0-9a-f]{16}", first)
    assert M.example_id(*fields) == first
    for i in range(4):
        changed = list(fields)
        changed[i] += "!"
        assert M.example_id(*changed) != first
    # Field boundaries matter: moving text between fields is a different example.
    assert M.example_id("ab", "", "c", "x") != M.example_id("a", "b", "c", "x")


# ---- manifest -----------------------------------------------------------------------------------------

def test_manifest_sizes_disjoint_and_leftover_is_pretrain(small: pd.DataFrame) -> None:
    m = M.build_manifest(small, Split(**SPLIT, seed=0))
    assert list(m.columns) == ["id", "pool", "category", "instruction", "context", "response",
                               "secret", "secret_kind"]
    sizes = m["pool"].value_counts().to_dict()
    assert sizes == {**SPLIT, "pretrain": len(small) - sum(SPLIT.values())}
    assert m["id"].is_unique
    assert m.attrs["n_duplicates_dropped"] == 0
    M.check_disjoint(m)


def test_manifest_ignores_input_order_and_is_byte_identical(small: pd.DataFrame, tmp_path) -> None:
    m1 = M.build_manifest(small, Split(**SPLIT, seed=5))
    shuffled = small.sample(frac=1.0, random_state=11).reset_index(drop=True)
    m2 = M.build_manifest(shuffled, Split(**SPLIT, seed=5))
    pd.testing.assert_frame_equal(m1, m2)
    m1.to_parquet(tmp_path / "a.parquet")
    m2.to_parquet(tmp_path / "b.parquet")
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()


def test_manifest_seed_changes_assignment(small: pd.DataFrame) -> None:
    a = M.build_manifest(small, Split(**SPLIT, seed=0)).set_index("id")["pool"]
    b = M.build_manifest(small, Split(**SPLIT, seed=1)).set_index("id")["pool"]
    assert (a.sort_index() != b.sort_index()).mean() > 0.3


def test_manifest_drops_exact_duplicates_and_counts_them(small: pd.DataFrame) -> None:
    dup = small.iloc[:7].copy()
    dup["response"] = " " + dup["response"] + "  "  # whitespace-only variants are the same example
    m = M.build_manifest(pd.concat([small, dup, small.iloc[:2]]), Split(**SPLIT, seed=0))
    assert m.attrs["n_duplicates_dropped"] == 9
    assert len(m) == len(small)


def test_manifest_halves_the_rest_when_private_public_are_null(small: pd.DataFrame) -> None:
    m = M.build_manifest(small, Split(nonmember=101, dev=20, private=None, public=None, seed=0))
    sizes = m["pool"].value_counts()
    rest = len(small) - 101 - 20
    assert sizes["private"] == sizes["public"] == rest // 2
    assert sizes.get("pretrain", 0) == rest % 2


def test_manifest_rejects_oversized_split_naming_sizes_and_count(small: pd.DataFrame) -> None:
    split = Split(nonmember=200, dev=50, private=100, public=100, seed=0)
    with pytest.raises(D.DataError) as err:
        M.build_manifest(small, split)
    msg = str(err.value)
    assert "nonmember=200" in msg and "dev=50" in msg and "private=100" in msg and "= 450" in msg
    assert f"only {len(small)} unique examples" in msg


def test_split_refuses_bad_keys_and_values() -> None:
    """The manifest takes a validated config.Split: a typo'd key or a bad size stops before any split, and the
    split's own seed is the only seed (no second one to disagree with)."""
    with pytest.raises(ValidationError, match="members"):
        Split(**SPLIT, members=3)
    with pytest.raises(ValidationError, match="dev"):
        Split(**{**SPLIT, "dev": -1})
    with pytest.raises(ValidationError, match="nonmember"):
        Split(**{**SPLIT, "nonmember": 1.5})
    with pytest.raises(ValidationError, match="private"):
        Split(**{**SPLIT, "private": "100"})
    assert Split(**SPLIT, seed=3).seed == 3


def test_check_disjoint_catches_forged_overlap(small: pd.DataFrame) -> None:
    m = M.build_manifest(small, Split(**SPLIT, seed=0))
    leaked = m[m["pool"] == "private"].head(3).assign(pool="public")
    overlap = r"3 example id\(s\) appear in more than one pool \(private & public: 3\)"
    with pytest.raises(D.DataError, match=overlap):
        M.check_disjoint(pd.concat([m, leaked]))
    with pytest.raises(D.DataError, match="more than once within a pool"):
        M.check_disjoint(pd.concat([m, m.head(1)]))
    with pytest.raises(D.DataError, match="unknown pool.*'members'"):
        M.check_disjoint(m.assign(pool=m["pool"].replace("private", "members")))


def test_data_card_counts_sum_to_pool_sizes(small: pd.DataFrame) -> None:
    m = M.build_manifest(small, Split(**SPLIT, seed=0))
    card = M.data_card(m)
    assert list(card.columns) == ["pool", "category", "n_examples", "mean_response_words"]
    sizes = m["pool"].value_counts()
    for pool, rows in card.groupby("pool"):
        total = rows.loc[rows["category"] == "ALL", "n_examples"].item()
        assert total == sizes[pool] == rows.loc[rows["category"] != "ALL", "n_examples"].sum()
    private_words = m.loc[m["pool"] == "private", "response"].str.split().str.len().mean()
    got = card.query("pool == 'private' and category == 'ALL'")["mean_response_words"].item()
    assert got == pytest.approx(private_words, abs=0.01)
    assert card["pool"].iloc[0] == "private" and card["category"].iloc[len(set(m["category"]))] == "ALL"


def test_select_pool(small: pd.DataFrame) -> None:
    m = M.build_manifest(small, Split(**SPLIT, seed=0))
    both = M.select_pool(m, "private", "nonmember")
    assert len(both) == SPLIT["private"] + SPLIT["nonmember"]
    assert set(both["pool"]) == {"private", "nonmember"}
    with pytest.raises(D.DataError, match="unknown pool.*'member'"):
        M.select_pool(m, "member")


# ---- loaders --------------------------------------------------------------------------------------------

RECORDS = [
    {"prompt": "Name a colour", "input": "", "output": "Blue", "task": "open_qa"},
    {"prompt": "Summarize", "input": "A long text.", "output": "Short.", "task": "summarization"},
    {"prompt": "Say NA", "input": "", "output": "NA", "task": "open_qa"},
]
MAPPING = {"instruction": "prompt", "context": "input", "response": "output", "category": "task"}


def _write(path, fmt: str) -> None:
    df = pd.DataFrame(RECORDS)
    if fmt == "json":
        path.write_text(json.dumps(RECORDS))
    elif fmt == "jsonl":
        path.write_text("\n".join(json.dumps(r) for r in RECORDS) + "\n")
    elif fmt == "parquet":
        df.to_parquet(path)
    else:
        df.to_csv(path, index=False)


@pytest.mark.parametrize("fmt", ["json", "jsonl", "parquet", "csv"])
def test_load_file_formats_with_column_mapping(tmp_path, fmt: str) -> None:
    path = tmp_path / f"data.{fmt}"
    _write(path, fmt)
    out = S.validate_records(S.load_file(str(path), MAPPING))
    assert out["instruction"].tolist() == ["Name a colour", "Summarize", "Say NA"]
    assert out["context"].tolist() == ["", "A long text.", ""]
    assert out["response"].tolist() == ["Blue", "Short.", "NA"]  # "NA" is text, not a missing value
    assert out["category"].tolist() == ["open_qa", "summarization", "open_qa"]


def test_load_file_defaults_for_absent_context_and_category(tmp_path) -> None:
    path = tmp_path / "plain.jsonl"
    path.write_text(json.dumps({"instruction": "Hi", "response": "Hello"}) + "\n")
    out = S.load_file(str(path))
    assert out.iloc[0].to_dict() == {"instruction": "Hi", "context": "", "response": "Hello",
                                     "category": D.UNCATEGORIZED}


def test_load_file_errors_name_the_problem(tmp_path) -> None:
    path = tmp_path / "data.json"
    _write(path, "json")
    with pytest.raises(D.DataError, match=r"column 'response' \(for field 'response'\) not found.*'output'"):
        S.load_file(str(path), {"instruction": "prompt"})
    with pytest.raises(D.DataError, match=r"column 'ctx' \(for field 'context'\)"):
        S.load_file(str(path), {**MAPPING, "context": "ctx"})
    with pytest.raises(D.DataError, match="unknown field"):
        S.load_file(str(path), {"answer": "output"})
    with pytest.raises(D.DataError, match="data file not found"):
        S.load_file(str(tmp_path / "missing.json"))
    (tmp_path / "data.txt").write_text("x")
    with pytest.raises(D.DataError, match="cannot infer the format"):
        S.load_file(str(tmp_path / "data.txt"))
    (tmp_path / "bad.jsonl").write_text('{"instruction": "a"}\nnot json\n')
    with pytest.raises(D.DataError, match=r"bad.jsonl:2"):
        S.load_file(str(tmp_path / "bad.jsonl"))


def test_load_hub_maps_columns_offline(tmp_path, monkeypatch) -> None:
    datasets = pytest.importorskip("datasets")
    path = tmp_path / "hub.jsonl"
    _write(path, "jsonl")
    real_load = datasets.load_dataset
    calls = []

    def offline_load(name, split, revision):
        calls.append((name, split, revision))
        return real_load("json", data_files=str(path), split=split, cache_dir=str(tmp_path / "cache"))

    monkeypatch.setattr(datasets, "load_dataset", offline_load)
    out = S.load_hub("org/dolly-like", split="train", revision="abc123", columns=MAPPING)
    assert calls == [("org/dolly-like", "train", "abc123")]
    assert out["response"].tolist() == ["Blue", "Short.", "NA"]
    assert out["category"].tolist() == ["open_qa", "summarization", "open_qa"]


def test_load_hub_failure_is_a_data_error_with_offline_hint(monkeypatch) -> None:
    datasets = pytest.importorskip("datasets")

    def no_network(*args, **kwargs):
        raise ConnectionError("no route to host")

    monkeypatch.setattr(datasets, "load_dataset", no_network)
    with pytest.raises(D.DataError, match=r"'org/x'.*no route to host.*HF_HUB_OFFLINE"):
        S.load_hub("org/x")


def test_load_source_dispatch(tmp_path) -> None:
    small_split = Split(nonmember=1, dev=1)
    synth = S.load_source(Data(synthetic=SyntheticSource(n_examples=16, seed=0), split=small_split))
    pd.testing.assert_frame_equal(synth, G.generate_synthetic(16, 0))
    path = tmp_path / "d.csv"
    _write(path, "csv")
    out = S.load_source(Data(source="file", file=FileSource(path=str(path), columns=MAPPING)))
    assert len(out) == 3
    # A source that names nothing to read is refused by the config model, before any loading.
    with pytest.raises(ValidationError, match="source"):
        Data(source="ftp")
    with pytest.raises(ValidationError, match="hub.name is not set"):
        Data(source="hub")
    with pytest.raises(ValidationError, match="file.path is not set"):
        Data(source="file", file=FileSource())
    assert HubSource().split == "train"


def test_prepare_code_version_covers_the_data_package() -> None:
    """The prepare_data rule hashes ``data.manifest``: its closure reaches every module the split runs."""
    closure = provenance.module_closure(["data.manifest"])
    assert {"data", "data.manifest", "data.sources", "data.synthetic", "data.vocabulary", "hub", "io",
            "config"} <= set(closure)


def test_prepare_is_build_manifest_plus_data_card() -> None:
    data = Data(synthetic=SyntheticSource(n_examples=400, seed=3), split=Split(**SPLIT, seed=0))
    manifest, card = M.prepare(data)
    expected = M.build_manifest(G.generate_synthetic(400, 3), data.split)
    pd.testing.assert_frame_equal(manifest, expected)
    pd.testing.assert_frame_equal(card, M.data_card(expected))


def test_prepare_reads_a_hub_dataset_from_the_downloaded_snapshot(tmp_path) -> None:
    pytest.importorskip("datasets")
    snap = tmp_path / "snapshot"
    snap.mkdir()
    rows = [{"instruction": f"Q{i}", "context": "", "response": f"A{i}", "category": "open_qa"} for i in range(30)]
    (snap / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    downloads = tmp_path / "downloads.json"
    entry = {"repo_id": "org/d", "repo_type": "dataset", "revision": None, "commit": "c" * 40, "path": str(snap)}
    downloads.write_text(json.dumps([entry]))
    data = Data(source="hub", hub=HubSource(name="org/d"), split=Split(nonmember=5, dev=5, seed=0))
    manifest, card = M.prepare(data, str(downloads))
    assert len(manifest) == 30 and set(manifest["response"]) == {f"A{i}" for i in range(30)}
    assert card.loc[card.category == "ALL", "n_examples"].sum() == 30


def test_load_file_expands_the_home_directory(tmp_path, monkeypatch) -> None:
    """``data.file.path: ~/x.jsonl`` passes validation and the rule's input (both expand ``~``): the job that
    reads it must expand it too (it failed with "data file not found" in prepare_data)."""
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps({"instruction": "Say hi", "response": "hi"}) + "\n")
    monkeypatch.setenv("HOME", str(tmp_path))
    out = S.validate_records(S.load_file("~/x.jsonl"))
    assert out["response"].tolist() == ["hi"]
