"""The library's shape: no import cycles inside kdprivacy/, modules of a readable size with a docstring, and
rules/common.smk holding only what every stage shares."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "kdprivacy"
MODULES = sorted(PACKAGE.rglob("*.py"))
MAX_LINES = 600  # the redesign's bound (#14): one concept per module


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


def test_no_import_cycles():
    graph = {module_name(p): imports(p) for p in MODULES}
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


def test_modules_are_small_and_say_what_they_are_for():
    long = {str(p.relative_to(PACKAGE)): n for p in MODULES if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"
    undocumented = [str(p.relative_to(PACKAGE)) for p in MODULES if not ast.get_docstring(ast.parse(p.read_text()))]
    assert not undocumented, f"modules without a docstring: {undocumented}"


def test_common_smk_holds_only_the_shared_helpers():
    lines = len((PACKAGE.parent / "rules" / "common.smk").read_text().splitlines())
    assert lines <= 250, f"rules/common.smk has {lines} lines; rule-specific builders belong in their stage file"


def test_readme_layout_names_every_module_and_subpackage():
    """README's Layout section is the map of the library: every module and subpackage of kdprivacy/ (and of
    its subpackages, but the plots modules, the claims modules (`claims*`) and the one module per KD method) is
    named there, so the section cannot fall behind."""
    from kdprivacy.kd import METHODS

    readme = (PACKAGE.parent / "README.md").read_text()
    layout = readme[readme.index("## Layout"):]
    missing = []
    for path in MODULES:
        rel = path.relative_to(PACKAGE)
        if rel.name in ("__init__.py", "__main__.py") and len(rel.parts) > 1:
            name = rel.parts[-2]  # a subpackage: named with its slash
            if len(rel.parts) == 2 and f"`{name}/`" not in layout:
                missing.append(f"{name}/")
            continue
        if rel.name == "__init__.py" or "plots" in rel.parts or rel.stem.startswith("claims"):
            continue
        if rel.parts[0] == "kd" and rel.stem in METHODS:
            continue
        if f"`{rel.stem}`" not in layout and f"`{rel.stem}`:" not in layout:
            missing.append(str(rel))
    assert not missing, f"README's Layout section does not name {missing}"


def test_the_attack_code_is_not_part_of_the_training_code_version():
    """Every job imports the config, and the config reads the attack names: from mia.registry (standard
    library only), so editing an attack's code reruns the attack jobs, never a training job (found in review:
    the config imported mia.attacks, whose closure put attacks, numpy and pandas code into every job's hash)."""
    import subprocess
    import sys

    from kdprivacy import provenance

    for job in ("train.jobs", "kd.generations", "data.manifest", "config"):
        closure = provenance.module_closure([job])
        assert "mia.registry" in closure or job == "data.manifest", (job, closure)
        assert "mia.attacks" not in closure and "mia.metrics" not in closure, (job, closure)
    assert "mia.attacks" in provenance.module_closure(["mia.jobs"])
    code = "import sys, kdprivacy.config; print(sorted({'numpy', 'pandas', 'torch'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
