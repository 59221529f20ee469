"""Config validation: every shipped config is valid; bad ones fail naming the key."""

import copy
import json
from pathlib import Path

import pytest
import yaml

from kdprivacy.config import ConfigError, json_schema, load_yaml, validate_config

REPO = Path(__file__).resolve().parents[1]
SHIPPED = [REPO / "config.yaml", *sorted((REPO / "configs").glob("*.yaml"))]


def demo() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_configs_are_valid(path):
    cfg = load_yaml(str(path))
    assert cfg.families


def test_schema_file_in_sync():
    on_disk = json.loads((REPO / "schemas" / "config.schema.json").read_text())
    assert on_disk == json.loads(json.dumps(json_schema())), "run: python -m kdprivacy.config > schemas/config.schema.json"


def _error(raw) -> str:
    with pytest.raises(ConfigError) as err:
        validate_config(raw)
    return str(err.value)


def test_unknown_key_is_named():
    raw = demo()
    raw["families"]["gpt2"]["students"]["kd-small"]["train"]["lrr"] = 1e-3
    assert "families.gpt2.students.kd-small.train.lrr" in _error(raw)


def test_wrong_type_is_named():
    raw = demo()
    raw["families"]["gpt2"]["teacher"]["train"]["epochs"] = "many"
    assert "families.gpt2.teacher.train.epochs" in _error(raw)


def test_impossible_split_is_named():
    raw = demo()
    raw["data"]["split"]["nonmember"] = 10_000
    msg = _error(raw)
    assert msg.splitlines()[1].strip().startswith("data:")
    assert "exceed synthetic.n_examples" in msg and "10000" in msg


def test_unknown_base_reference():
    raw = demo()
    raw["families"]["gpt2"]["students"]["kd-small"]["base"] = "huge"
    assert "students.kd-small.base 'huge' is not one of bases" in _error(raw)


def test_mixed_tokenizers_rejected():
    raw = demo()
    raw["families"]["gpt2"]["bases"]["small"] = {"name_or_path": "gpt2"}
    assert "share a tokenizer" in _error(raw)


@pytest.mark.parametrize(
    "path, value, needle",
    [
        (("data", "max_prompt_length"), 500, "max_prompt_length (500) must be smaller"),
        (("data", "source"), "hub", "hub.name is not set"),
        (("seeds",), [1, 1], "seeds must be distinct"),
        (("seeds",), [], "seeds"),
        (("attacks", "fprs"), [1.5], "attacks.fprs.0"),
        (("attacks", "names"), ["telepathy"], "attacks.names.0"),
    ],
)
def test_impossible_values(path, value, needle):
    raw = demo()
    node = raw
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert needle in _error(raw)


def test_defaults_filled():
    raw = copy.deepcopy(demo())
    del raw["attacks"]
    cfg = validate_config(raw)
    assert cfg.attacks.min_k == 0.2 and cfg.families["gpt2"].students["kd-small"].kd.objective == "fkl"


def test_teacher_cache_only_for_offline_kd():
    raw = demo()
    students = raw["families"]["gpt2"]["students"]
    students["kd-small"]["kd"]["teacher_top_k"] = 64
    assert validate_config(copy.deepcopy(raw)).families["gpt2"].students["kd-small"].kd.teacher_top_k == 64
    students["imitkd-small"]["kd"] = {"teacher_top_k": 64}
    msg = _error(raw)
    assert "imitkd-small" in msg and "teacher_top_k" in msg and "method kd only" in msg
    del students["imitkd-small"]["kd"]
    students["kd-small"]["kd"]["teacher_top_k"] = 0
    assert "families.gpt2.students.kd-small.kd.teacher_top_k" in _error(raw)


# ---------------------------------------------------------------- names (#13)
def _with_ablations(objective=None, sgo=None) -> dict:
    raw = demo()
    abl = {}
    if objective is not None:
        abl["objective"] = {"student": "kd-small", "values": objective}
    if sgo is not None:
        abl["sgo_ratio"] = {"student": "imitkd-small", "values": sgo}
    raw["families"]["gpt2"]["ablations"] = abl
    return raw


@pytest.mark.parametrize("name", ["nokd-small.resume", "nokd-small.population", "kd.small", "a b", "-x"])
def test_student_names_may_not_use_our_suffixes(name):
    """'.' is reserved: <model>.resume is a checkpoint dir, <model>.population a score file, <student>.obj-*
    an ablation copy; a student named like one of them lost its data to another model."""
    raw = demo()
    raw["families"]["gpt2"]["students"][name] = {"base": "small", "method": "nokd"}
    msg = _error(raw)
    assert f"families.gpt2.students.{name}" in msg and "letters, digits, '-' and '_'" in msg
    if "." in name:
        assert "'.' is reserved" in msg


def test_family_and_base_names_may_not_use_dots():
    raw = demo()
    raw["families"]["gpt2.v2"] = raw["families"].pop("gpt2")
    assert "families.gpt2.v2" in _error(raw)
    raw = demo()
    raw["families"]["gpt2"]["bases"]["small.x"] = raw["families"]["gpt2"]["bases"]["small"]
    assert "families.gpt2.bases.small.x" in _error(raw)


