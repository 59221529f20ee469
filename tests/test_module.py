"""kdprivacy as a Snakemake module of someone else's workflow (``module kd: ...; use rule * from kd as
kd_*``): our own files (scripts, captions, the default config, the package) are found from this workflow's
directory, not from the importing one's."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]

pytestmark = pytest.mark.workflow


def _host(tmp_path: Path) -> Path:
    host = tmp_path / "host"
    host.mkdir()
    shutil.copy(REPO / "configs" / "smoke.yaml", host / "kd.yaml")
    (host / "Snakefile").write_text(
        'configfile: "kd.yaml"\n\n\n'
        "module kd:\n"
        f'    snakefile: "{REPO / "Snakefile"}"\n'
        "    config: config\n\n\n"
        "use rule * from kd as kd_*\n"
    )
    return host


def _run(host: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": ""}
    proc = subprocess.run([*SNAKEMAKE, *args], cwd=host, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc


def test_used_as_a_module_plans_and_runs(tmp_path):
    host = _host(tmp_path)
    planned = _run(host, "-n").stdout
    for rule in ("kd_prepare_data", "kd_train_teacher", "kd_train_student", "kd_findings", "kd_summary"):
        assert rule in planned, rule
    # the first jobs run: prepare_data's script and code version come from this workflow's scripts/
    _run(host, "--cores", "2", "--until", "kd_train_tokenizer")
    manifest = host / "results" / "data" / "manifest.parquet"
    assert manifest.stat().st_size > 0
    provenance = json.loads((host / "results" / "data" / "manifest.provenance.json").read_text())
    assert provenance, "no provenance written"
