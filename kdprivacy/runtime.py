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


def start(snakemake: Any) -> logging.Logger:
    """Common start of a workflow script: logging into the rule's log, thread count, tqdm to the log."""
    log_path = snakemake.log[0] if len(snakemake.log) else None
    logger = setup_logging(log_path)
    set_threads(snakemake.threads)
    logger.info("rule %s, threads %s", snakemake.rule, snakemake.threads)
    scheduler = {k: os.environ[k] for k in ("SLURM_JOB_ID", "CUDA_VISIBLE_DEVICES") if k in os.environ}
    if scheduler:
        logger.info("environment: %s", " ".join(f"{k}={v}" for k, v in scheduler.items()))
    return logger
