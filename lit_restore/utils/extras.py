"""Optional packages (``pip install 'lit_restore[<extra>]'``): imported lazily, at the moment a
feature needs them, and missing as one user error naming the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingExtraError(ModuleNotFoundError):
    """An optional package is not installed; the message names the extra that installs it."""


def require(module: str, extra: str, purpose: str, note: str = "") -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming ``pip install
    'lit_restore[extra]'`` (``note``: e.g. a licence or an alternative, appended)."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        tail = f" {note}" if note else ""
        raise MissingExtraError(
            f"{purpose} needs the optional package {module!r} ({err}); install it with "
            f"`pip install 'lit_restore[{extra}]'`.{tail}",
            name=module,
        ) from err
