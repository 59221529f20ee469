"""Model refs, from config to loader: every rule's params load through the real loader.

The paper configs and users' own configs name hub models or local Hugging Face directories
(``name_or_path``). Here every such name is replaced by a tiny local stand-in of the same architecture
(``kdprivacy.standins``), every other key is kept, the DAG is planned exactly as Snakemake plans it
(``tests/dag.py``) and each heavy job's model refs go through the loader its script calls.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from dag import plan_jobs as plan

from kdprivacy import config, models, standins
from kdprivacy.train import jobs as train_jobs

REPO = Path(__file__).resolve().parents[1]
PAPER_CONFIGS = sorted((REPO / "configs").glob("paper-*.yaml"))
# The rules whose script loads a model ref from params.cfg, and the keys that hold refs.
REF_RULES = {"train_teacher", "train_student", "train_init", "generate_teacher", "score_reference"}
REF_KEYS = ("base", "teacher", "model")
# Rules whose script loads the trained model directory given as input.model.
DIR_RULES = {"score_model", "mope", "memorization", "utility", "per_block"}


def standin_arch(name: str) -> str:
    """The stand-in architecture for a hub name (StableLM, a LLaMA-like decoder, gets the llama one)."""
    low = name.lower()
    return "gpt2" if "gpt2" in low else "opt" if "opt-" in low else "llama"


def test_model_ref_has_exactly_the_loader_keys():
    base = config.Base(name_or_path="org/model", revision="abc", n_params=1.5e9, dtype="bfloat16")
    ref = base.ref("unused")
    assert tuple(ref) == config.MODEL_REF_KEYS == models.MODEL_REF_KEYS
    assert ref == {"name_or_path": "org/model", "revision": "abc", "dtype": "bfloat16",
                   "trust_remote_code": False, "quantization": None}
    scratch = config.Base(from_scratch={"arch": "gpt2", "n_layer": 1, "d_model": 8, "n_head": 2})
    assert scratch.ref("results/f/base/b")["name_or_path"] == "results/f/base/b"
    ext = config.ExternalReference(name_or_path="org/ref", revision="r1")
    assert ext.ref()["revision"] == "r1" and tuple(ext.ref()) == config.MODEL_REF_KEYS
    with pytest.raises(ValueError, match="unknown keys.*n_params"):
        models.load_base({**ref, "n_params": 1.0})


def paper_with_standins(path: Path, tmp: Path) -> tuple[Path, dict[str, Path]]:
    """``path`` with every hub model name replaced by a local stand-in of its architecture."""
    raw = yaml.safe_load(path.read_text())
    names = [b["name_or_path"] for fam in raw["families"].values() for b in fam["bases"].values()]
    ext = raw["attacks"].get("external_reference") or {}
    names += [ext["name_or_path"]] if ext.get("name_or_path") else []
    tokenizers, dirs = {}, {}
    for i, name in enumerate(dict.fromkeys(names)):
        arch = standin_arch(name)
        group = "reference" if name == ext.get("name_or_path") else arch
        if group not in tokenizers:
            tokenizers[group] = standins.build_tokenizer(arch, 300 if group == "reference" else 320)
        dirs[name] = standins.write_standin(tmp / "hub" / name.replace("/", "--"), arch, 1, 16, 2,
                                            tokenizers[group], seed=i)
    for fam in raw["families"].values():
        for base in fam["bases"].values():
            base["name_or_path"] = str(dirs[base["name_or_path"]])
    if ext.get("name_or_path"):
        ext["name_or_path"] = str(dirs[ext["name_or_path"]])
    out = tmp / path.name
    out.write_text(yaml.safe_dump(raw, sort_keys=False))
    return out, dirs


def check_jobs_load(jobs: list[dict], workdir: Path, standin_of_family) -> dict[str, int]:
    """Load every model ref of every ref rule, and every model directory of every dir rule, as its script
    does; refs into results/ (a teacher, an init student) get a stand-in of their family written there."""
    loaded: dict[str, object] = {}
    counts: dict[str, int] = {}

    def ensure(path: str, family: str) -> None:
        target = workdir / path
        if not target.exists():
            shutil.copytree(standin_of_family(family), target)

    for job in jobs:
        rule, cfg = job["rule"], job["params"].get("cfg") or {}
        family = job["wildcards"].get("family")
        if rule in REF_RULES:
            for key in REF_KEYS:
                ref = cfg.get(key)
                if ref is None:
                    continue
                assert tuple(ref) == config.MODEL_REF_KEYS, (rule, key, ref)
                if ref["name_or_path"].startswith("results/"):
                    ensure(ref["name_or_path"], family)
                    ref = {**ref, "name_or_path": str(workdir / ref["name_or_path"])}
                trained = rule.startswith("train_") and key == "base"
                memo = json.dumps([ref, cfg.get("lora") if trained else None], sort_keys=True)
                if memo not in loaded:
                    if trained:  # what train.jobs.train_*_from_cfg calls
                        lora = config.Lora.model_validate(cfg["lora"]) if cfg.get("lora") else None
                        loaded[memo] = train_jobs.load_trainable(ref, lora, 0, f"{rule} {key}")
                    else:  # the frozen teacher (KD, generation) and scored references
                        loaded[memo] = models.load_base(ref)
            counts[rule] = counts.get(rule, 0) + 1
        elif rule in DIR_RULES:
            path = job["input"]["model"]
            ensure(path, family)
            if path not in loaded:
                loaded[path] = (models.load_model(str(workdir / path)), models.load_tokenizer(str(workdir / path)))
            counts[rule] = counts.get(rule, 0) + 1
    return counts


@pytest.mark.parametrize("paper", PAPER_CONFIGS, ids=[p.stem for p in PAPER_CONFIGS])
def test_paper_config_jobs_load_their_models(paper, tmp_path):
    """Every heavy job of a paper config, with its real params, loads on a stand-in with the same keys."""
    configfile, dirs = paper_with_standins(paper, tmp_path)
    cfg = config.load_yaml(str(configfile))
    workdir = tmp_path / "work"
    workdir.mkdir()
    jobs = plan(configfile, workdir)
    by_family = {f: Path(fam.bases[fam.teacher.base].name_or_path) for f, fam in cfg.families.items()}
    counts = check_jobs_load(jobs, workdir, by_family.__getitem__)
    n_students = sum(len(f.all_students()) for f in cfg.families.values())
    assert counts["train_student"] == n_students * len(cfg.seeds)
    assert counts["train_teacher"] == len(cfg.families) * len(cfg.seeds)
    assert counts["score_reference"] == 2 * len(cfg.families)
    assert counts["score_model"] == (n_students + len(cfg.families)) * len(cfg.seeds)
    assert counts.get("generate_teacher", 0) >= 1
    quantized = [f for f, fam in cfg.families.items() if fam.teacher.quantization]
    for job in jobs:  # the frozen teacher keeps its quantization; trained models never get one
        if job["rule"] in ("train_student", "generate_teacher") and job["params"]["cfg"].get("teacher"):
            want = cfg.families[job["wildcards"]["family"]].teacher.quantization
            assert job["params"]["cfg"]["teacher"]["quantization"] == want
        if job["rule"] in ("train_teacher", "train_student", "train_init"):
            assert job["params"]["cfg"]["base"]["quantization"] is None
    assert set(quantized) <= set(cfg.families)


def test_smoke_hf_jobs_load_their_models(tmp_path, monkeypatch):
    """configs/smoke-hf.yaml's stand-ins are what its rules load (relative ./hf paths, from the workdir)."""
    written = standins.write_smoke_hf(tmp_path / "hf")
    jobs = plan(REPO / "configs" / "smoke-hf.yaml", tmp_path)
    monkeypatch.chdir(tmp_path)  # jobs run in the working directory
    counts = check_jobs_load(jobs, tmp_path, lambda family: written[f"{family}-teacher"])
    assert set(counts) == REF_RULES | DIR_RULES
    refs = [job["params"]["cfg"][k] for job in jobs if job["rule"] in REF_RULES
            for k in REF_KEYS if job["params"]["cfg"].get(k)]
    assert {r["revision"] for r in refs if r["name_or_path"].startswith("./hf/")} == {"main"}


