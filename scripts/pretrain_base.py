"""Snakemake script: build a base model from scratch and pretrain it on all tokens of non-secret pools.

Preemption: checkpoints go to ``params.resume_dir`` (default ``<output.dir>.resume``; ``train.
checkpoint_every_steps`` / ``_minutes`` add mid-epoch ones) and a rerun resumes; given more than one GPU
(``resources.gpu``) the job runs data-parallel through ``torchrun`` (``kdprivacy.train.distributed``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - injected by Snakemake

from kdprivacy import runtime  # noqa: E402
from kdprivacy.train import jobs, runs  # noqa: E402

job = runtime.Job(snakemake)  # noqa: F821


def train(run, resume):
    return jobs.pretrain_from_cfg(
        run, job.input.manifest, job.input.tokenizer, job.log, resume=resume  # noqa: F821
    )


if __name__ == "__main__":
    jobs.run_job(snakemake, __file__, job.log, runs.PretrainRun, train)  # noqa: F821
