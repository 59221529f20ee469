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

