"""Atomic outputs and provenance records."""

import json

import pandas as pd
import pytest

from kdprivacy import io, provenance


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.csv"
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_replaces_only_on_success(tmp_path):
    target = tmp_path / "model"
    with io.atomic_dir(target) as tmp:
        (tmp / "weights").write_text("v1")
    with pytest.raises(RuntimeError):
        with io.atomic_dir(target) as tmp:
            (tmp / "weights").write_text("v2-partial")
            raise RuntimeError("killed")
    assert (target / "weights").read_text() == "v1"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_write_csv_is_byte_stable(tmp_path):
    df = pd.DataFrame({"a": [0.1 + 0.2, 1 / 3], "b": ["x", "y"]})
    io.write_csv(df, tmp_path / "1.csv")
    io.write_csv(df.copy(), tmp_path / "2.csv")
    assert (tmp_path / "1.csv").read_bytes() == (tmp_path / "2.csv").read_bytes()


def test_module_closure_follows_imports():
    closure = provenance.module_closure(["provenance"])
    assert closure == ["__init__", "io", "provenance"]
    assert "encoding" in provenance.module_closure(["mia.scoring"])


def test_module_closure_takes_dotted_names_and_their_packages(tmp_path):
    """Subpackage modules are named with dots; importing one runs its package's ``__init__`` (hashed too);
    ``from kdprivacy.mia import scoring`` and ``import kdprivacy.mia.scoring`` both count."""
    closure = provenance.module_closure(["mia.blocks"])
    assert {"mia", "mia.blocks", "mia.metrics", "mia.perturb", "mia.scoring", "stats", "encoding"} <= set(closure)
    assert provenance.module_closure(["mia"]) == ["__init__", "mia"]
    assert provenance.module_path("mia").name == "__init__.py"
    assert provenance.module_path("mia.nope") is None
    with pytest.raises(ValueError, match="no module kdprivacy.mia.nope"):
        provenance.code_version("mia.nope")
    assert provenance.code_version("mia.attacks") != provenance.code_version("mia.metrics")


def test_code_version_changes_with_extra_file(tmp_path):
    f = tmp_path / "script.py"
    f.write_text("a = 1\n")
    v1 = provenance.code_version("io", extra_files=(f,))
    assert v1 == provenance.code_version("io", extra_files=(f,))
    f.write_text("a = 2\n")
    assert provenance.code_version("io", extra_files=(f,)) != v1


def test_unknown_module_is_an_error():
    with pytest.raises(ValueError, match="no module kdprivacy.nope"):
        provenance.code_version("nope")


def test_content_hash_of_directory_ignores_provenance(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"123")
    h1 = provenance.content_hash(tmp_path)
    provenance.write(tmp_path / "provenance.json", params={"lr": 1e-3}, inputs={"a": tmp_path / "a.bin"})
    assert provenance.content_hash(tmp_path) == h1
    (tmp_path / "a.bin").write_bytes(b"124")
    assert provenance.content_hash(tmp_path) != h1
    rec = json.loads((tmp_path / "provenance.json").read_text())
    assert rec["params"] == {"lr": 1e-3} and "torch" in rec["packages"]


def test_record_accepts_snakemake_style_list_inputs(tmp_path):
    (tmp_path / "a").write_text("1")
    (tmp_path / "b").write_text("2")
    rec = provenance.record({}, inputs={"one": tmp_path / "a", "none": [], "many": [tmp_path / "a", tmp_path / "b"],
                                        "single": [str(tmp_path / "b")]})
    assert sorted(rec["inputs"]) == ["many[0]", "many[1]", "one", "single"]
    assert rec["inputs"]["single"]["sha256"] == provenance.content_hash(tmp_path / "b")
