"""The documented SLURM command gets the SLURM profile's settings, not the auto-loaded local profile's."""

import re
import shlex
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
cli = pytest.importorskip("snakemake.cli")


def _settings(argv, monkeypatch):
    monkeypatch.chdir(REPO)
    _, args = cli.parse_args(argv)
    return args


def _documented_slurm_command() -> list[str]:
    readme = (REPO / "README.md").read_text()
    lines = [l for l in readme.splitlines() if re.match(r"snakemake .*profile profiles/<your-site>", l)]
    assert lines, "README documents no SLURM command"
    argv = shlex.split(lines[0].replace("<your-site>", "slurm"))[1:]
    return [a for a in argv if a not in ("...",)]


def test_the_documented_slurm_command_carries_the_slurm_profile(monkeypatch):
    slurm = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    local = yaml.safe_load((REPO / "profiles" / "default" / "config.yaml").read_text())
    # the two profiles disagree on these: the test can tell which one won
    assert slurm["latency-wait"] != local["latency-wait"] and slurm["keep-going"] != local["keep-going"]
    args = _settings(_documented_slurm_command() + ["-n"], monkeypatch)
    assert args.latency_wait == slurm["latency-wait"]
    assert args.keep_going is slurm["keep-going"]
    assert args.executor == "slurm" and args.retries == slurm["retries"]


def test_plain_runs_get_the_local_profile(monkeypatch):
    local = yaml.safe_load((REPO / "profiles" / "default" / "config.yaml").read_text())
    args = _settings(["-n"], monkeypatch)
    assert args.latency_wait == local["latency-wait"] and args.keep_going is local["keep-going"]
    assert args.rerun_incomplete is True


def test_profile_is_the_wrong_flag(monkeypatch):
    # why README says --workflow-profile: with --profile the auto-loaded local profile wins
    args = _settings(["--profile", "profiles/slurm", "-n"], monkeypatch)
    local = yaml.safe_load((REPO / "profiles" / "default" / "config.yaml").read_text())
    assert args.latency_wait == local["latency-wait"]
