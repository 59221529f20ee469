"""Teacher -> student inheritance of memorization, and membership vs memorization per sample.

Contract -- inputs: ``teacher`` and ``student`` (per-example memorization parquets of
``scripts/memorization.py``, same evaluation set), ``student_attacks`` (per-example attack parquet of
``scripts/attack_metrics.py``: ``id, label, category, attack, score``), optional ``teacher_attacks`` (same,
for the teacher); outputs: ``inheritance`` (csv, :data:`kdprivacy.memorization.inheritance.INHERITANCE_COLUMNS`),
``correlation`` (csv, ``model`` + :data:`kdprivacy.memorization.inheritance.CORRELATION_COLUMNS`; ``model``
is ``student`` or ``teacher``). cfg: ``thresholds`` (``memorization.inheritance_thresholds``),
``n_bootstrap``, ``bootstrap_seed``; the metrics are the library's defaults.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - injected by Snakemake

from kdprivacy import runtime  # noqa: E402

log = runtime.start(snakemake)  # noqa: F821

import pandas as pd  # noqa: E402

from kdprivacy import io, provenance  # noqa: E402
from kdprivacy.memorization import inheritance  # noqa: E402

cfg = snakemake.params.cfg  # noqa: F821
inp, out = snakemake.input, snakemake.output  # noqa: F821

teacher = pd.read_parquet(inp.teacher)
student = pd.read_parquet(inp.student)
table = inheritance.inheritance_table(
    teacher, student, thresholds=cfg["thresholds"], n_bootstrap=cfg["n_bootstrap"], seed=cfg["bootstrap_seed"]
)
log.info("inheritance:\n%s", table.to_string(index=False))

pairs = [("student", inp.student_attacks, student)]
if "teacher_attacks" in inp.keys():
    pairs.append(("teacher", inp.teacher_attacks, teacher))
frames = []
for model, attacks_path, per_example in pairs:
    attack_scores = pd.read_parquet(attacks_path, columns=["id", "attack", "score"])
    corr = inheritance.membership_memorization_correlation(attack_scores, per_example)
    corr.insert(0, "model", model)
    frames.append(corr)
correlation = pd.concat(frames, ignore_index=True)
log.info("membership vs memorization:\n%s", correlation.to_string(index=False))
io.write_csv(table, out.inheritance)
io.write_csv(correlation, out.correlation)
provenance.write(
    f"{out.inheritance}.provenance.json",
    params={"cfg": cfg, "code": snakemake.params.code},  # noqa: F821
    inputs={name: path for name, path in inp.items()},
    rule=snakemake.rule,  # noqa: F821
)
