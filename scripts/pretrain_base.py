"""Snakemake script: build a base model from scratch and pretrain it on all tokens of non-secret pools.

Preemption: checkpoints go to ``params.resume_dir`` (default ``<output.dir>.resume``; ``train.
checkpoint_every_steps`` / ``_minutes`` add mid-epoch ones) and a rerun resumes; given more than one GPU
(``resources.gpu``) the job runs data-parallel through ``torchrun`` (``kdprivacy.training``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - injected by Snakemake
from kdprivacy import runtime

log = runtime.start(snakemake)  # noqa: F821

from kdprivacy import checkpoint, io, provenance, training  # noqa: E402


def main():
    cfg = snakemake.params.cfg  # noqa: F821
    code = snakemake.params.code  # noqa: F821
    runtime.set_threads(training.worker_threads(snakemake.threads))  # noqa: F821
    runtime.seed_everything(cfg["seed"])
    resume_dir = getattr(snakemake.params, "resume_dir", None) or checkpoint.resume_dir_for(snakemake.output.dir)  # noqa: F821
    resume = checkpoint.Resume(resume_dir, checkpoint.fingerprint(cfg, code))
    model, tokenizer, history = training.pretrain_from_cfg(
        cfg, snakemake.input.manifest, snakemake.input.tokenizer, log, resume=resume  # noqa: F821
    )
    if training.is_main_process():
        with io.atomic_dir(snakemake.output.dir) as tmp:  # noqa: F821
            training.save_trained(tmp, model, tokenizer, history)
            provenance.write(
                tmp / "provenance.json",
                params={"cfg": cfg, "code": code},
                inputs=dict(snakemake.input.items()),  # noqa: F821
                rule=snakemake.rule,  # noqa: F821
            )
        checkpoint.clear(resume_dir)
    training.finish_distributed()


if __name__ == "__main__":
    nproc = training.data_parallel_size(snakemake)  # noqa: F821
    if nproc > 1:
        training.launch_data_parallel(snakemake, __file__, nproc, log)  # noqa: F821
    else:
        main()
