"""Shadow pipelines end to end (attacks.shadows): configs/smoke.yaml cut to the teacher, No-KD, KD and SeqKD
students, with 4 shadow teacher-to-student pipelines for the teacher, KD and SeqKD; LiRA (online, offline)
and RMIA-shadow next to the other attacks; adding shadows trains only the new ones, never a target model.
The same on name_or_path models (configs/smoke-hf.yaml's Hugging Face directories: a LoRA LLaMA teacher and
an OPT teacher frozen in 8 bit for KD and SeqKD).

Marked ``workflow`` (a few minutes on 2 cores)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from test_workflow import REPO, SMOKE, planned_jobs, smk

from kdprivacy import standins
from kdprivacy.mia import shadows

pytestmark = pytest.mark.workflow

SHADOWED = ("teacher", "kd-small", "seqkd-small")
SHADOW_ATTACKS = ("lira", "lira_offline", "rmia_shadow")


def shadow_config(tmp_path: Path, n: int) -> Path:
    raw = yaml.safe_load(SMOKE.read_text())
    family = raw["families"]["gpt2"]
    family["students"] = {k: v for k, v in family["students"].items() if k in ("nokd-small", *SHADOWED)}
    family.pop("ablations")
    raw["attacks"]["names"] = ["loss", "ref_pretrained", "ref_nokd", "rmia", *SHADOW_ATTACKS]
    raw["attacks"]["shadows"] = {"n": n, "models": list(SHADOWED)}
    raw["utility"] = {"enabled": False}
    raw["blocks"] = {"enabled": False}
    path = tmp_path / f"shadows{n}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


TARGETS = ("results/tables/mia.csv", "results/tables/mia_shadow_curve.csv", "results/figures/mia_shadow_curve.png")


@pytest.fixture(scope="module")
def shadow_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("shadows")
    smk(workdir, *TARGETS, configfile=shadow_config(workdir, 4))
    return workdir


def test_shadow_attacks_next_to_every_attack(shadow_run):
    mia = pd.read_csv(shadow_run / "results" / "tables" / "mia.csv").set_index(["model", "attack"])
    tested = mia["note"].fillna("") == ""
    for model in SHADOWED:
        for attack in SHADOW_ATTACKS:
            assert tested[(model, attack)] and 0 <= mia.loc[(model, attack), "auc"] <= 1, (model, attack)
    # the No-KD student has no shadows: its shadow attacks are NA with the reason
    for attack in SHADOW_ATTACKS:
        assert np.isnan(mia.loc[("nokd-small", attack), "auc"])
        assert "no shadow pipelines" in mia.loc[("nokd-small", attack), "note"]
    # calibrated against shadows, the teacher's membership shows (smoke: loss AUC ~0.6, these ~0.77-0.82)
    for attack in ("lira_offline", "rmia_shadow"):
        assert mia.loc[("teacher", attack), "auc_ci_low"] > 0.5, attack
    curve = pd.read_csv(shadow_run / "results" / "tables" / "mia_shadow_curve.csv")
    assert sorted(curve["model"]) == sorted(SHADOWED) and (curve["n_shadows"] == 4).all()
    lira = mia.xs("lira", level="attack")["auc"]
    assert np.allclose(curve.set_index("model")["auc"].sort_index(), lira[list(SHADOWED)].sort_index())
    assert (shadow_run / "results" / "figures" / "mia_shadow_curve.png").stat().st_size > 10_000


def test_assignment_and_shadow_manifests(shadow_run):
    results = shadow_run / "results"
    manifest = pd.read_parquet(results / "data" / "manifest.parquet")
    candidates = manifest[manifest["pool"].isin(["private", "nonmember"])]
    table = pd.read_parquet(results / "shadows" / "assignment.parquet")
    keep = shadows.keep_from_table(table, candidates["id"].tolist())
    assert keep.shape == (len(candidates), 4)
    shadows.check_balance(keep)  # every shadow holds half, every candidate IN for 2 of the 4
    others = manifest[~manifest["pool"].isin(["private", "nonmember"])].reset_index(drop=True)
    for j in range(4):
        own = pd.read_parquet(results / "shadows" / f"shadow{j}" / "manifest.parquet")
        assert own["id"].tolist() == manifest["id"].tolist()
        assert set(own.loc[own["pool"] == "private", "id"]) == set(candidates["id"][keep[:, j]])
        rest = own[~own["id"].isin(candidates["id"])].reset_index(drop=True)
        pd.testing.assert_frame_equal(rest, others)  # public, dev, pretrain: as the target's


def test_shadow_models_follow_the_target_recipe(shadow_run):
    import json

    gpt2 = shadow_run / "results" / "gpt2"
    target = json.loads((gpt2 / "seed0" / "models" / "kd-small" / "provenance.json").read_text())["params"]["cfg"]
    for j in range(4):
        prov = json.loads((gpt2 / f"shadow{j}" / "models" / "kd-small" / "provenance.json").read_text())
        cfg = prov["params"]["cfg"]
        assert cfg["seed"] == 1000 + j
        assert cfg["teacher"]["name_or_path"] == f"results/gpt2/shadow{j}/models/teacher"
        assert prov["inputs"]["manifest"]["path"] == f"results/shadows/shadow{j}/manifest.parquet"
        same = {k: v for k, v in cfg.items() if k not in ("seed", "teacher")}
        assert same == {k: v for k, v in target.items() if k not in ("seed", "teacher")}


def test_more_shadows_train_only_the_new_ones(shadow_run):
    plan = planned_jobs(smk(shadow_run, "-n", *TARGETS, configfile=shadow_config(shadow_run, 6)))
    assert plan.get("train_shadow_teacher") == 2 and plan.get("shadow_manifest") == 2
    assert plan.get("train_shadow_student") == 4  # kd and seqkd of shadows 4 and 5
    assert not {"train_teacher", "train_student", "pretrain_base", "score_model"} & set(plan), plan


def test_shadow_pipelines_on_hugging_face_directories(tmp_path):
    raw = yaml.safe_load((REPO / "configs" / "smoke-hf.yaml").read_text())
    raw["families"] = {f: raw["families"][f] for f in ("llama", "opt")}
    for family in raw["families"].values():
        family["students"] = {k: v for k, v in family["students"].items() if k in ("nokd-small", "kd-small",
                                                                                   "seqkd-small")}
        family.pop("ablations", None)
    raw["attacks"]["names"] = ["loss", "ref_pretrained", "rmia", *SHADOW_ATTACKS]
    raw["attacks"]["shadows"] = {"n": 4, "models": ["teacher", "kd-small", "seqkd-small"]}
    raw["utility"] = {"enabled": False}
    raw["blocks"] = {"enabled": False}
    config = tmp_path / "shadows-hf.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    standins.write_smoke_hf(tmp_path / "hf")
    smk(tmp_path, "results/tables/mia.csv", configfile=config)
    mia = pd.read_csv(tmp_path / "results" / "tables" / "mia.csv").set_index(["family", "model", "attack"])
    tested = mia["note"].fillna("") == ""
    for family in ("llama", "opt"):
        for model in ("teacher", "kd-small", "seqkd-small"):
            for attack in SHADOW_ATTACKS:
                key = (family, model, attack)
                assert tested[key] and 0 <= mia.loc[key, "auc"] <= 1, key
        # the shadow teacher is trained as the target's: LoRA merged for llama; KD reads it in 8 bit for opt
        import json

        prov = json.loads((tmp_path / "results" / family / "shadow1" / "models" / "kd-small" /
                           "provenance.json").read_text())["params"]["cfg"]
        assert prov["teacher"]["name_or_path"] == f"results/{family}/shadow1/models/teacher"
        assert prov["teacher"].get("quantization") == raw["families"][family]["teacher"].get("quantization")
    assert (tmp_path / "results" / "llama" / "shadow0" / "models" / "teacher" / "adapter").is_dir()
