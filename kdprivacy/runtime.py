"""What every workflow script does first: log to the rule's log file, pin threads, fix seeds.

Scripts are thin: ``start(snakemake)`` then one library call. Logging goes to ``snakemake.log[0]`` (and
stderr); tqdm progress bars are written to the same log.
"""

from __future__ import annotations

import logging
import os
import random
import sys
from typing import Any

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(log_path: str | None) -> logging.Logger:
    """Log to ``log_path`` when given (stderr, and so tqdm, is redirected there too), else to stderr."""
    if log_path:
        os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
        # One stream for logging and tqdm; lives for the whole job.
        sys.stderr = open(log_path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
    logging.basicConfig(
        level=logging.INFO, format=LOG_FORMAT, handlers=[logging.StreamHandler(sys.stderr)], force=True
    )
    return logging.getLogger("kdprivacy")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch; CPU results are then repeatable for a fixed thread count."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(max(1, int(threads)))


class DeviceError(RuntimeError):
    """A job was given GPUs it cannot use."""


def torch_versions() -> dict[str, str | None]:
    """torch, its CUDA runtime and cuDNN, and the visible GPUs (what a bug report needs)."""
    import torch

    cuda = torch.cuda.is_available()
    return {
        "torch": torch.__version__,
        "cuda_runtime": torch.version.cuda,
        "cudnn": str(torch.backends.cudnn.version()) if cuda else None,
        "gpus": ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())) if cuda else None,
    }


def check_gpus(requested: int) -> None:
    """Stop a job given ``requested`` > 0 GPUs whose CUDA is unusable, instead of silently using the CPU.

    ``$KDPRIVACY_DEVICE`` set (e.g. ``cpu``) is an explicit choice of device and skips the check.
    """
    if requested <= 0 or os.environ.get("KDPRIVACY_DEVICE"):
        return
    import torch

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if not torch.cuda.is_available():
        why = ("this torch build has no CUDA" if torch.version.cuda is None
               else f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no usable GPU: driver missing or "
               "too old for this CUDA runtime, or no GPU visible")
        raise DeviceError(
            f"the job was given {requested} GPU(s) but CUDA is unusable: {why} (CUDA_VISIBLE_DEVICES={visible!r}). "
            "Fix the node/driver/container (apptainer needs --nv), or set KDPRIVACY_DEVICE=cpu to run on the CPU "
            "on purpose."
        )
    if torch.cuda.device_count() < requested:
        raise DeviceError(f"the job was given {requested} GPU(s) but torch sees {torch.cuda.device_count()} "
                          f"(CUDA_VISIBLE_DEVICES={visible!r})")


def start(snakemake: Any) -> logging.Logger:
    """Common start of a workflow script: logging into the rule's log, thread count, tqdm to the log.

    A job with ``resources.gpu`` > 0 checks its GPUs first (:func:`check_gpus`) and logs torch, CUDA and the
    device it runs on.
    """
    log_path = snakemake.log[0] if len(snakemake.log) else None
    logger = setup_logging(log_path)
    set_threads(snakemake.threads)
    logger.info("rule %s, threads %s", snakemake.rule, snakemake.threads)
    scheduler = {k: os.environ[k] for k in ("SLURM_JOB_ID", "CUDA_VISIBLE_DEVICES") if k in os.environ}
    if scheduler:
        logger.info("environment: %s", " ".join(f"{k}={v}" for k, v in scheduler.items()))
    declared = getattr(getattr(snakemake, "resources", None), "gpu", None)  # heavy rules declare it (0 on CPU)
    if declared is not None:
        gpus = int(declared or 0)
        check_gpus(gpus)
        from kdprivacy.models import default_device

        versions = " ".join(f"{k}={v}" for k, v in torch_versions().items() if v is not None)
        logger.info("device %s (%d GPU(s) requested); %s", default_device(), gpus, versions)
    return logger
