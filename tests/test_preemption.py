"""Preemption inside a Snakemake job: the signal SLURM sends before the time limit (the profile's
``--signal=URG@600``, to every process of the job step) makes the training script checkpoint and stop while
Snakemake survives to fail the job cleanly; the rerun resumes and ends with the same weights as an
uninterrupted run. With SIGUSR1 (the old choice) Snakemake itself dies at once (default action: terminate)."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from kdprivacy import checkpoint

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "configs" / "smoke.yaml"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
TEACHER = "results/gpt2/seed0/models/teacher"
LOG = "results/logs/train_teacher/gpt2/seed0.log"
EPOCHS = 60  # long enough (several seconds) to be signalled mid-training

pytestmark = pytest.mark.workflow


def _cmd(workdir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), *args,
            "--configfile", str(SMOKE), "--cores", "1",
            "--config", f"families={{gpt2: {{teacher: {{train: {{epochs: {EPOCHS}}}}}}}}}"]


def _run(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(_cmd(workdir, *args), env=ENV, capture_output=True, text=True, timeout=900)
    if check:
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc


def _signal_mid_training(workdir: Path, signum: int) -> tuple[subprocess.Popen, str]:
    """Start the teacher's training job; once it logs its second epoch, send ``signum`` to every process of
    the job (Snakemake and the script: what SLURM's --signal does to a job step)."""
    proc = subprocess.Popen(_cmd(workdir, TEACHER), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    log = workdir / LOG
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        if log.exists() and f"epoch 2/{EPOCHS}" in log.read_text(errors="replace"):
            os.killpg(proc.pid, signum)
            break
        time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail(f"training never reached epoch 2 (exit {proc.poll()})")
    out, _ = proc.communicate(timeout=600)
    return proc, out


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """Data, tokenizer and base model, shared by the runs below (copied, never trained again)."""
    workdir = tmp_path_factory.mktemp("preempt")
    _run(workdir, "--until", "pretrain_base")
    return workdir


def _copy(prepared: Path, tmp_path: Path, name: str) -> Path:
    target = tmp_path / name
    shutil.copytree(prepared, target, symlinks=True)
    return target


def test_profile_sends_the_signal_the_training_catches():
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    extras = {rule: spec.get("slurm_extra", "") for rule, spec in profile["set-resources"].items()}
    for rule in ("train_teacher", "train_student", "train_init", "pretrain_base"):
        assert "--signal=URG@" in extras[rule], rule
    assert "SIGURG" in checkpoint.SIGNALS


def test_signalled_job_checkpoints_fails_cleanly_and_resumes_to_the_same_weights(prepared, tmp_path):
    reference = _copy(prepared, tmp_path, "uninterrupted")
    _run(reference, TEACHER)
    interrupted = _copy(prepared, tmp_path, "interrupted")
    proc, out = _signal_mid_training(interrupted, signal.SIGURG)
    assert proc.returncode == 1, out[-4000:]  # Snakemake lived to report the failed job (not killed: < 0)
    log = (interrupted / LOG).read_text()
    assert f"received signal {int(signal.SIGURG)}" in log and "Preempted" in out + log, log[-3000:]
    assert not (interrupted / TEACHER).exists()  # no half-written model
    assert (interrupted / f"{TEACHER}.resume" / checkpoint.STATE_FILE).exists()
    _run(interrupted, TEACHER)  # what `retries` / a requeue does
    assert "resum" in (interrupted / LOG).read_text().lower()
    ours = (interrupted / TEACHER / "model.safetensors").read_bytes()
    assert ours == (reference / TEACHER / "model.safetensors").read_bytes()


def test_usr1_kills_snakemake_itself(prepared, tmp_path):
    # why the profile does not use USR1: SLURM signals every process of the step, Snakemake included
    proc, out = _signal_mid_training(_copy(prepared, tmp_path, "usr1"), signal.SIGUSR1)
    assert proc.returncode == -signal.SIGUSR1, out[-2000:]
