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


# ---- Job: what every script shares -----------------------------------------------------------------------

class Named(list):  # what scripts use of Snakemake's Namedlist: attributes, items(), iteration
    def __init__(self, named=None, plain=()):
        super().__init__(list(plain) + list((named or {}).values()))
        self._named = dict(named or {})
        for key, value in self._named.items():
            setattr(self, key, value)

    def items(self):
        return self._named.items()


def smk_job(tmp_path, cfg, inputs=None, outputs=None, gpu=None):
    resources = SimpleNamespace() if gpu is None else SimpleNamespace(gpu=gpu)
    return SimpleNamespace(
        log=Named(plain=[str(tmp_path / "job.log")]), threads=1, rule="prepare_data", resources=resources,
        params=SimpleNamespace(cfg=cfg, code="abc123"), input=Named(inputs), output=Named(outputs),
    )


def test_job_starts_validates_cfg_and_exposes_inputs_outputs(no_cuda, tmp_path):
    from kdprivacy.config import Split

    raw = {"seed": 3, "nonmember": 5, "dev": 2, "private": None, "public": None}
    smk = smk_job(tmp_path, raw, {"manifest": "m.parquet", "none": [], "one": ["a"], "two": ["a", "b"]},
                  {"table": str(tmp_path / "t.csv")})
    job = runtime.Job(smk, Split)
    assert isinstance(job.cfg, Split) and job.cfg.seed == 3 and job.params is raw and job.code == "abc123"
    assert job.input.manifest == job.inputs["manifest"] == "m.parquet" and job.rule == "prepare_data"
    assert job.optional_input("missing") is None and job.optional_input("none") is None
    assert job.optional_input("one") == "a" and job.optional_input("manifest") == "m.parquet"
    with pytest.raises(ValueError, match="must be one path"):
        job.optional_input("two")
    assert job.has_output("table") and not job.has_output("figure")
    assert "rule prepare_data, threads 1" in (tmp_path / "job.log").read_text()
    assert runtime.Job(smk).cfg is raw  # no schema: the cfg as passed


def test_job_refuses_a_cfg_its_schema_rejects(no_cuda, tmp_path):
    from pydantic import ValidationError

    from kdprivacy.config import Split

    with pytest.raises(ValidationError, match="members"):
        runtime.Job(smk_job(tmp_path, {"members": 3}), Split)


def test_job_checks_gpus_like_start(no_cuda, tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with pytest.raises(runtime.DeviceError, match="CUDA is unusable"):
        runtime.Job(smk_job(tmp_path, {}, gpu=1))


def test_job_saves_outputs_by_suffix_and_writes_provenance(no_cuda, tmp_path):
    import json

    import pandas as pd

    from kdprivacy import io

    src = tmp_path / "in.txt"
    src.write_text("x")
    outs = {name: str(tmp_path / f"out.{ext}") for name, ext in
            (("frame", "parquet"), ("table", "csv"), ("record", "json"), ("text", "md"))}
    job = runtime.Job(smk_job(tmp_path, {"k": 1}, {"src": str(src)}, outs))
    frame = pd.DataFrame({"a": [1.5, 2.0], "b": ["x", "y"]})
    job.save(frame=frame, table=frame, record={"n": 1}, text="# hi\n")
    pd.testing.assert_frame_equal(pd.read_parquet(outs["frame"]), frame)
    io.write_csv(frame, tmp_path / "expected.csv")
    assert (tmp_path / "out.csv").read_bytes() == (tmp_path / "expected.csv").read_bytes()
    assert io.read_json(outs["record"]) == {"n": 1} and (tmp_path / "out.md").read_text() == "# hi\n"
    with pytest.raises(KeyError, match="no output 'nope'"):
        job.save(nope=frame)
    job.write_provenance(tmp_path / "p.json", summary={"rows": 2})
    record = json.loads((tmp_path / "p.json").read_text())
    assert record["params"] == {"cfg": {"k": 1}, "code": "abc123", "summary": {"rows": 2}}
    assert record["rule"] == "prepare_data" and list(record["inputs"]) == ["src"]
    job.write_provenance(tmp_path / "q.json", inputs={})
    assert json.loads((tmp_path / "q.json").read_text())["inputs"] == {}


def test_deterministic_config_reaches_the_job(no_cuda, tmp_path, monkeypatch):
    """deterministic: true -> the environment the Snakefile sets -> runtime.start turns on torch's
    deterministic algorithms and cuBLAS's fixed workspace; off by default."""
    import os
    from pathlib import Path

    import yaml

    from kdprivacy.config import validate_config

    raw = yaml.safe_load((Path(__file__).resolve().parents[1] / "config.yaml").read_text())
    assert validate_config(raw).deterministic is False
    for name in (runtime.DETERMINISTIC_ENV, "CUBLAS_WORKSPACE_CONFIG"):
        monkeypatch.setenv(name, "")  # recorded, so the test's settings are undone afterwards
        monkeypatch.delenv(name)
    before = torch.are_deterministic_algorithms_enabled()
    try:
        runtime.set_deterministic_environment(validate_config(raw).deterministic)
        runtime.start(fake_job(tmp_path, None))
        assert not torch.are_deterministic_algorithms_enabled()
        assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
        runtime.set_deterministic_environment(validate_config({**raw, "deterministic": True}).deterministic)
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        assert os.environ[runtime.DETERMINISTIC_ENV] == "1"
        runtime.start(fake_job(tmp_path, None))
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.backends.cudnn.benchmark
    finally:
        torch.use_deterministic_algorithms(before)
