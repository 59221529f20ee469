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

from kdprivacy import runtime  # noqa: E402
from kdprivacy.kd import generations  # noqa: E402

generations.teacher_generations_job(runtime.Job(snakemake))  # noqa: F821
