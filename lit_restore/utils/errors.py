"""Errors a user can cause end in one ``error: ...`` line (exit status 2), in the CLIs and the
``compare``/``score`` tools alike; ``LIT_RESTORE_DEBUG=1`` shows the traceback instead."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean "the user must fix an input", reported without a traceback."""
    from lit_restore.checkpoints import CheckpointError
    from lit_restore.data.io import BadImageError
    from lit_restore.operators.base import OperatorCapabilityError
    from lit_restore.utils.tables import OutputWriteError

    errors: list[type[BaseException]] = [
        FileNotFoundError,
        NotADirectoryError,
        IsADirectoryError,
        PermissionError,
        ValueError,
        KeyError,
        FloatingPointError,
        OperatorCapabilityError,
        CheckpointError,
        OutputWriteError,
    ]
    return (*errors, BadImageError)


def report_user_errors(run: Callable[[], int]) -> int:
    """``run()``; a user error (:func:`user_errors`) becomes one ``error: ...`` line on stderr and
    exit status 2. The error types are imported only when an exception is raised, so a tool that
    needs no torch starts without it."""
    if os.environ.get("LIT_RESTORE_DEBUG"):
        return run()
    try:
        return run()
    except user_errors() as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"error: {type(err).__name__}: {message}", file=sys.stderr)
        print("       (set LIT_RESTORE_DEBUG=1 for the full traceback)", file=sys.stderr)
        return 2
