"""Test-session settings. CPU only, no network."""

import os

# OpenMP threads that spin while waiting starve each other (and the DDP subprocesses the tests
# start) on a small shared machine; passive waiting made guided steps ~10× faster there.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors on 2 shared cores: a second intra-op thread only adds contention
    (measured ~20× slower with two fighting threads on the prior tests)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
