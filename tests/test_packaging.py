"""The install paths agree: pyproject, the conda env for --sdm conda, and the README's commands."""

import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def test_conda_env_lists_the_package_dependencies():
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((REPO / "envs" / "kdprivacy.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert sorted(pip) == sorted(deps)


def test_torch_range_admits_the_pinned_cpu_wheel():
    from packaging.specifiers import SpecifierSet

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    torch = next(d for d in deps if d.startswith("torch"))
    assert "2.13.0" in SpecifierSet(torch.removeprefix("torch"))
    assert "pip install torch==2.13.0" in (REPO / "Makefile").read_text()


def test_readme_commands_exist():
    readme = (REPO / "README.md").read_text()
    makefile = (REPO / "Makefile").read_text()
    for target in ("demo", "test"):
        assert f"make {target}" in readme and f"\n{target}:" in makefile
    assert "make test" in (REPO / ".ci" / "run").read_text()


def test_ci_runs_the_unit_tests_at_two_thread_counts():
    ci = (REPO / ".ci" / "run").read_text()
    assert "set -euo pipefail" in ci
    assert "OMP_NUM_THREADS=$cores make test" in ci
    assert 'OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv/bin/python -m pytest -q -m "not workflow"' in ci
    assert ci.index("make test") < ci.index("OMP_NUM_THREADS=1 ")
