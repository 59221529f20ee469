"""Snakemake script: a student (nokd, kd, seqkd, imitkd, gkd, minillm, distillm) trained on the public pool
only (asserted); dev pool for dev loss. Writes the model, ``train_log.csv`` (per-epoch history including the
method's mechanism columns) and ``provenance.json``.

Inputs: ``manifest``, ``base`` (local base dir, for DAG order), ``teacher`` (teacher dir; methods that query
the teacher), ``generations`` (optional; the SeqKD teacher-generation parquet, seqkd only).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - injected by Snakemake
from kdprivacy import runtime

log = runtime.start(snakemake)  # noqa: F821

from kdprivacy import io, provenance, training  # noqa: E402


def optional_input(name):
    """A named input that may be absent, an empty list (input function returned nothing) or one path."""
    value = getattr(snakemake.input, name, None)  # noqa: F821
    if value is None or isinstance(value, str):
        return value or None
    paths = list(value)
    if len(paths) > 1:
        raise ValueError(f"input {name!r} must be one path, got {paths}")
    return paths[0] if paths else None


cfg = snakemake.params.cfg  # noqa: F821
code = snakemake.params.code  # noqa: F821
runtime.seed_everything(cfg["seed"])
# Base and teacher are loaded from cfg; local dirs are also named inputs so the DAG orders them.
model, tokenizer, history = training.train_student_from_cfg(
    cfg, snakemake.input.manifest, log, teacher_generations_path=optional_input("generations")  # noqa: F821
)
with io.atomic_dir(snakemake.output.dir) as tmp:  # noqa: F821
    training.save_trained(tmp, model, tokenizer, history)
    provenance.write(
        tmp / "provenance.json",
        params={"cfg": cfg, "code": code},
        inputs=dict(snakemake.input.items()),  # noqa: F821
        rule=snakemake.rule,  # noqa: F821
    )
