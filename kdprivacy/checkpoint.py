"""Resumable training: periodic checkpoints in a resume directory **outside** the final output.

A long training rule (pretraining, teacher SFT, students) can be killed at any moment: preempted by SLURM,
out of wall time, a node failure. :func:`kdprivacy.train.loop.fit` then saves, every
``train.checkpoint_every_steps`` optimizer steps, every ``train.checkpoint_every_minutes`` minutes, at every
epoch end and when the process receives SIGTERM/SIGUSR1, everything that determines the rest of the run:

- the trainable parameters (all of them for full fine-tuning; only the LoRA weights under LoRA), the
  best-dev snapshot when ``select="best_dev"``;
- the optimizer (AdamW moments) and the learning-rate scheduler;
- where the loop stands: epoch, batches done in the epoch, global step, the epoch's partial sums, the
  history rows of finished epochs;
- every random state that training draws from (torch CPU/CUDA, Python, NumPy), per rank;
- the KD method's own state (:mod:`kdprivacy.kd`: SGO decision RNG, replay buffers, sampler
  counters, DistiLLM's schedule, MiniLLM's current rollout), per rank.

A rerun of the same job (same cfg, same code: the *fingerprint*) loads it and continues; on a deterministic
CPU run the final weights are bit-identical to an uninterrupted run (``tests/test_resume.py``). A checkpoint
whose fingerprint or run identity differs (the config or the code changed) is discarded, never mixed in.

Layout: ``<resume_dir>/state.pt`` (one ``torch.save`` file, written to a temporary sibling and moved into
place with ``os.replace``: a kill while saving leaves the previous checkpoint intact) and
``<resume_dir>/state.json`` (a human-readable summary that also carries the format version and a digest
of the run identity). The workflow scripts use ``<output dir>.resume`` and delete it once the final output
is in place. Only rank 0 writes; every rank reads.

Safety: ``results/`` may be writable by others (a shared project directory), so a ``state.pt`` is never
trusted. :meth:`Checkpointer.load` first reads ``state.json`` (plain JSON) and unpickles nothing unless its
version and identity digest match this run; ``state.pt`` is then read with torch's ``weights_only``
unpickler, which builds tensors and plain Python containers/scalars only and never calls code named by the
file. Everything a checkpoint holds is therefore stored as such types (:func:`plain`: NumPy's RNG state as
a tensor and ints, NumPy scalars as Python numbers). A missing or mismatching summary, an unreadable file, a
payload that is not a dict or a payload of another run is logged and training starts from scratch.
A failed write (full disk, quota) raises :class:`CheckpointWriteError` naming the file and the likely cause.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import random
import shutil
import signal
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kdprivacy import io

log_ = logging.getLogger("kdprivacy")

STATE_FILE = "state.pt"
SUMMARY_FILE = "state.json"
FORMAT_VERSION = 2  # 2: weights_only-loadable payload, version + identity digest in state.json
# SLURM: scancel / time limit (TERM); the profile's `--signal=URG@<s>` before the time limit (URG: SLURM sends
# it to every process of the job step, and Snakemake, the step's main process, ignores SIGURG by default,
# while USR1 would kill it before the script has saved); USR1 is still caught for other launchers.
SIGNALS = ("SIGTERM", "SIGUSR1", "SIGURG")


class Preempted(RuntimeError):
    """Raised by :func:`kdprivacy.train.loop.fit` after it saved a checkpoint because a signal asked it to stop."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written; the message names the file and the likely cause."""


@dataclass(frozen=True)
class Resume:
    """Where a training job keeps its checkpoint, and what it must match to be resumed.

    ``fingerprint``: a digest of everything that defines the job (its cfg and code version, see
    :func:`fingerprint`); a checkpoint written under another fingerprint is discarded.
    """

    dir: str | os.PathLike
    fingerprint: str = ""

    @property
    def path(self) -> Path:
        return Path(self.dir)


