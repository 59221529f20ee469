"""Snakemake script: a student (any method of ``kdprivacy.kd.METHODS``) trained on the public pool
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

from kdprivacy import runtime  # noqa: E402
from kdprivacy.train import jobs, runs  # noqa: E402

job = runtime.Job(snakemake)  # noqa: F821



GENERATIONS = job.optional_input("generations")


def train(run, resume):
    # Base and teacher are loaded from cfg; local dirs are also named inputs so the DAG orders them.
    return jobs.train_student_from_cfg(
        run, job.input.manifest, job.log, teacher_generations_path=GENERATIONS, resume=resume  # noqa: F821
    )


if __name__ == "__main__":
    jobs.run_job(snakemake, __file__, job.log, runs.StudentRun, train, fingerprint_extra=(GENERATIONS,))  # noqa: F821
