"""Snakemake script: a student (nokd, kd, seqkd, imitkd, gkd, minillm, distillm) trained on the public pool
only (asserted); dev pool for dev loss. Writes the model, ``train_log.csv`` (per-epoch history including the
method's mechanism columns) and ``provenance.json``.

Inputs: ``manifest``, ``base`` (local base dir, for DAG order), ``teacher`` (teacher dir; methods that query
the teacher), ``generations`` (optional; the SeqKD teacher-generation parquet, seqkd only).
``params.cfg`` may hold ``lora`` (LoRA block; the output is the merged model plus ``adapter/``) and a
teacher ref with ``quantization`` (``"8bit"``/``"4bit"``: the frozen teacher is loaded quantized).
Preemption: checkpoints (including the method's RNGs and replay buffers) go to ``params.resume_dir``
(default ``<output.dir>.resume``) and a rerun resumes from them; the directory is removed once the output is
in place. Given more than one GPU (``resources.gpu``) the job runs data-parallel through ``torchrun``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - injected by Snakemake
from kdprivacy import runtime

log = runtime.start(snakemake)  # noqa: F821

from kdprivacy import checkpoint, io, provenance, training  # noqa: E402


def optional_input(name):
    """A named input that may be absent, an empty list (input function returned nothing) or one path."""
    value = getattr(snakemake.input, name, None)  # noqa: F821
    if value is None or isinstance(value, str):
        return value or None
    paths = list(value)
    if len(paths) > 1:
        raise ValueError(f"input {name!r} must be one path, got {paths}")
    return paths[0] if paths else None


def main():
    cfg = snakemake.params.cfg  # noqa: F821
    code = snakemake.params.code  # noqa: F821
    runtime.set_threads(training.worker_threads(snakemake.threads))  # noqa: F821
    runtime.seed_everything(cfg["seed"])
    resume_dir = getattr(snakemake.params, "resume_dir", None) or checkpoint.resume_dir_for(snakemake.output.dir)  # noqa: F821
    generations = optional_input("generations")
    resume = checkpoint.Resume(resume_dir, checkpoint.fingerprint(cfg, code, generations))
    # Base and teacher are loaded from cfg; local dirs are also named inputs so the DAG orders them.
    model, tokenizer, history = training.train_student_from_cfg(
        cfg, snakemake.input.manifest, log, teacher_generations_path=generations, resume=resume  # noqa: F821
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
