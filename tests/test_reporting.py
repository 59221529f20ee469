"""The reporting package as a whole: no import cycles, modules of a readable size, the method order read from
the method registry, and per-model tables stacked under their model's key columns."""

import ast
from pathlib import Path

import pandas as pd

from kdprivacy.kd import KD_METHODS, METHODS
from kdprivacy.reporting import tables, tidy

PACKAGE = Path(__file__).resolve().parents[1] / "kdprivacy"
REPORTING = sorted((PACKAGE / "reporting").rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """kdprivacy modules ``path`` imports at module level (the lazy imports inside functions break no cycle
    at import time but are listed too: a cycle through them is still a design smell)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kdprivacy"):
            base = node.module[len("kdprivacy") :].lstrip(".")
            for alias in node.names:
                name = f"{base}.{alias.name}" if base else alias.name
                found.add(name if (PACKAGE / f"{name.replace('.', '/')}.py").exists() else base)
        elif isinstance(node, ast.Import):
            found |= {a.name[len("kdprivacy.") :] for a in node.names if a.name.startswith("kdprivacy.")}
    return {name for name in found if name}


def test_reporting_has_no_import_cycles():
    graph = {module_name(p): imports(p) for p in REPORTING}
    state: dict[str, int] = {}

    def visit(name, trail):
        if state.get(name) == 1:
            raise AssertionError(f"import cycle: {' -> '.join([*trail, name])}")
        if state.get(name) == 2 or name not in graph:
            return
        state[name] = 1
        for other in graph[name]:
            visit(other, [*trail, name])
        state[name] = 2

    for name in graph:
        visit(name, [])


def test_reporting_modules_are_small_and_say_what_they_are_for():
    for path in REPORTING:
        assert len(path.read_text().splitlines()) <= 600, path
        assert ast.get_docstring(ast.parse(path.read_text())), path


def test_method_order_comes_from_the_registry():
    assert tidy.METHOD_ORDER == ("teacher", *METHODS)
    ranks = [tidy.method_sort_key(m) for m in ("teacher", *METHODS, "unknown")]
    assert ranks == sorted(ranks) and len(set(ranks)) == len(ranks)
    students = pd.DataFrame(
        [{"family": "f", "model": m, "role": "student", "method": m, "attack": "loss", "auc": 0.6} for m in METHODS]
    )
    assert list(tidy.kd_method_auc(students)["method"]) == list(KD_METHODS)


def test_collect_puts_model_keys_in_front(tmp_path):
    models = [{"family": "f", "seed": 0, "model": "a"}, {"family": "f", "seed": 1, "model": "a"}]
    paths = []
    for i, spec in enumerate(models):
        paths.append(tmp_path / f"{i}.csv")
        pd.DataFrame({"model": ["stale"], "x": [i]}).to_csv(paths[-1], index=False)
    table = tables.collect([str(p) for p in paths], models)
    assert list(table.columns) == ["family", "seed", "model", "x"]
    assert table.to_dict("records") == [{**m, "x": i} for i, m in enumerate(models)]
