"""How an error a user can cause becomes one line: ``error: <what went wrong and the fix>``.

``train.py`` / ``sample.py`` (:func:`lit_restore.cli.run_cli`) and the ``compare`` / ``score``
tools print that line and exit with status 2 (:func:`report_user_errors`);
``LIT_RESTORE_DEBUG=1`` shows the traceback instead. An error that is *not* a user error (a bug)
keeps its traceback. The error types are imported only when an exception is raised, so a tool
that needs no torch starts without it.

Three sources of user errors, three readers:

* **the config cannot be parsed** (a misspelt option, an unknown class, a wrong type): jsonargparse
  reports a nested tree of attempts; :func:`describe_parse_error` reduces it to the option, what
  is wrong, and a "did you mean" (``difflib`` over the names that exist);
* **a class refuses its arguments while being built** (a missing folder, missing weights, a
  negative σ, ``steps: 0``): jsonargparse wraps the exception in "Does not validate against any of
  the Union subtypes" dumps; :func:`one_line` reports the exception our code raised, innermost
  first past jsonargparse's wrappers;
* **the trainer cannot be configured** (``accelerator: gpu`` on a machine without one): Lightning's
  ``MisconfigurationException``, with the fix for the GPU case.
"""

from __future__ import annotations

import difflib
import inspect
import os
import re
import sys
import traceback
import typing
from collections.abc import Callable, Iterable

from lit_restore.utils.signals import Terminated, terminate_on_signals

#: where Lightning validates trainer flags; errors raised there are configuration errors
_LIGHTNING_CONFIG_MODULES = (
    f"lightning{os.sep}pytorch{os.sep}trainer{os.sep}connectors",
    f"lightning{os.sep}fabric{os.sep}accelerators",
    f"lightning{os.sep}fabric{os.sep}utilities{os.sep}device_parser",
)
_GPU_HINT = (
    "this machine has no usable GPU: run on CPU with --config configs/trainer/cpu.yaml "
    "(or --trainer.accelerator cpu)"
)