def test_standin_tokenizers_keep_their_family_habits(tmp_path):
    from kdprivacy import encoding

    written = standins.write_smoke_hf(tmp_path, ["gpt2-small", "opt-small", "llama-small", "reference"])
    toks = {name: models.load_tokenizer(str(path)) for name, path in written.items()}
    assert encoding.special_prefix(toks["gpt2-small"]) == ()
    assert encoding.special_prefix(toks["opt-small"]) == (toks["opt-small"].eos_token_id,)  # </s> = BOS = EOS
    assert encoding.special_prefix(toks["llama-small"]) == (toks["llama-small"].bos_token_id,)
    assert toks["llama-small"].bos_token_id != toks["llama-small"].eos_token_id
    # pad: GPT-2 and LLaMA have none (the loader sets pad = eos); OPT has its own
    assert toks["gpt2-small"].pad_token_id == toks["gpt2-small"].eos_token_id
    assert toks["opt-small"].pad_token_id not in (toks["opt-small"].eos_token_id, None)
    assert not models.same_vocabulary(toks["gpt2-small"], toks["reference"])
    item = encoding.encode_example(toks["llama-small"], "x", "### Instruction:\nSay hi.\n\n### Response:\n",
                                   "Hi there.", 64, 8)
    assert item.prompt_ids[0] == toks["llama-small"].bos_token_id and len(item.prompt_ids) == 8
    assert item.response_ids[-1] == toks["llama-small"].eos_token_id
    assert toks["llama-small"].decode(item.response_ids[:-1]).strip() == "Hi there."