def test_ablation_copy_may_not_replace_a_configured_student():
    raw = _with_ablations(objective=["rkl"])
    raw["families"]["gpt2"]["students"]["kd-small.obj-rkl"] = {"base": "small", "method": "kd"}
    msg = _error(raw)
    assert "students.kd-small.obj-rkl" in msg and "ablation copy" in msg and "ablations.objective" in msg


def test_sgo_values_that_name_the_same_copy_are_refused():
    msg = _error(_with_ablations(sgo=[0.1, 0.1000001]))
    assert "families.gpt2" in msg and "0.1 and 0.1000001" in msg and "imitkd-small.sgo-0.1" in msg
    msg = _error(_with_ablations(objective=["rkl", "jsd", "rkl"]))
    assert "ablations.objective.values" in msg and "'rkl'" in msg
    names = validate_config(_with_ablations(objective=["rkl"], sgo=[0, 0.25])).families["gpt2"].all_students()
    assert {"kd-small.obj-rkl", "imitkd-small.sgo-0", "imitkd-small.sgo-0.25"} <= set(names)  # names unchanged


# ---------------------------------------------------------------- strict types (#13)
def _set(raw: dict, path: str, value) -> dict:
    node = raw
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = value
    return raw


STUDENT = "families.gpt2.students.kd-small"


@pytest.mark.parametrize("path, value", [
    ("seeds", [0, -1]),
    ("data.split.seed", -1),
    ("data.synthetic.seed", -3),
    ("families.gpt2.pretrain.seed", -1),
    ("evaluation.sample_seed", -1),
    ("attacks.bootstrap_seed", -1),
    ("attacks.mope.seed", -1),
    ("attacks.blind.seed", 2**32),  # scikit-learn's random_state and NumPy's legacy seed stop at 2**32 - 1
    (f"{STUDENT}.train.lr", True),
    (f"{STUDENT}.train.lr", "fast"),
    (f"{STUDENT}.train.lr", "0.001"),  # a quoted number is a string
    (f"{STUDENT}.train.lr", float("inf")),
    (f"{STUDENT}.train.lr", float("nan")),
    (f"{STUDENT}.train.lr", "1e999"),  # inf
    (f"{STUDENT}.train.batch_size", "16"),
    (f"{STUDENT}.train.batch_size", 16.0),
    (f"{STUDENT}.train.batch_size", True),
    (f"{STUDENT}.train.weight_decay", float("inf")),
    (f"{STUDENT}.kd.temperature", float("nan")),
    ("attacks.blind.enabled", 1),
    ("attacks.blind.enabled", "yes"),
    ("memorization.rouge_threshold", float("nan")),
    ("resources.gpu_mem_gb", float("inf")),
])
def test_strict_types_name_the_key(path, value):
    """No coercion: true is not 1.0, "16" is not 16, inf/nan are not sizes, a negative seed is no wildcard."""
    msg = _error(_set(demo(), path, value))
    key = path + (".1" if path == "seeds" else "")
    assert f"  {key}:" in msg, msg


def test_numbers_as_yaml_writes_them():
    """An int where a float is expected is fine, and so is 1e-3: PyYAML (YAML 1.1, what Snakemake reads config
    files with) leaves exponent numbers without a dot or sign as the string '1e-3'."""
    raw = yaml.safe_load("lr: 1e-3\nn: 1.5e9\nd: 5\n")
    assert raw == {"lr": "1e-3", "n": "1.5e9", "d": 5}
    edited = _set(_set(demo(), f"{STUDENT}.train.lr", raw["lr"]), f"{STUDENT}.train.grad_clip", raw["d"])
    cfg = validate_config(edited)
    train = cfg.families["gpt2"].students["kd-small"].train
    assert train.lr == 1e-3 and train.grad_clip == 5.0 and isinstance(train.grad_clip, float)
    hf = demo()
    hf["families"]["gpt2"]["bases"] = {"teacher": {"name_or_path": "gpt2", "n_params": "1.5e9"},
                                       "small": {"name_or_path": "distilgpt2", "n_params": 8.2e7}}
    assert validate_config(hf).families["gpt2"].bases["teacher"].n_params == 1.5e9


# ---------------------------------------------------------------- local paths (#13)
def _local(raw: dict, teacher: str, small: str) -> dict:
    bases = {"teacher": {"name_or_path": teacher}, "small": {"name_or_path": small}}
    raw["families"]["gpt2"]["bases"] = bases
    return raw


