"""The suite runs at the thread count it is asked for (conftest.py), so that CI's second run, single-threaded,
really differs from its first, on all cores."""

import os

import torch

from kdprivacy import runtime


def test_torch_runs_at_the_requested_thread_count():
    assert torch.get_num_threads() == int(os.environ.get("OMP_NUM_THREADS") or 1)


def test_a_script_run_in_process_changes_the_thread_count():
    # runtime.start sets snakemake.threads, as every workflow script that a test runs in-process does; the
    # next test (pytest keeps the file's order) must start at the requested count again
    runtime.set_threads(torch.get_num_threads() + 2)
    assert torch.get_num_threads() != int(os.environ.get("OMP_NUM_THREADS") or 1)


def test_threads_restored_after_the_previous_test():
    assert torch.get_num_threads() == int(os.environ.get("OMP_NUM_THREADS") or 1)
