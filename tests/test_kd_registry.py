"""The KD method registry (kdprivacy.kd.METHODS): every entry is complete, torch stays out of the config, and
an eighth method is one new file under kd/ plus one registry line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pydantic import BaseModel

from kdprivacy import config
from kdprivacy.kd import METHOD_BLOCKS, METHODS, SGO_PARAM, train_method
from kdprivacy.train.runs import MethodRun

REPO = Path(__file__).resolve().parents[1]
PAPER_NAMES = ("no_kd", "kd", "seqkd", "imitkd", "gkd", "minillm", "distillm")  # paper_results.csv's method column


def _python(code: str, path: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(path)}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=path, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_is_complete(name):
    spec = METHODS[name]
    assert spec.name == name and spec.paper_name in PAPER_NAMES
    assert callable(spec.train) and spec.train.__module__ == f"kdprivacy.kd.{name}"
    block = config.Student.model_fields.get(name)
    if spec.params is None:
        assert name not in METHOD_BLOCKS and MethodRun(method=name).params is None
    else:
        assert name in METHOD_BLOCKS
        assert issubclass(spec.params, BaseModel) and block is not None and block.annotation is spec.params
        assert isinstance(MethodRun(method=name, max_length=8, max_prompt_length=4).params, spec.params)
    if spec.sgo_param is not None:
        assert spec.samples_student and spec.sgo_param in spec.params.model_fields and SGO_PARAM[name] == spec.sgo_param
    # each method runs in the method tests (tests/test_distillation.py trains every one of them)
    assert f'"{name}"' in (REPO / "tests" / "test_distillation.py").read_text()


def test_registry_order_is_the_schema_order():
    schema = config.json_schema()["$defs"]["Student"]["properties"]["method"]
    assert tuple(schema["enum"]) == tuple(METHODS)


def test_config_and_method_modules_do_not_import_torch():
    names = ", ".join(repr(f"kdprivacy.kd.{n}") for n in METHODS)
    out = _python(f"""
        import importlib, sys
        import kdprivacy.config, kdprivacy.train.runs
        for name in [{names}]:
            importlib.import_module(name)
        print("torch" in sys.modules)
    """, REPO)
    assert out.strip() == "False"


DUMMY = '''"""A dummy eighth method (test only)."""

from __future__ import annotations

from kdprivacy.fields import Fraction, Strict


class DummyParams(Strict):
    strength: Fraction = 0.25


def train(student, teacher, train_items, dev_items, run, pad_id, log=None, **hooks):
    return ("dummy", run.params.strength, sorted(hooks))
'''


def _copy_with_dummy(tmp_path: Path) -> Path:
    """A copy of the repository (package, workflow, tests/dag.py) with the dummy method added as the issue
    says an eighth method is added: one new file under kd/ and one registry line. Returns the copy."""
    ignore = shutil.ignore_patterns("__pycache__")
    for part in ("kdprivacy", "rules", "scripts", "schemas", "report", "configs"):
        shutil.copytree(REPO / part, tmp_path / part, ignore=ignore)
    for part in ("Snakefile", "config.yaml", "tests/dag.py"):
        (tmp_path / part).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / part, tmp_path / part)
    package = tmp_path / "kdprivacy"
    (package / "kd" / "dummy.py").write_text(DUMMY)
    registry = package / "kd" / "__init__.py"
    lines = registry.read_text().splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if 'MethodSpec("distillm"' in line)
    lines.insert(at + 1, '        MethodSpec("dummy", "dummy", uses_teacher=True, samples_student=False, '
                         'params_class="DummyParams"),\n')
    registry.write_text("".join(lines))
    return tmp_path


def test_an_eighth_method_is_one_file_and_one_registry_line(tmp_path):
    _copy_with_dummy(tmp_path)
    raw = {"families": {"f": {"bases": {"b": {"from_scratch": {"arch": "gpt2", "n_layer": 1, "d_model": 8,
                                                               "n_head": 2}}},
                              "teacher": {"base": "b"},
                              "students": {"s": {"base": "b", "method": "dummy", "dummy": {"strength": 0.5}}}}},
           "attacks": {"names": ["loss"]}}
    out = _python(f"""
        import json
        from kdprivacy import config, kd
        from kdprivacy.train.runs import MethodRun
        assert config.__file__.startswith({str(tmp_path)!r}), config.__file__
        schema = config.json_schema()["$defs"]
        cfg = config.validate_config(json.loads({json.dumps(raw)!r}))
        student = cfg.families["f"].students["s"]
        run = MethodRun(method="dummy", method_params=student.method_params)
        result = kd.train_method(None, None, [], [], run, 0)
        try:
            config.validate_config({{**cfg.model_dump(), "families": {{"f": {{**cfg.families["f"].model_dump(),
                "students": {{"s": {{"base": "b", "method": "dummy", "dummy": {{"strength": 2.0}}}}}}}}}}}})
            refused = False
        except config.ConfigError as err:
            refused = "students.s.dummy.strength" in str(err)
        print(json.dumps({{"enum": schema["Student"]["properties"]["method"]["enum"],
                          "block": "DummyParams" in schema and "dummy" in schema["Student"]["properties"],
                          "params": student.method_params, "uses_teacher": student.uses_teacher,
                          "kd_methods": list(kd.KD_METHODS), "result": result, "refused": refused}}))
    """, tmp_path)
    found = json.loads(out.strip().splitlines()[-1])
    assert found["enum"] == [*METHODS, "dummy"]
    assert found["block"] and found["params"] == {"strength": 0.5} and found["uses_teacher"]
    assert found["kd_methods"][-1] == "dummy"
    assert found["result"] == ["dummy", 0.5, ["eos_id", "guard", "on_step", "pretrain_items", "resume",
                                              "teacher_generations"]]
    assert found["refused"]


def test_train_method_dispatches_through_the_registry(monkeypatch):
    import torch

    calls = []
    student = torch.nn.Sequential(torch.nn.Dropout(0.25))
    monkeypatch.setattr(type(METHODS["gkd"]), "train", property(
        lambda spec: lambda student, *a, **kw: calls.append((spec.name, student[0].p))))
    train_method(student, None, [], [], MethodRun(method="gkd", max_length=8, max_prompt_length=4), 0)
    # gkd's disable_dropout (default True): dropout is off while the method trains, restored after
    assert calls == [("gkd", 0.0)] and student[0].p == 0.25
    run = MethodRun(method="gkd", max_length=8, max_prompt_length=4, method_params={"disable_dropout": False})
    train_method(student, None, [], [], run, 0)
    assert calls[-1] == ("gkd", 0.25)


def test_an_eighth_method_reaches_the_dag_and_the_findings_order(tmp_path):
    repo = _copy_with_dummy(tmp_path / "repo")
    configfile = tmp_path / "dummy.yaml"
    smoke = (REPO / "configs" / "smoke.yaml").read_text()
    anchor = "      nokd-small: {base: small"
    assert anchor in smoke
    configfile.write_text(smoke.replace(anchor, "      dummy-small: {base: small, method: dummy, dummy: {strength: 0.5}, "
                                                "train: {epochs: 1, lr: 1.0e-3, batch_size: 16}}\n" + anchor, 1))
    workdir = tmp_path / "work"
    workdir.mkdir()
    env = {**os.environ, "PYTHONPATH": str(repo), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    out = workdir / "jobs.json"
    done = subprocess.run([sys.executable, str(repo / "tests" / "dag.py"), "--configfile", str(configfile),
                           "--workdir", str(workdir), "--out", str(out)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    jobs = json.loads(out.read_text())
    trained = [j for j in jobs if j["rule"] == "train_student" and j["wildcards"].get("student") == "dummy-small"]
    assert len(trained) == 1, sorted({j["rule"] for j in jobs})
    job = trained[0]
    assert '"method": "dummy"' in json.dumps(job["params"]) and '"strength": 0.5' in json.dumps(job["params"])
    assert job["input"]["teacher"] == ["results/gpt2/seed0/models/teacher"], job["input"]  # uses_teacher=True
    # and its models are scored and attacked like every student
    scored = {j["rule"] for j in jobs if "dummy-small" in json.dumps(j["wildcards"]) + json.dumps(j["output"])}
    assert {"score_model", "attack_metrics"} <= scored, scored
    # the findings' method order and the KD-method set (what the claims and tables sort and filter by)
    order = _python("""
        import json
        from kdprivacy import kd
        from kdprivacy.reporting import tidy
        import pandas as pd
        frame = pd.DataFrame({"method": ["dummy", "nokd", "teacher", "distillm", "kd"]})
        print(json.dumps({"order": list(tidy.METHOD_ORDER), "kd": list(kd.KD_METHODS),
                          "sorted": tidy.by_method(frame, ["method"])["method"].tolist()}))
    """, repo)
    found = json.loads(order.strip().splitlines()[-1])
    assert found["order"] == ["teacher", *METHODS, "dummy"]
    assert found["kd"][-1] == "dummy" and "nokd" not in found["kd"]
    assert found["sorted"] == ["teacher", "nokd", "kd", "distillm", "dummy"]