class ConfigError(Exception):
    """The command line or a ``--config`` file cannot be parsed; the message is one line."""


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean "the user must fix an input"."""
    from lit_restore.checkpoints import CheckpointError
    from lit_restore.data.io import BadImageError
    from lit_restore.operators.base import OperatorCapabilityError
    from lit_restore.presets import PresetError
    from lit_restore.utils.extras import MissingExtraError
    from lit_restore.utils.tables import OutputWriteError

    return (
        ConfigError,
        PresetError,
        FileNotFoundError,
        NotADirectoryError,
        IsADirectoryError,
        PermissionError,
        ValueError,
        KeyError,
        FloatingPointError,
        OperatorCapabilityError,
        CheckpointError,
        BadImageError,
        OutputWriteError,
        MissingExtraError,
    )


# ------------------------------------------------------------------------- exceptions → one line
def _chain(err: BaseException) -> list[BaseException]:
    """``err`` and its causes / contexts, outermost first."""
    out: list[BaseException] = []
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        out.append(current)
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return out


def _raised_in(err: BaseException, fragments: Iterable[str]) -> bool:
    """Whether the frame that raised ``err`` lies in a file whose path contains a fragment."""
    tb = err.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    filename = tb.tb_frame.f_code.co_filename
    return any(f in filename for f in fragments)


def _jsonargparse_frame(err: BaseException) -> bool:
    return _raised_in(err, (f"{os.sep}jsonargparse{os.sep}",))


def _message(err: BaseException) -> str:
    if isinstance(err, KeyError) and err.args:
        text = str(err.args[0])
    else:
        text = str(err)
    if "Original Traceback" in text:  # re-raised from a DataLoader worker: keep its last line
        last = [ln for ln in text.splitlines() if ln.strip()][-1]
        text = last.split(": ", 1)[1] if re.match(r"^\w+(\.\w+)*: ", last) else last
    return text or type(err).__name__


def flatten(text: str) -> str:
    """One line: whitespace runs (newlines included) become single spaces."""
    return " ".join(text.split())


def one_line(err: BaseException) -> str | None:
    """The ``error: ...`` line for a user error, or ``None`` when ``err`` is a bug."""
    chain = _chain(err)
    ours = next((e for e in chain if not _jsonargparse_frame(e)), None)
    if ours is None:  # jsonargparse rejected a value by itself: a config error
        return "error: " + describe_parse_error(str(err), [], [])
    if _is_misconfiguration(ours) or (
        isinstance(ours, (TypeError, ValueError)) and _raised_in(ours, _LIGHTNING_CONFIG_MODULES)
    ):
        text = _message(ours)
        if re.search(r"gpu|cuda", text, re.IGNORECASE) and not _cuda_available():
            text = f"{text.rstrip('.!')}: {_GPU_HINT}"
        return "error: " + flatten(text)
    if isinstance(ours, user_errors()):
        kind = type(ours)
        named = kind.__module__.startswith("lit_restore") and kind not in (ConfigError,)
        return "error: " + (f"{kind.__name__}: " if named else "") + flatten(_message(ours))
    return None


def _is_misconfiguration(err: BaseException) -> bool:
    """Lightning's ``MisconfigurationException`` (only when Lightning is loaded: a tool that never
    imported it cannot have raised it)."""
    if "lightning" not in sys.modules:
        return False
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    return isinstance(err, MisconfigurationException)


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def debug() -> bool:
    """``LIT_RESTORE_DEBUG`` is set: every error shows its traceback."""
    return bool(os.environ.get("LIT_RESTORE_DEBUG"))


def report(err: BaseException) -> int | None:
    """Print the one-line error of a user error and return its exit status (2); ``None`` when
    ``err`` is a bug (the caller shows its traceback)."""
    line = one_line(err)
    if line is None:
        return None
    print(line, file=sys.stderr, flush=True)
    return 2


def report_user_errors(
    call: Callable[[], int], *, bugs_raise: bool = True, stop_on_terminate: bool = True
) -> int:
    """``call()`` as the CLI runs it: a user error is one line (exit status 2), SIGTERM / SIGHUP
    exit status 128 + signal (:mod:`lit_restore.utils.signals`).

    A bug raises (``bugs_raise``) or prints its traceback and returns 1; ``LIT_RESTORE_DEBUG``
    shows every traceback. ``stop_on_terminate=False`` lets :class:`Terminated` through (a
    suite's run: the whole suite stops).
    """
    try:
        with terminate_on_signals():
            return call()
    except Terminated as err:
        if not stop_on_terminate:
            raise
        print(f"[lit_restore] {err}", file=sys.stderr, flush=True)
        return 128 + err.signum
    except Exception as err:
        status = None if debug() else report(err)
        if status is not None:
            return status
        if bugs_raise:
            raise
        traceback.print_exc()
        return 1


# ----------------------------------------------------------------------- parse errors → one line
def _close(name: str, candidates: Iterable[str]) -> str | None:
    found = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.6)
    return found[0] if found else None


def _flag_for(name: str, argv: list[str]) -> str | None:
    """The command-line flag (``--a.b.name``) the user typed for key ``name``, if any."""
    for arg in argv:
        flag = arg.split("=", 1)[0]
        if flag.startswith("--") and (flag == f"--{name}" or flag.endswith(f".{name}")):
            return flag
    return None


def _import(class_path: str) -> type | None:
    import importlib

    module, _, name = class_path.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module), name, None) if module else None
    except ImportError:
        return None
    return obj if isinstance(obj, type) else None


def _base_types(owner: type | None, key: str) -> list[type]:
    """The class types parameter ``key`` of ``owner.__init__`` accepts (Optional/Union unwrapped)."""
    if owner is None:
        return []
    try:
        hints = typing.get_type_hints(owner.__init__)
    except Exception:  # unresolvable annotations: no suggestions, the message still stands
        return []
    hint = hints.get(key)
    args = typing.get_args(hint) or (hint,)
    return [a for a in args if isinstance(a, type) and a is not type(None)]


def _subclasses(base: type) -> list[type]:
    out, todo = [], [base]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub not in out:
                out.append(sub)
                todo.append(sub)
    return [c for c in out if not c.__name__.startswith("_") and not inspect.isabstract(c)]


def _unknown_class(argv: list[str], key: str, owner: str | None, given: str) -> str:
    bases = _base_types(_import(owner) if owner else None, key)
    flag = _flag_for(key, argv) or key
    choices = [c for b in bases for c in _subclasses(b) if c.__module__.startswith("lit_restore")]
    names = sorted({c.__name__ for c in choices})
    text = f"{flag}: unknown {key} class {given!r}"
    if names:
        best = _close(given.rpartition(".")[2], names)
        text += f"; did you mean {best!r}?" if best else ""
        modules = sorted({c.__module__.rsplit(".", 1)[0] for c in choices})
        text += f". Available {key} classes: {', '.join(names)} (in {', '.join(modules)})"
    return text


def describe_parse_error(message: str, option_strings: Iterable[str], argv: list[str]) -> str:
    """One line for a jsonargparse parse error ``message`` (``option_strings``: the parser's
    options, for "did you mean"; ``argv``: what the user typed, to name the flag)."""
    option_strings = list(option_strings)
    m = re.match(r"unrecognized arguments: (.*)", message.strip(), re.DOTALL)
    if m:
        parts = []
        for token in m.group(1).split():
            if not token.startswith("--"):
                continue
            best = _close(token.split("=", 1)[0], option_strings)
            parts.append(f"{token}" + (f" (did you mean {best}?)" if best else ""))
        listing = ", ".join(parts) or m.group(1).strip()
        return f"unknown option {listing}; see --help for the options"

    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    owners = re.findall(r"Problem with given class_path '([^']+)'", message)
    m = re.search(r"Option '([^']+)' is not accepted", message)
    if m:
        name = m.group(1)
        owner = owners[-1] if owners else None
        cls = _import(owner) if owner else None
        params = list(inspect.signature(cls.__init__).parameters)[1:] if cls else []
        flag = _flag_for(name, argv)
        where = flag or f"{name!r} (in a --config file)"
        text = f"{where}: {owner or 'this class'} has no argument {name!r}"
        best = _close(name, params)
        if best:
            text += f"; did you mean {best!r}?"
        if name == "preset":
            text += (
                ". A preset is given with its class, e.g. --model.init_args.sampler "
                "'{class_path: lit_restore.samplers.DDPG, init_args: {preset: NAME}}'"
            )
        return text
    m = re.search(
        r"module '[^']+' has no attribute '([^']+)'|Expected a dot import path string: (\S+)",
        message,
    )
    if m:
        given = m.group(1) or m.group(2)
        keys = list(re.finditer(r'Parser key "([^"]+)"', message))
        key = keys[-1].group(1) if keys else "class"
        # the class whose parameter ``key`` is: the last class_path named before that key
        before = message[: keys[-1].start()] if keys else ""
        parents = re.findall(r"Problem with given class_path '([^']+)'", before)
        owner = parents[-1] if parents else None
        return _unknown_class(argv, key, owner, given)

    # A value of the wrong type: "Expected a <class 'int'>" leaves, the innermost given value.
    expected = re.findall(r"Expected a <class '([^']+)'>", message)
    keys = re.findall(r'Parser key "([^"]+)"', message)
    given = re.findall(r"Given value: (.*)", message)
    if expected and keys:
        key = keys[-1]
        flag = _flag_for(key, argv) or key
        types = " or ".join(dict.fromkeys("null" if t == "NoneType" else t for t in expected))
        got = given[0] if given else "?"
        return f"{flag}: expected {types}, got {got}"
    # Anything else: the innermost informative line, prefixed by its key.
    skip = re.compile(
        r"^(- )?(Does not validate against any of the Union subtypes|Subtypes:|Errors:|"
        r"Given value|Problem with given class_path|Expected a <class 'NoneType'>)"
    )
    informative = [ln for ln in lines if not skip.match(ln)]
    last = informative[-1] if informative else (lines[-1] if lines else message)
    last = re.sub(r'^(- )?Parser key "([^"]+)":\s*', lambda k: f"--{k.group(2)}: ", last)
    return flatten(last)
