"""What every workflow script does first, and what it hands the library: one :class:`Job` per script.

Scripts are thin: ``job = runtime.Job(snakemake)`` then one library call. Logging goes to
``snakemake.log[0]`` (and stderr); tqdm progress bars are written to the same log.
"""

from __future__ import annotations

import logging
import os
import random
import sys
from collections.abc import Callable
from pathlib import Path
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


DETERMINISTIC_ENV = "KDPRIVACY_DETERMINISTIC"
CUBLAS_WORKSPACE = ":4096:8"


def set_deterministic_environment(deterministic: bool) -> None:
    """The environment every job inherits (set where the Snakefile parses the config, as the hub's):
    ``KDPRIVACY_DETERMINISTIC=1`` and ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` (unless already set) when the
    config's ``deterministic`` is true; nothing otherwise."""
    if deterministic:
        os.environ[DETERMINISTIC_ENV] = "1"
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)


def deterministic_requested() -> bool:
    return os.environ.get(DETERMINISTIC_ENV, "0").lower() in ("1", "true", "yes", "on")


def use_deterministic_algorithms() -> None:
    """``torch.use_deterministic_algorithms(True)`` (an op without a deterministic kernel then raises rather
    than silently varying), cuDNN autotuning off, and cuBLAS's fixed workspace (``CUBLAS_WORKSPACE_CONFIG``,
    read when CUDA starts: jobs call this before any model loads)."""
    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False


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
    """Common start of a workflow script: logging into the rule's log, thread count, tqdm to the log, and
    deterministic algorithms when the config asks (:func:`use_deterministic_algorithms`).

    A job with ``resources.gpu`` > 0 checks its GPUs first (:func:`check_gpus`) and logs torch, CUDA and the
    device it runs on.
    """
    log_path = snakemake.log[0] if len(snakemake.log) else None
    logger = setup_logging(log_path)
    set_threads(snakemake.threads)
    logger.info("rule %s, threads %s", snakemake.rule, snakemake.threads)
    if deterministic_requested():  # the config's deterministic: true (set_deterministic_environment)
        use_deterministic_algorithms()
        logger.info("deterministic algorithms on (CUBLAS_WORKSPACE_CONFIG=%s)", os.environ["CUBLAS_WORKSPACE_CONFIG"])
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


class Job:
    """One workflow script's job: started on construction, then the handle a script needs, nothing else.

    A script is its one path line (the repository root is not on Snakemake's script path), a Job and one
    library call::

        import sys
        from pathlib import Path

        sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - injected by Snakemake
        from kdprivacy import runtime  # noqa: E402
        from kdprivacy.config import Data  # noqa: E402
        from kdprivacy.data import manifest  # noqa: E402

        job = runtime.Job(snakemake, Data)  # noqa: F821
        pools, card = manifest.prepare(job.cfg, job.optional_input("hub"))
        job.save(manifest=pools, card=card)
        job.write_provenance(job.output.provenance)

    Constructing it does what :func:`start` does (log into the rule's log, pin threads, check and log the
    GPUs of a rule declaring ``resources.gpu``). Then:

    - ``job.cfg``: ``params.cfg`` validated into ``schema`` (a :mod:`kdprivacy.config` model or a slice of
      one) when given, else as the rule passed it; ``job.params``: ``params.cfg`` exactly as passed (what
      provenance records); ``job.code``: ``params.code``.
    - ``job.input`` / ``job.output``: Snakemake's named lists (``job.input.manifest``); ``job.inputs`` /
      ``job.outputs``: the same as dicts; :meth:`optional_input` for an input an input function may leave
      out; :meth:`optional_table` reads such an input's CSV (None when absent); :meth:`has_output` for an
      optional output.
    - ``job.log`` (the logger), ``job.rule``, ``job.threads``, ``job.snakemake`` (anything else, e.g.
      ``params.models``); :meth:`seed` seeds Python, NumPy and torch.
    - :meth:`save` writes named outputs by suffix (parquet, csv, json, text); :meth:`write_provenance` the
      record of one artifact (``{"cfg": job.params, "code": job.code, **extra}``, the named inputs' hashes).
    """

    def __init__(self, snakemake: Any, schema: type | None = None) -> None:
        self.snakemake = snakemake
        self.log = start(snakemake)
        self.rule = snakemake.rule
        self.threads = snakemake.threads
        params = getattr(snakemake, "params", None)
        self.params = getattr(params, "cfg", None)
        self.code = getattr(params, "code", None)
        self.cfg = schema.model_validate(self.params) if schema is not None else self.params
        self.input = snakemake.input
        self.output = snakemake.output

    @property
    def inputs(self) -> dict[str, Any]:
        return dict(self.input.items())

    @property
    def outputs(self) -> dict[str, Any]:
        return dict(self.output.items())

    def optional_input(self, name: str) -> str | None:
        """A named input that may be absent, an empty list (its input function returned nothing) or one path."""
        value = self.inputs.get(name)
        if value is None or isinstance(value, str):
            return value or None
        paths = list(value)
        if len(paths) > 1:
            raise ValueError(f"input {name!r} must be one path, got {paths}")
        return paths[0] if paths else None

    def optional_table(self, name: str) -> Any:
        """The CSV of an :meth:`optional_input` as a DataFrame, or None when the input is absent."""
        path = self.optional_input(name)
        if path is None:
            return None
        import pandas as pd

        return pd.read_csv(path)

    def has_output(self, name: str) -> bool:
        return name in self.outputs

    def seed(self, seed: int) -> None:
        seed_everything(seed)

    def save(self, **named: Any) -> None:
        """Write each ``output name=object`` to that output's path, by its suffix: ``.parquet`` and ``.csv``
        (a DataFrame), ``.json`` (JSON-able data), anything else as text."""
        from kdprivacy import io

        writers: dict[str, Callable[[str, Any], None]] = {
            ".parquet": lambda path, obj: io.write_parquet(obj, path),
            ".csv": lambda path, obj: io.write_csv(obj, path),
            ".json": io.write_json,
        }
        outputs = self.outputs
        for name, obj in named.items():
            if name not in outputs:
                raise KeyError(f"rule {self.rule} has no output {name!r}; outputs: {sorted(outputs)}")
            path = str(outputs[name])
            writers.get(Path(path).suffix, io.write_text)(path, obj)

    def write_provenance(self, path: str | os.PathLike, inputs: dict[str, Any] | None = None, **extra: Any) -> None:
        """``path``: the provenance of one artifact, with ``params = {"cfg", "code", **extra}`` and the hashes
        of ``inputs`` (default: every named input)."""
        from kdprivacy import provenance

        provenance.write(
            path,
            params={"cfg": self.params, "code": self.code, **extra},
            inputs=self.inputs if inputs is None else inputs,
            rule=self.rule,
        )
