"""``protocol: paper``: the authors' values where the user set nothing; ours stays the default."""

import copy
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from kdprivacy.config import ConfigError, validate_config
from kdprivacy.config import protocol as proto
from kdprivacy.reporting import paper

REPO = Path(__file__).resolve().parents[1]


def demo() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())


def _jsd_demo() -> dict:
    raw = demo()
    students = raw["families"]["gpt2"]["students"]
    name = next(n for n, s in students.items() if s["method"] == "kd")
    students[name]["kd"] = {"objective": "jsd"}
    return raw, name


def test_ours_is_the_default_and_changes_nothing():
    raw, name = _jsd_demo()
    cfg = validate_config(raw)
    assert cfg.protocol == "ours"
    assert cfg.families["gpt2"].students[name].kd.beta is None
    assert validate_config({**copy.deepcopy(raw), "protocol": "ours"}) == cfg


def test_paper_sets_unset_knobs_and_keeps_the_users():
    raw, name = _jsd_demo()
    raw["protocol"] = "paper"
    cfg = validate_config(raw)
    assert cfg.families["gpt2"].students[name].kd.beta == 0.1
    # a student whose kd objective is not JSD does not get a beta (the row's `when`)
    others = [s for n, s in cfg.families["gpt2"].students.items() if n != name]
    assert others and all(s.kd.beta is None for s in others)
    # an explicit setting wins over the protocol
    raw["families"]["gpt2"]["students"][name]["kd"]["beta"] = 0.3
    assert validate_config(raw).families["gpt2"].students[name].kd.beta == 0.3


def test_unknown_protocol_is_named():
    raw = demo()
    raw["protocol"] = "authors"
    with pytest.raises(ConfigError, match="protocol"):
        validate_config(raw)


def test_every_deviation_path_resolves_on_the_shipped_configs():
    # a typo in a row's path must fail here, not silently reach nothing
    for path in [REPO / "config.yaml", *sorted((REPO / "configs").glob("*.yaml"))]:
        cfg = validate_config(yaml.safe_load(path.read_text()))
        for row in proto.DEVIATIONS:
            proto.paper_overrides(cfg, [row])
    cfg = validate_config(demo())
    bad = proto.Deviation("families.*.students.*.kd.betta", 0.1, "", "")
    with pytest.raises(ValueError, match="kd.betta"):
        proto.paper_overrides(cfg, [bad])


def test_paper_value_passes_the_same_checks(monkeypatch):
    # a paper value that a knob refuses is refused like a user's, naming the key
    raw, name = _jsd_demo()
    raw["protocol"] = "paper"
    bad = [proto.Deviation("families.*.students.*.kd.temperature", -1.0, "", "", when={"objective": "jsd"})]
    monkeypatch.setattr(proto, "DEVIATIONS", bad)
    with pytest.raises(ConfigError, match=re.escape(f"families.gpt2.students.{name}.kd.temperature")):
        validate_config(raw)


def test_readme_lists_every_deviation():
    text = (REPO / "README.md").read_text()
    section = text.split("## Protocols", 1)[1].split("\n## ", 1)[0]
    assert proto.markdown_table() in section, "README 'Protocols': run python -m kdprivacy.config protocols"
    for row in proto.deviation_table():
        assert row["path"] in section


def test_comparison_names_the_protocol():
    from test_paper import KD, MAPPING, mia_rows

    mia = mia_rows([(KD, "loss", 0.63, 0.02)])
    for name in ("ours", "paper"):
        out = paper.compare(MAPPING, mia, protocol=name)
        assert len(out) == 1 and (out["protocol"] == name).all()


def test_paper_protocol_on_the_demo_sets_seqkd_loss_and_the_stemmer():
    raw = demo()
    raw["protocol"] = "paper"
    cfg = validate_config(raw)
    seqkd = [s for s in cfg.families["gpt2"].students.values() if s.method == "seqkd"]
    assert seqkd and all(s.seqkd.loss == "kd" and s.uses_teacher for s in seqkd)
    others = [s for s in cfg.families["gpt2"].students.values() if s.method != "seqkd"]
    assert all("seqkd" not in s.model_fields_set for s in others)  # no stray method block
    assert cfg.utility.rouge_stemmer is True
    assert validate_config(demo()).utility.rouge_stemmer is False


def test_paper_protocol_sets_the_evaluation_knobs():
    """Every evaluation row reaches its knob on the demo config; ours keeps the default."""
    raw = demo()
    raw["protocol"] = "paper"
    paper_cfg, ours_cfg = validate_config(raw), validate_config(demo())
    for row in proto.EVALUATION_DEVIATIONS:
        node_p, node_o = paper_cfg, ours_cfg
        for key in row.path.split("."):
            node_p, node_o = getattr(node_p, key), getattr(node_o, key)
        assert node_p == row.paper, row.path
        assert node_o != row.paper, row.path


def test_paper_protocol_sets_minillm_discount_and_gkd_loss_temperature():
    raw = demo()
    raw["protocol"] = "paper"
    paper_students = validate_config(raw).families["gpt2"].students.values()
    ours_students = validate_config(demo()).families["gpt2"].students.values()
    for students, gamma, in_loss in ((paper_students, 0.95, False), (ours_students, 1.0, True)):
        by_method = {s.method: s for s in students}
        assert by_method["minillm"].minillm.gamma == gamma
        assert by_method["gkd"].gkd.temperature_in_loss is in_loss
    # a user's own value wins under the paper protocol
    raw = demo()
    raw["protocol"] = "paper"
    name = next(n for n, s in raw["families"]["gpt2"]["students"].items() if s["method"] == "minillm")
    raw["families"]["gpt2"]["students"][name]["minillm"] = {"gamma": 0.5}
    assert validate_config(raw).families["gpt2"].students[name].minillm.gamma == 0.5


def test_paper_pretraining_loss_needs_a_pretrain_pool():
    """protocol: paper turns on the pretraining LM loss (imitkd, distillm, minillm); a split whose halves take
    every remaining example leaves no pretrain pool: a planning error naming the students, not a failed job."""
    raw = demo()
    raw["protocol"] = "paper"
    students = validate_config(raw).families["gpt2"].students.values()
    assert {s.method: s.params.pretrain_weight for s in students if s.method in ("imitkd", "distillm",
                                                                                  "minillm")} == {
        "imitkd": 1.0, "distillm": 1.0, "minillm": 1.0}
    assert next(s for s in students if s.method == "minillm").minillm.pretrain_kd_ratio == 0.5
    raw["data"]["split"]["public"] = None
    with pytest.raises(ConfigError, match="pretrain_weight > 0 reads the pretrain pool"):
        validate_config(raw)
    raw["protocol"] = "ours"
    validate_config(raw)  # no pretraining loss: the halves are fine
