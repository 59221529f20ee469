"""Snakemake script: SeqKD data. The teacher answers every **public** prompt (asserted); nothing private
or non-member is ever prompted.

Inputs: ``manifest``, ``teacher`` (teacher dir, for DAG order; the model is loaded from ``cfg["teacher"]``).
Output: ``generations`` (parquet: ``id, prompt_ids, response_ids, response_text``), and
``{generations}.provenance.json`` next to it (cfg, code, a summary of the generations, input hashes).
cfg: ``teacher`` (model ref), ``generation`` (max_new_tokens, do_sample, temperature, top_p, top_k,
batch_size), ``seed``, ``max_length``, ``max_prompt_length``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - injected by Snakemake
from kdprivacy import runtime

log = runtime.start(snakemake)  # noqa: F821

from kdprivacy import io, provenance  # noqa: E402
from kdprivacy.kd import generations  # noqa: E402
from kdprivacy.train.runs import TeacherGenerationRun  # noqa: E402

cfg = snakemake.params.cfg  # noqa: F821
code = snakemake.params.code  # noqa: F821
run = TeacherGenerationRun.model_validate(cfg)
runtime.seed_everything(run.seed)
frame, summary = generations.generate_teacher(run, snakemake.input.manifest, log)  # noqa: F821
out = Path(snakemake.output.generations)  # noqa: F821
io.write_parquet(frame, out)
provenance.write(
    out.with_name(out.name + ".provenance.json"),
    params={"cfg": cfg, "code": code, "summary": summary},
    inputs=dict(snakemake.input.items()),  # noqa: F821
    rule=snakemake.rule,  # noqa: F821
)
log.info("wrote %d teacher generations to %s (%s)", len(frame), out, summary)
