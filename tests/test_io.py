"""Atomic outputs (kdprivacy.io): written whole or not at all, with the permissions the umask asks for."""

from __future__ import annotations

import os
import stat

import pytest

from kdprivacy import io


@pytest.fixture
def umask():
    """Set the process umask for one test and restore it afterwards."""
    previous = os.umask(0o022)
    yield os.umask
    os.umask(previous)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077], ids=oct)
def test_atomic_outputs_respect_the_umask(tmp_path, umask, mask):
    """Files get 0666 & ~umask and directories 0777 & ~umask, like ``open`` and ``mkdir`` (mkstemp/mkdtemp
    alone would leave 0600/0700: group members of a shared project could not read the results)."""
    umask(mask)
    io.write_text(tmp_path / "a.txt", "x")
    io.write_json(tmp_path / "sub" / "b.json", {"a": 1})
    with io.atomic_path(tmp_path / "c.bin") as tmp:
        tmp.write_bytes(b"y")
    with io.atomic_dir(tmp_path / "model") as tmp:
        (tmp / "weights").write_bytes(b"z")
    for name in ("a.txt", "sub/b.json", "c.bin", "model/weights"):
        assert _mode(tmp_path / name) == 0o666 & ~mask, name
    for name in ("sub", "model"):
        assert _mode(tmp_path / name) == 0o777 & ~mask, name
    assert io.umask() == mask and os.umask(mask) == mask  # read, and left as it was


def test_atomic_dir_replaces_and_cleans_up_on_failure(tmp_path):
    with io.atomic_dir(tmp_path / "d") as tmp:
        (tmp / "old").write_text("1")
    with pytest.raises(RuntimeError), io.atomic_dir(tmp_path / "d") as tmp:
        (tmp / "new").write_text("2")
        raise RuntimeError("killed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]  # no temporary sibling left
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["old"]  # the previous output is intact
    with pytest.raises(RuntimeError), io.atomic_path(tmp_path / "f.txt") as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert not (tmp_path / "f.txt").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["d"]