def test_missing_local_paths_are_refused_at_validation(tmp_path, monkeypatch):
    """A name_or_path written as a path must exist (relative to the working directory, where Snakemake parses
    the workflow), and so must data.file.path; hub ids (org/name) are not looked up here."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models" / "teacher").mkdir(parents=True)
    raw = _local(demo(), "./models/teacher", "./models/small")
    assert validate_config(copy.deepcopy(raw)).families["gpt2"].bases["small"]  # by default: not checked
    msg = _error_paths(raw)
    assert "families.gpt2.bases.small.name_or_path" in msg and "'./models/small' does not exist" in msg
    assert str(tmp_path) in msg
    assert "bases.teacher" not in msg
    (tmp_path / "models" / "small").write_text("not a directory")
    assert "is not a directory" in _error_paths(raw)
    (tmp_path / "models" / "small").unlink()
    (tmp_path / "models" / "small").mkdir()
    validate_config(raw, check_paths=True)
    assert validate_config(_local(demo(), "org/teacher", "gpt2"), check_paths=True)  # hub ids

    attacks = copy.deepcopy(raw["attacks"])
    raw["attacks"]["names"] = ["loss", "ref_external"]
    raw["attacks"]["external_reference"] = {"name_or_path": "/no/such/reference"}
    assert "attacks.external_reference.name_or_path" in _error_paths(raw)
    raw["attacks"] = attacks

    raw["data"] = {"source": "file", "file": {"path": "data/train.jsonl"},
                   "split": {"nonmember": 2, "dev": 2}}
    msg = _error_paths(raw)
    assert "data:" in msg and "file.path 'data/train.jsonl' does not exist" in msg
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.jsonl").write_text("{}\n")
    validate_config(raw, check_paths=True)


def _error_paths(raw) -> str:
    with pytest.raises(ConfigError) as err:
        validate_config(raw, check_paths=True)
    return str(err.value)


# ---------------------------------------------------------------- the workflow validates so (#13)
def _dry_run(tmp_path, configfile, *args):
    import os
    import subprocess
    import sys

    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    snakemake = Path(sys.executable).with_name("snakemake")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    cmd = [str(snakemake), "-s", str(REPO / "Snakefile"), "-d", str(work), "--configfile", str(configfile),
           "-n", "--quiet", *args]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def test_typed_overrides():
    """What Snakemake's --config gives for resources='{gpu: 0, ...}' (YAML BaseLoader: nested strings)."""
    from kdprivacy.fields import typed_overrides, with_overrides

    raw = {"resources": {"gpu": "0", "gpu_mem_gb": "1e-3", "max_mem_mb": "8000"}, "seeds": ["0", "1"],
           "hub": {"cache": "/shared/hf", "offline": "false"}, "container": "123", "x": {"y": ["null", "#a"]}}
    assert typed_overrides(raw) == {"resources": {"gpu": 0, "gpu_mem_gb": "1e-3", "max_mem_mb": 8000},
                                    "seeds": [0, 1], "hub": {"cache": "/shared/hf", "offline": False},
                                    "container": "123", "x": {"y": [None, "#a"]}}
    config = {"resources": {"gpu": 1, "threads": 2}, "seeds": [5]}
    merged = with_overrides(config, {"resources": {"gpu": "0"}})
    assert merged == {"resources": {"gpu": 0, "threads": 2}, "seeds": [5]}


def test_workflow_refuses_bad_values_before_the_dag(tmp_path):
    """Negative seeds used to pass validation and break the DAG (MissingInputException), a missing local
    model directory too; now the plan stops at validation naming the keys. Nested --config overrides (the
    SLURM smoke's resources='{gpu: 0, ...}') still work under strict types."""
    ok = _dry_run(tmp_path, REPO / "configs" / "smoke.yaml", "--config",
                  "resources={gpu: 0, train_gpus: 1, threads: 1}", "seeds=[0, 1]")
    assert ok.returncode == 0, ok.stderr[-3000:]
    bad = _dry_run(tmp_path, REPO / "configs" / "smoke-hf.yaml", "--config", "seeds=[0, -1]")
    out = bad.stdout + bad.stderr
    assert bad.returncode != 0
    assert "seeds.1: Input should be greater than or equal to 0" in out, out[-3000:]
    key = "families.gpt2.bases.teacher.name_or_path"
    assert f"{key}: local model directory './hf/gpt2-teacher' does not exist" in out
    assert str(tmp_path / "work") in out  # relative to the working directory (-d), not the caller's cwd
    assert "MissingInput" not in out


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_snakemake_validate_takes_the_schema(path):
    """``snakemake.utils.validate`` with schemas/config.schema.json (its $schema names the draft) accepts
    every shipped config, YAML 1.1 exponent strings included, and refuses what the model refuses."""
    smk_utils = pytest.importorskip("snakemake.utils")
    schema = str(REPO / "schemas" / "config.schema.json")
    raw = yaml.safe_load(path.read_text())
    smk_utils.validate(copy.deepcopy(raw), schema, set_default=False)
    family = next(iter(raw["families"].values()))
    family.setdefault("teacher", {}).setdefault("train", {})["lr"] = "1e-3"  # a string PyYAML leaves
    smk_utils.validate(copy.deepcopy(raw), schema, set_default=False)
    for bad in ("fast", -1.0):
        family["teacher"]["train"]["lr"] = bad
        with pytest.raises(Exception, match="lr|Error validating"):
            smk_utils.validate(copy.deepcopy(raw), schema, set_default=False)
    family["teacher"]["train"]["lr"] = 1e-3
    raw["attackz"] = {}
    with pytest.raises(Exception):
        smk_utils.validate(copy.deepcopy(raw), schema, set_default=False)
