"""Snakemake script: fine-tune the teacher on the private pool (the members); dev pool for dev loss.

``params.cfg``: ``base`` (model ref), ``train`` (incl. ``checkpoint_every_steps`` / ``_minutes``), ``lora``
(optional LoRA block; the output is the merged model plus ``adapter/``), ``seed``, ``max_length``,
``max_prompt_length``. Preemption: checkpoints go to ``params.resume_dir`` (default ``<output.dir>.resume``)
and a rerun resumes from them; the directory is removed once the output is in place. Given more than one
GPU (``resources.gpu``), the job runs data-parallel through ``torchrun`` (``kdprivacy.train.distributed``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - injected by Snakemake

from kdprivacy import runtime  # noqa: E402
from kdprivacy.train import jobs, runs  # noqa: E402

job = runtime.Job(snakemake)  # noqa: F821


def train(run, resume):
    # The base is always loaded from cfg["base"]; a local base dir is also a named input so the DAG orders it.
    return jobs.train_teacher_from_cfg(run, job.input.manifest, job.log, resume=resume)  # noqa: F821


if __name__ == "__main__":
    jobs.run_job(snakemake, __file__, job.log, runs.TeacherRun, train)  # noqa: F821
