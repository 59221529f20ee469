"""Job start-up: a job given GPUs it cannot use stops with a clear error; heavy jobs log their device."""

from __future__ import annotations

import logging
import sys
from types import SimpleNamespace

import pytest
import torch

from kdprivacy import runtime


def fake_job(tmp_path, gpu):
    resources = SimpleNamespace() if gpu is None else SimpleNamespace(gpu=gpu)
    return SimpleNamespace(log=[str(tmp_path / "job.log")], threads=1, rule="train_teacher", resources=resources)


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("KDPRIVACY_DEVICE", raising=False)
    monkeypatch.setattr(sys, "stderr", sys.stderr)  # runtime.start redirects stderr into the job log
    yield
    logging.getLogger().handlers.clear()


def test_gpu_job_without_cuda_stops_naming_the_problem(no_cuda, tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with pytest.raises(runtime.DeviceError, match=r"given 1 GPU.*CUDA is unusable.*CUDA_VISIBLE_DEVICES='0'.*"
                                                  r"KDPRIVACY_DEVICE=cpu"):
        runtime.start(fake_job(tmp_path, 1))


def test_explicit_cpu_device_and_cpu_jobs_run(no_cuda, tmp_path, monkeypatch, caplog):
    runtime.check_gpus(0)
    monkeypatch.setenv("KDPRIVACY_DEVICE", "cpu")
    runtime.check_gpus(2)
    runtime.start(fake_job(tmp_path, 1))
    text = (tmp_path / "job.log").read_text()
    assert "device cpu (1 GPU(s) requested)" in text and f"torch={torch.__version__}" in text


def test_too_few_gpus(monkeypatch):
    monkeypatch.delenv("KDPRIVACY_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(runtime.DeviceError, match="given 2 GPU.*torch sees 1"):
        runtime.check_gpus(2)


def test_light_jobs_never_touch_the_device(no_cuda, tmp_path):
    runtime.start(fake_job(tmp_path, None))  # no gpu resource declared: no check, no device line
    assert "device" not in (tmp_path / "job.log").read_text()
