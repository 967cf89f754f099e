"""One ``error: ...`` line for errors a user can cause, shared by the CLIs and the tools."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable


def _user_errors() -> tuple[type[BaseException], ...]:
    from lit_restore.cli import user_errors  # evaluated only when an exception is raised

    return user_errors()


def report_user_errors(run: Callable[[], int]) -> int:
    """``run()``; a user error (:func:`lit_restore.cli.user_errors`) becomes one ``error: ...``
    line on stderr and exit status 2. ``LIT_RESTORE_DEBUG=1`` shows the traceback instead."""
    if os.environ.get("LIT_RESTORE_DEBUG"):
        return run()
    try:
        return run()
    except _user_errors() as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"error: {type(err).__name__}: {message}", file=sys.stderr)
        print("       (set LIT_RESTORE_DEBUG=1 for the full traceback)", file=sys.stderr)
        return 2
