"""Entry point of one data-parallel rank: ``torchrun`` runs this file once per GPU.

    python -m torch.distributed.run --standalone --nproc_per_node=N scripts/launch.py SNAKEMAKE_PKL SCRIPT

``SNAKEMAKE_PKL`` is the job's pickled ``snakemake`` object (written by
``kdprivacy.train.distributed.launch_data_parallel``); ``SCRIPT`` is a workflow script (``train_teacher.py``,
``train_student.py``, ``pretrain_base.py``), run here as ``__main__`` with that object injected, exactly as
Snakemake runs it. ``torchrun`` sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``, which make the training loop
data-parallel and let only rank 0 write outputs.
"""

import pickle
import runpy
import sys


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        raise SystemExit("usage: launch.py SNAKEMAKE_PKL SCRIPT")
    pkl, script = argv
    with open(pkl, "rb") as f:
        smk = pickle.load(f)  # noqa: S301 - written by our own launcher for this job
    runpy.run_path(script, init_globals={"snakemake": smk}, run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
