"""Provenance: code versions for rerun triggers, content hashes of inputs, and a record per artifact.

Snakemake reruns a job when its ``params`` change but never tracks modules a script imports, so every
rule passes :func:`code_version` of the library modules it actually uses (found by following imports).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.metadata
import json
import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kdprivacy import io

PACKAGE_DIR = Path(__file__).resolve().parent
PACKAGE = PACKAGE_DIR.name
TRACKED_DISTRIBUTIONS = (
    "torch", "transformers", "tokenizers", "datasets", "safetensors", "accelerate",
    "numpy", "pandas", "pyarrow", "scikit-learn", "matplotlib", "snakemake",
)


def module_path(module: str) -> Path | None:
    """The source file of library module ``module`` (dotted below the package: ``mia.scoring``; a
    subpackage is its ``__init__.py``), or None when there is none."""
    base = PACKAGE_DIR.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _internal_imports(module: str) -> set[str]:
    """Names of ``kdprivacy`` modules imported by ``module`` (absolute or relative imports). Parsed once per
    file version: every rule of the Snakefile asks for its closure at parse time."""
    path = module_path(module)
    stat = path.stat()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    return set(_parsed_imports(str(path), package, stat.st_mtime_ns, stat.st_size))


def _with_parents(module: str) -> list[str]:
    """``mia.scoring`` -> ``mia``, ``mia.scoring``: importing a module runs its packages' ``__init__``."""
    parts = module.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


@functools.lru_cache(maxsize=None)
def _parsed_imports(path: str, package: str, _mtime_ns: int, _size: int) -> frozenset[str]:
    source = Path(path).read_text(encoding="utf-8")
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".") if package else []
                parts = parts[: len(parts) - (node.level - 1)] if node.level > 1 else parts
                parent = ".".join([*parts, *(node.module.split(".") if node.module else [])])
            elif node.module == PACKAGE:
                parent = ""
            elif node.module and node.module.startswith(PACKAGE + "."):
                parent = node.module[len(PACKAGE) + 1 :]
            else:
                continue
            if parent:
                found.update(_with_parents(parent))
            for alias in node.names:  # a submodule, or a name defined in ``parent``
                name = f"{parent}.{alias.name}" if parent else alias.name
                if module_path(name) is not None:
                    found.update(_with_parents(name))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PACKAGE + "."):
                    found.update(_with_parents(alias.name[len(PACKAGE) + 1 :]))
    return frozenset(name for name in found if module_path(name) is not None)


def module_closure(modules: list[str] | tuple[str, ...]) -> list[str]:
    """``modules`` plus every library module they import (and the packages holding them), transitively,
    sorted; dotted names below the package (``mia.scoring``)."""
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        if module_path(name) is None:
            raise ValueError(f"code_version: no module {PACKAGE}.{name}")
        seen.add(name)
        todo.extend(set(_with_parents(name)[:-1]) - seen)
        todo.extend(_internal_imports(name) - seen)
    return sorted(seen | {"__init__"})


def code_version(*modules: str, extra_files: tuple[str | os.PathLike, ...] = ()) -> str:
    """Hash of the source of ``modules`` and everything they import from the library (and extra files)."""
    digest = hashlib.sha256()
    for name in module_closure(list(modules)):
        digest.update(name.encode())
        digest.update((PACKAGE_DIR / "__init__.py" if name == "__init__" else module_path(name)).read_bytes())
    for path in extra_files:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:16]


def content_hash(path: str | os.PathLike) -> str:
    """sha256 of a file, or of a directory's files (relative names and bytes, sorted; provenance excluded)."""
    root = Path(path)
    digest = hashlib.sha256()
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    for file in files:
        if file.name == "provenance.json":
            continue
        digest.update(str(file.relative_to(root) if file != root else file.name).encode())
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


HASH_CACHE = os.path.join(".snakemake", "kdprivacy-input-hashes.json")


def _stats(root: Path) -> list[list]:
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    out = []
    for file in files:
        if file.name == "provenance.json":
            continue
        st = file.stat()
        out.append([str(file.relative_to(root)) if file != root else file.name, st.st_size, st.st_mtime_ns])
    return out


def input_hash(path: str | os.PathLike, cache: str | os.PathLike | None = HASH_CACHE) -> str:
    """:func:`content_hash` of a file or directory, recomputed only when a file's size or mtime changed.

    The hashes of unchanged inputs come from ``cache`` (a JSON file in the working directory's
    ``.snakemake``; None = no cache), so a multi-GB model directory is read once, not at every parse.
    """
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"input {str(path)!r} does not exist")
    key = os.path.abspath(root)
    stats = _stats(root)
    entries: dict[str, Any] = {}
    if cache is not None and os.path.isfile(cache):
        try:
            with open(cache, encoding="utf-8") as handle:
                entries = json.load(handle)
        except (OSError, ValueError):
            entries = {}
    hit = entries.get(key)
    if isinstance(hit, dict) and hit.get("stats") == stats:
        return hit["sha256"]
    digest = content_hash(root)
    if cache is not None:
        entries[key] = {"stats": stats, "sha256": digest}
        try:
            io.write_json(cache, entries)
        except OSError:
            pass  # a read-only working directory only loses the cache
    return digest


def hub_commits(path: str | os.PathLike) -> list[dict[str, Any]]:
    """What ``download_hub`` resolved (name, type, requested revision, commit) from its ``downloads.json``."""
    with open(path, encoding="utf-8") as handle:
        entries = json.load(handle)
    return [{k: e.get(k) for k in ("repo_id", "repo_type", "revision", "commit")} for e in entries]


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for dist in TRACKED_DISTRIBUTIONS:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def _flatten_inputs(inputs: dict[str, Any] | None) -> dict[str, str]:
    """Named inputs may be one path or a (possibly empty) list of paths, as Snakemake passes them."""
    flat: dict[str, str] = {}
    for name, value in (inputs or {}).items():
        if isinstance(value, (str, os.PathLike)):
            flat[name] = str(value)
        else:
            paths = [str(v) for v in value]
            flat.update({name: paths[0]} if len(paths) == 1 else {f"{name}[{i}]": v for i, v in enumerate(paths)})
    return flat


def record(
    params: dict[str, Any], inputs: dict[str, Any] | None = None, rule: str | None = None
) -> dict[str, Any]:
    """The provenance of one artifact: its config subset, input hashes (and, for hub models and data, the
    commits they resolved to) and software versions."""
    flat = _flatten_inputs(inputs)
    hub = [e for p in flat.values() if Path(p).name == "downloads.json" for e in hub_commits(p)]
    return {
        "rule": rule,
        "params": params,
        "inputs": {name: {"path": p, "sha256": input_hash(p)} for name, p in flat.items()},
        **({"hub": hub} if hub else {}),
        "packages": package_versions(),
        "platform": platform.platform(),
        "argv": sys.argv,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def write(path: str | os.PathLike, params: dict[str, Any], inputs=None, rule: str | None = None) -> None:
    """Write ``provenance.json`` (or the given path) atomically."""
    io.write_json(path, record(params, inputs, rule))
