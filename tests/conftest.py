"""Test-session settings. CPU only, no network."""

import os

# OpenMP threads that spin while waiting starve each other (and the DDP subprocesses the tests
# start) on a small shared machine; passive waiting made guided steps ~10× faster there.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
