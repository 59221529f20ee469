"""Fixtures shared across test modules (data/tokenizer helpers live in ``toy.py``)."""

import os

import pytest
import torch


def requested_threads() -> int:
    """torch's intra-op threads for the tests: ``OMP_NUM_THREADS`` when set, else 1.

    One thread by default: tiny models gain nothing from more, and one is faster and steadier on a busy
    2-core box. CI runs the suite twice, at ``OMP_NUM_THREADS=$(nproc)`` and at ``OMP_NUM_THREADS=1``, so
    that results which depend on the thread count (rounding of the CPU kernels) show up as failures.
    """
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return max(1, int(value)) if value else 1


TEST_THREADS = requested_threads()
torch.set_num_threads(TEST_THREADS)  # before any module-scoped fixture builds or trains a model


@pytest.fixture(autouse=True)
def pinned_threads():
    """Every test starts and ends at ``TEST_THREADS``: workflow scripts run in-process (``runtime.start``)
    set the thread count from their ``snakemake.threads``."""
    torch.set_num_threads(TEST_THREADS)
    yield
    torch.set_num_threads(TEST_THREADS)
