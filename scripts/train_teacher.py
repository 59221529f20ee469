"""Snakemake script: fine-tune the teacher on the private pool (the members); dev pool for dev loss.

``params.cfg``: ``base`` (model ref), ``train`` (incl. ``checkpoint_every_steps`` / ``_minutes``), ``lora``
(optional LoRA block; the output is the merged model plus ``adapter/``), ``seed``, ``max_length``,
``max_prompt_length``. Preemption: checkpoints go to ``params.resume_dir`` (default ``<output.dir>.resume``)
and a rerun resumes from them; the directory is removed once the output is in place. Given more than one
GPU (``resources.gpu``), the job runs data-parallel through ``torchrun`` (``kdprivacy.training``).
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
    # The base is always loaded from cfg["base"]; a local base dir is also a named input so the DAG orders it.
    model, tokenizer, history = training.train_teacher_from_cfg(cfg, snakemake.input.manifest, log, resume=resume)  # noqa: F821
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
