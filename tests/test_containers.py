"""HPC deployment files: the Apptainer recipe is the spython conversion of the Dockerfile (kept in sync), the
Dockerfile installs every dependency of the package, and the SLURM site profile names real rules and options."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "containers" / "Dockerfile"
DEFFILE = REPO / "containers" / "kdprivacy.def"
PROFILE = REPO / "profiles" / "slurm" / "config.yaml"


def _spython_recipe(dockerfile: Path) -> str:
    """What ``spython recipe containers/Dockerfile`` prints (the CLI adds one newline)."""
    from spython.main.parse.parsers import DockerParser
    from spython.main.parse.writers import SingularityWriter

    return SingularityWriter(DockerParser(str(dockerfile)).recipe).convert() + "\n"


def test_apptainer_recipe_is_generated_from_the_dockerfile():
    pytest.importorskip("spython", reason="spython (test dependency) converts the Dockerfile")
    expected = _spython_recipe(DOCKERFILE)
    assert DEFFILE.read_text() == expected, (
        "containers/kdprivacy.def is out of sync with containers/Dockerfile; regenerate it with\n"
        "  spython recipe containers/Dockerfile > containers/kdprivacy.def"
    )


def test_dockerfile_gpu_stack():
    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG BASE=nvidia/cuda:\S+\nFROM \$\{BASE\}", text, re.M), "CUDA base image by default"
    assert re.search(r"^ARG FLAVOUR=gpu$", text, re.M), "the GPU flavour is the default"
    assert "python3.11 -m venv" in text
    for package in ("torch", "peft", "bitsandbytes", "accelerate", "snakemake"):
        assert re.search(rf'"{package}[><=]', text), package
    recipe = DEFFILE.read_text()
    assert recipe.startswith("Bootstrap: docker\nFrom: nvidia/cuda:")
    assert "export DEBIAN_FRONTEND=noninteractive" in recipe  # exported inside %post (ENV is not)


def test_dockerfile_installs_the_package_dependencies():
    """Every runtime dependency of pyproject.toml, with the same version range (installed before the package,
    which goes in with --no-deps)."""
    tomllib = pytest.importorskip("tomllib") if sys.version_info >= (3, 11) else pytest.importorskip("tomli")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    text = DOCKERFILE.read_text()
    wanted = list(project["dependencies"]) + [
        d for d in project.get("optional-dependencies", {}).get("workflow", []) if d.startswith("snakemake>")
    ]
    missing = [dep for dep in wanted if f'"{dep}"' not in text.replace(" ", "") and not dep.startswith("torch")]
    assert not missing, f"containers/Dockerfile lacks {missing} (same specifier as pyproject.toml)"


def test_dockerfile_torch_matches_the_image_cuda():
    """torch is pinned inside pyproject's range and built for the base image's CUDA (checked at build too)."""
    from packaging.requirements import Requirement

    text = DOCKERFILE.read_text()
    cuda = re.search(r"^ARG BASE=nvidia/cuda:(\d+)\.(\d+)\.", text, re.M)
    index = re.search(r"^ARG TORCH_INDEX=\S+/whl/cu(\d+)$", text, re.M)
    pin = re.search(r'pip install "torch==([^"]+)" --index-url "\$TORCH_INDEX"', text)
    assert cuda and index and pin, "ARG BASE=nvidia/cuda:X.Y.Z and a pinned torch from a cuXYZ wheel index"
    assert index.group(1) == cuda.group(1) + cuda.group(2), (index.group(1), cuda.groups())
    # the build asserts the runtime: TORCH_CUDA's default is the base image's CUDA
    assert re.search(rf"^ARG TORCH_CUDA={cuda.group(1)}\.{cuda.group(2)}$", text, re.M)
    assert "assert v.startswith(want)" in text and '"$TORCH_CUDA"' in text
    tomllib = pytest.importorskip("tomllib") if sys.version_info >= (3, 11) else pytest.importorskip("tomli")
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    torch_req = next(Requirement(d) for d in deps if Requirement(d).name == "torch")
    assert pin.group(1) in torch_req.specifier, (pin.group(1), str(torch_req.specifier))


def test_dockerfile_installs_the_package_and_has_a_cpu_flavour():
    text = DOCKERFILE.read_text()
    assert "COPY kdprivacy /opt/kdprivacy/kdprivacy" in text and "pip install --no-deps /opt/kdprivacy" in text
    assert 'if [ "$FLAVOUR" = gpu ]' in text and "FLAVOUR must be gpu or cpu" in text
    # the CI's CPU build passes exactly these build arguments, each declared by the recipe
    ci = (REPO / ".ci" / "container-build.sh").read_text()
    passed = set(re.findall(r"--build-arg (\w+)=", ci))
    assert {"BASE", "FLAVOUR", "TORCH_CUDA", "TORCH_INDEX"} <= passed, passed
    for arg in passed:
        assert re.search(rf"^ARG {arg}\b", text, re.M), arg
    ignore = (REPO / ".dockerignore").read_text().split()
    assert {".venv", "results", ".snakemake"} <= {line.strip("/") for line in ignore}


# ------------------------------------------------------------------------------------------- profile
def _workflow_rules() -> set[str]:
    files = [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))]
    pattern = r"^(?:(?:rule|checkpoint)\s+(\w+)\s*:|use rule \w+ as (\w+) with:)"
    return {m.group(1) or m.group(2) for f in files for m in re.finditer(pattern, f.read_text(), re.M)}


def test_slurm_profile_names_existing_rules_and_options():
    profile = yaml.safe_load(PROFILE.read_text())
    assert profile["executor"] == "slurm"
    assert profile["slurm-status-command"] == "squeue"  # slurm-ci.md: sacct-polling hangs without accounting
    assert "--nv" in profile["apptainer-args"].split()
    assert profile["rerun-incomplete"] is True and profile["retries"] >= 1 and profile["latency-wait"] >= 5
    assert {"runtime", "mem_mb", "slurm_partition"} <= set(profile["default-resources"])
    heavy = {"train_teacher", "train_student", "train_init", "pretrain_base", "generate_teacher", "score_model",
             "score_reference", "mope", "per_block", "memorization", "utility",
             "train_shadow_teacher", "train_shadow_student", "generate_shadow_teacher", "score_shadow"}
    assert set(profile["set-resources"]) == heavy
    unknown = set(profile["set-resources"]) - _workflow_rules()
    assert not unknown, f"set-resources names rules that do not exist (silently ignored): {sorted(unknown)}"
    text = PROFILE.read_text()
    assert re.search(r"^# software-deployment-method: apptainer", text, re.M)
    assert re.search(r"^\s*#\s*slurm_account:", text, re.M)  # placeholder, commented


def test_slurm_profile_keys_are_snakemake_options():
    """Every active key is a long option of Snakemake 9 (with the SLURM executor plugin's options)."""
    cli = pytest.importorskip("snakemake.cli")
    pytest.importorskip("snakemake_executor_plugin_slurm")
    options = {opt for action in cli.get_argument_parser()._actions for opt in action.option_strings}
    profile = yaml.safe_load(PROFILE.read_text())
    unknown = sorted(key for key in profile if f"--{key}" not in options)
    assert not unknown, f"profile keys that are not Snakemake options: {unknown}"
    for rule, resources in profile["set-resources"].items():
        extra = resources.get("slurm_extra", "")
        assert not re.search(r"--(gres|gpus|time|mem|partition|account)\b", extra), (rule, extra)