def fingerprint(*parts: Any) -> str:
    """A stable digest of JSON-serialisable parts (cfg dicts, a code version string). Checkpoint-frequency
    keys (``checkpoint_every_*``) are dropped at every depth: they never change results."""

    def strip(obj):
        if isinstance(obj, dict):
            return {k: strip(v) for k, v in obj.items() if not str(k).startswith("checkpoint_every")}
        if isinstance(obj, (list, tuple)):
            return [strip(v) for v in obj]
        return obj

    text = json.dumps([strip(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def resume_dir_for(output_dir: str | os.PathLike) -> Path:
    """The default resume directory of a rule whose output is ``output_dir``: ``<output_dir>.resume``."""
    out = Path(output_dir)
    return out.with_name(out.name + ".resume")


def clear(resume_dir: str | os.PathLike | None) -> None:
    """Remove a resume directory (after the final output is in place)."""
    if resume_dir is not None and Path(resume_dir).exists():
        shutil.rmtree(resume_dir, ignore_errors=True)


# ------------------------------------------------------------------------------------------ RNG state
def rng_state() -> dict:
    """Every global RNG training may draw from: torch CPU (and CUDA), Python ``random``, NumPy."""
    import numpy as np

    kind, key, pos, has_gauss, gauss = np.random.get_state()
    numpy_state = {"kind": str(kind), "key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos),
                   "has_gauss": int(has_gauss), "gauss": float(gauss)}
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": numpy_state}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    import numpy as np

    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(cuda)


PLAIN_LEAVES = (torch.Tensor, str, bytes, bool, int, float, type(None), torch.dtype, torch.device, torch.Size)


def plain(obj: Any, where: str = "state") -> Any:
    """``obj`` in types torch's ``weights_only`` unpickler accepts: tensors, Python scalars and strings,
    dicts/lists/tuples of them. NumPy scalars become Python numbers (same value); anything else is a bug in
    what a caller checkpoints and raises ``TypeError`` naming where it sits (``where``)."""
    if isinstance(obj, PLAIN_LEAVES):
        return obj
    if isinstance(obj, dict):
        return {k: plain(v, f"{where}[{k!r}]") for k, v in obj.items()}
    if isinstance(obj, list):
        return [plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, tuple) and type(obj) is tuple:
        return tuple(plain(v, f"{where}[{i}]") for i, v in enumerate(obj))
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy comes with torch's stack
        np = None
    if np is not None and isinstance(obj, np.generic) and np.ndim(obj) == 0:
        return obj.item()
    raise TypeError(
        f"checkpoint {where} is a {type(obj).__module__}.{type(obj).__qualname__}: checkpoints hold only "
        "tensors and plain Python values (loaded with torch's weights_only unpickler); convert it"
    )


def identity_digest(identity: Any) -> str:
    """The run identity as a short digest (stored in the JSON summary, checked before any unpickling)."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def check_parameters(names: Iterable[str], state: Mapping[str, Any]) -> None:
    """Raise when a saved parameter state ``state`` lacks any of the parameter ``names`` (the check both
    :func:`kdprivacy.train.loop.fit`'s restore and :func:`kdprivacy.train.fsdp.restore` make first)."""
    missing = sorted(set(names) - set(state))
    if missing:
        raise ValueError(f"saved parameters lack {missing[:5]} ({len(missing)} in all)")


def to_cpu(obj: Any) -> Any:
    """``obj`` with every tensor moved to the CPU (dicts, lists and tuples are rebuilt)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_cpu(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(to_cpu(v) for v in obj)
    return obj


def to_device(obj: Any, device: torch.device | str) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_device(v, device) for v in obj]
    if isinstance(obj, tuple):
        return tuple(to_device(v, device) for v in obj)
    return obj


# ------------------------------------------------------------------------------------- checkpointer
class Checkpointer:
    """Saves/loads the loop state of one :func:`~kdprivacy.train.loop.fit` call.

    ``every_steps`` (0 = off) and ``every_minutes`` (0 = off) add mid-epoch checkpoints to the ones at epoch
    ends. ``identity``: what the loop itself must match (method, number of items, steps, train cfg); it is
    stored next to the caller's fingerprint. Used as a context manager, it catches SIGTERM/SIGUSR1 (main
    thread only) and sets :attr:`stop_requested`; the loop saves and raises :class:`Preempted`.
    """

    def __init__(
        self,
        resume: Resume,
        every_steps: int = 0,
        every_minutes: float = 0.0,
        identity: Any = None,
        rank: int = 0,
        log: logging.Logger | None = None,
    ):
        self.resume = resume
        self.dir = resume.path
        self.every_steps = int(every_steps or 0)
        self.every_seconds = 60.0 * float(every_minutes or 0.0)
        self.identity = {"fingerprint": resume.fingerprint, "run": identity}
        self.rank = int(rank)
        self.log = log or log_
        self.stop_requested = False
        self.last_save = time.monotonic()
        self._previous_handlers: dict = {}

    # signals ---------------------------------------------------------------------------------------
    def _handler(self, signum, frame):  # noqa: ARG002
        self.stop_requested = True
        self.log.warning("received signal %d: checkpointing after the current optimizer step", signum)

    def __enter__(self) -> Checkpointer:
        if threading.current_thread() is threading.main_thread():
            for name in SIGNALS:
                signum = getattr(signal, name, None)
                if signum is not None:
                    self._previous_handlers[signum] = signal.signal(signum, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers.clear()

    # schedule --------------------------------------------------------------------------------------
    def step_due(self, step: int) -> bool:
        """Whether a mid-epoch checkpoint is due after optimizer step ``step`` (on this rank's clock)."""
        if self.every_steps and step % self.every_steps == 0:
            return True
        return bool(self.every_seconds) and time.monotonic() - self.last_save >= self.every_seconds

    # io --------------------------------------------------------------------------------------------
    @property
    def file(self) -> Path:
        return self.dir / STATE_FILE

    def save(self, state: dict) -> None:
        """Write ``state`` atomically (rank 0 only; other ranks just reset their clock)."""
        self.last_save = time.monotonic()
        if self.rank != 0:
            return
        started = time.perf_counter()
        self.dir.mkdir(parents=True, exist_ok=True)
        payload = plain({"version": FORMAT_VERSION, "identity": self.identity, **state})
        summary = {
            "version": FORMAT_VERSION,
            "identity": identity_digest(self.identity),
            "epoch": state.get("epoch"),
            "batches_done": state.get("batches_done"),
            "epoch_done": state.get("epoch_done"),
            "step": state.get("step"),
            "fingerprint": self.resume.fingerprint,
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        with self._writing(self.file):
            with io.atomic_path(self.file) as tmp:
                torch.save(payload, tmp)
        with self._writing(self.dir / SUMMARY_FILE):
            io.write_text(self.dir / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
        self.log.info(
            "checkpoint: step %s (epoch %s, %s batches) -> %s in %.1f s",
            state.get("step"),
            state.get("epoch"),
            state.get("batches_done"),
            self.file,
            time.perf_counter() - started,
        )

    @contextlib.contextmanager
    def _writing(self, path: Path):
        """Turn a failed write into an error naming the file and the likely cause (torch only says
        "basic_ios::clear: iostream error" or "PytorchStreamWriter failed writing file")."""
        try:
            yield
        except (OSError, RuntimeError) as err:
            full = isinstance(err, RuntimeError) or getattr(err, "errno", None) in (errno.ENOSPC,
                                                                                    errno.EDQUOT)
            try:
                free = f"{shutil.disk_usage(self.dir).free / 1e9:.3g} GB free there now"
            except OSError:
                free = "free space unknown"
            if full:
                cause = (f"most likely the disk or the quota of {self.dir} is full ({free}): free some "
                         "space or raise the quota, then rerun; the previous checkpoint, if any, is intact")
            else:
                cause = f"check that {self.dir} is writable (permissions, disk, quota)"
            raise CheckpointWriteError(
                f"could not write checkpoint file {path} ({type(err).__name__}: {err}): {cause}"
            ) from err

    def _summary_matches(self) -> bool:
        """Whether ``state.json`` says the checkpoint is of this format and this run (read as JSON only)."""
        try:
            summary = json.loads((self.dir / SUMMARY_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            self.log.warning(
                "checkpoint %s has no readable summary %s (%s): starting from scratch",
                self.file,
                SUMMARY_FILE,
                err,
            )
            return False
        if not isinstance(summary, dict) or summary.get("version") != FORMAT_VERSION:
            self.log.warning(
                "checkpoint %s is of another format (summary version %r, expected %d): starting from scratch",
                self.file,
                summary.get("version") if isinstance(summary, dict) else None,
                FORMAT_VERSION,
            )
            return False
        if summary.get("identity") != identity_digest(self.identity):
            self.log.warning(
                "checkpoint %s belongs to another run (config, code or data changed): ignoring it, starting "
                "from scratch",
                self.file,
            )
            return False
        return True

    def load(self) -> dict | None:
        """The saved state, or None when there is none, it cannot be trusted or read, or it belongs to another
        job (that one is ignored and overwritten by the next save). Nothing is unpickled before the JSON
        summary matched, and then only with torch's ``weights_only`` unpickler."""
        if not self.file.is_file():
            return None
        if not self._summary_matches():
            return None
        try:
            payload = torch.load(self.file, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - unreadable or not plain data: start over
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            self.log.warning(
                "checkpoint %s is unreadable or holds more than plain data (%s: %s): starting from scratch",
                self.file,
                type(err).__name__,
                first[:300],
            )
            return None
        if not isinstance(payload, dict):
            self.log.warning(
                "checkpoint %s holds a %s, not a checkpoint: starting from scratch", self.file,
                type(payload).__name__,
            )
            return None
        if payload.get("version") != FORMAT_VERSION or payload.get("identity") != self.identity:
            self.log.warning(
                "checkpoint %s belongs to another run (config, code or data changed): ignoring it, starting "
                "from scratch",
                self.file,
            )
            return None
        self.log.info(
            "resuming from checkpoint %s: step %s (epoch %s, %s batches done)",
            self.file,
            payload.get("step"),
            payload.get("epoch"),
            payload.get("batches_done"),
        )
        return payload
