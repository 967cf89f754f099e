"""Running the repository's entry points (``sample.py``, ``train.py``) as a user would.

A subprocess — not an in-process call — where a test needs what the user sees: the exit status,
the one-line ``error:`` on stderr, a fresh interpreter's imports, a run directory written from
scratch. Every such test starts its process the same way, from here:

* the working directory is the repository root (the entry points and ``configs/`` are there);
* ``OMP_WAIT_POLICY=PASSIVE``: spinning OpenMP workers starve each other on a small shared
  machine (``tests/conftest.py``);
* ``PYTHONWARNINGS=ignore``: library deprecation warnings would bury the tail of stderr that a
  failing assertion prints;
* ``LIT_RESTORE_DEBUG`` removed (a test may set it again through ``env``), so an error is the
  single ``error:`` line of ``lit_restore/cli.py`` and not a traceback, whatever the shell that
  runs the tests has set.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def entry_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of an entry-point subprocess (module docstring), plus ``env``."""
    base = {k: v for k, v in os.environ.items() if k != "LIT_RESTORE_DEBUG"}
    return {**base, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONWARNINGS": "ignore", **(env or {})}


def entry_command(*args: str | Path) -> list[str]:
    """``python ARGS...`` with this interpreter (``args[0]``: the script, e.g. ``sample.py``)."""
    return [sys.executable, *map(str, args)]


def run_entry(
    *args: str | Path,
    env: dict[str, str] | None = None,
    timeout: float = 300,
    check: bool = True,
) -> subprocess.CompletedProcess:
    """Run ``python ARGS...`` from the repository root and capture its output (text).

    ``check``: assert exit status 0, showing the command and the tails of stdout and stderr
    when it is not; ``check=False`` returns whatever happened (tests of the error path).
    """
    out = subprocess.run(
        entry_command(*args),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=entry_env(env),
    )
    if check:
        assert out.returncode == 0, f"{args}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out
