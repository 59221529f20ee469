"""Issue #15, item 1: the No-KD student is never its own reference (ref_nokd, RMIA).

Planned through Snakemake's API (no job runs): with one seed the No-KD student's attack_metrics job reads
no ref_nokd table (the cell is NA, ``untestable`` in its cfg); with two seeds it reads the other seed's
No-KD student. Every other model keeps the same-seed No-KD student.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from dag import plan_jobs


REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "configs" / "smoke.yaml"


def attack_jobs(jobs):
    return {(j["wildcards"]["seed"], j["wildcards"]["model"]): j for j in jobs if j["rule"] == "attack_metrics"}


def own_tables(seed, model):
    scores = f"results/gpt2/seed{seed}/scores/{model}"
    return {f"{scores}.parquet", f"{scores}.population.parquet"}


def check_never_self(jobs):
    for (seed, model), job in jobs.items():
        refs = {v for k, v in job["input"].items() if k.startswith(("ref_", "population_"))}
        assert not refs & own_tables(seed, model), (seed, model, refs)


def test_one_seed_nokd_reference_is_na(tmp_path):
    from kdprivacy.mia.attacks import NO_NOKD_REFERENCE

    jobs = attack_jobs(plan_jobs(SMOKE, tmp_path))
    check_never_self(jobs)
    nokd = jobs[("0", "nokd-small")]
    assert "ref_nokd" not in nokd["input"] and "population_nokd" not in nokd["input"]
    assert nokd["params"]["cfg"]["untestable"] == {"nokd": NO_NOKD_REFERENCE}
    assert "ref_external" in nokd["input"] and "ref_pretrained" in nokd["input"]  # RMIA keeps these
    kd = jobs[("0", "kd-small")]
    assert kd["input"]["ref_nokd"] == "results/gpt2/seed0/scores/nokd-small.parquet"
    assert kd["params"]["cfg"].get("untestable") == {}


def test_two_seeds_nokd_reference_is_the_other_seed(tmp_path):
    raw = yaml.safe_load(SMOKE.read_text())
    raw["seeds"] = [0, 1]
    configfile = tmp_path / "two-seeds.yaml"
    configfile.write_text(yaml.safe_dump(raw, sort_keys=False))
    jobs = attack_jobs(plan_jobs(configfile, tmp_path))
    check_never_self(jobs)
    for seed, other in (("0", "1"), ("1", "0")):
        nokd = jobs[(seed, "nokd-small")]
        assert nokd["input"]["ref_nokd"] == f"results/gpt2/seed{other}/scores/nokd-small.parquet"
        assert nokd["input"]["population_nokd"] == f"results/gpt2/seed{other}/scores/nokd-small.population.parquet"
        assert nokd["params"]["cfg"].get("untestable") == {}
        for model in ("teacher", "kd-small"):
            assert jobs[(seed, model)]["input"]["ref_nokd"] == f"results/gpt2/seed{seed}/scores/nokd-small.parquet"
