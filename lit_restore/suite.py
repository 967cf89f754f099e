"""Suites: one command that runs several methods as separate runs, then compares them.

A suite file is a YAML with a single top-level ``suite`` key::

    suite:
      base: [configs/experiment/demo_base.yaml]   # configs shared by every run
      runs:                                       # run name -> its own extra configs/flags
        safari: [configs/sampler/safari_demo.yaml]
        dps:    [configs/sampler/dps_demo.yaml, --model.init_args.seed, "1"]
      compare: runs/demo/comparison               # where the comparison table + figure go
      jobs: 2                                     # optional: runs at once (default 1)

``python sample.py test --config SUITE.yaml [flags]`` runs, for every entry,
``sample.py test --config BASE... --config RUN... [flags] --trainer.logger.init_args.version NAME``
then ``lit_restore.evaluation.compare --allow-mismatch`` over the run directories (runs on
different data, e.g. a σ_y sweep, are labelled by data group). Paths in the suite are relative to
the current directory.

- **One process.** Runs execute in this process, one after the other (no start-up or parse cost
  per run); a run whose trainer launches several processes (DDP, several devices or nodes; see
  :func:`needs_own_process`) runs as a child process instead, because Lightning re-launches the
  script for its other ranks. Killing the suite (SIGTERM, SIGHUP, Ctrl-C) stops the current run,
  and a child run with all its ranks (its process group is signalled).
- **Stops at the first failing run**, whose one ``error:`` line is printed once; ``--keep-going``
  runs the others and compares those that finished. The exit status is the failing run's.
- ``--print_config`` prints every run's resolved config and does nothing else.
- **Runs at once** (``jobs: N`` in the suite, or ``--jobs N``; default 1): this process runs one
  entry at a time as above while up to N − 1 others run as child processes of the same script,
  each writing its output to ``<run dir>/../<run>.log`` (the progress bars of two runs in one
  terminal would be unreadable). Entries are taken in the suite's order: this process takes the
  next one, then the free child slots the ones after it, so put the long runs first. Slots are
  filled whenever this process starts a run (not while it runs one). The comparison keeps the
  suite's order whatever order the runs finish in. Each child pays its interpreter start (about
  8 s for torch + Lightning). For CPU runs set ``threads`` so that jobs × threads ≤ cores; on
  GPUs, give each run its own device (``--trainer.devices``), or they share one. A failing
  child's ``error:`` line is printed once with its log's path; without ``--keep-going`` no new
  run starts and the ones in flight finish (their results are complete, not lost). A signal to
  the suite stops every run, the children's process groups included.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lit_restore.utils.errors import report_user_errors
from lit_restore.utils.signals import Terminated, terminate_on_signals

#: the suite's own options (removed before the runs see the flags)
KEEP_GOING = "--keep-going"
JOBS = "--jobs"


@dataclass
class Suite:
    base: list[str]
    runs: dict[str, list[str]]
    compare: str | None = None
    source: Path = field(default_factory=Path)
    #: how many runs may run at once (this process + jobs − 1 children)
    jobs: int = 1


def load_suite(path: str | Path) -> Suite | None:
    """Parse ``path`` as a suite; ``None`` when it is an ordinary config."""
    path = Path(path)
    if not path.is_file() or path.suffix not in {".yaml", ".yml"}:
        return None
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict) or "suite" not in data:
        return None
    if set(data) != {"suite"}:
        raise ValueError(f"{path}: a suite file holds only the 'suite' key, got {sorted(data)}")
    spec = data["suite"] or {}
    runs = spec.get("runs") or {}
    if not runs:
        raise ValueError(f"{path}: suite.runs is empty; list run names with their configs")
    bad = [name for name in runs if not str(name).replace("_", "").replace("-", "").isalnum()]
    if bad:
        raise ValueError(f"{path}: run names must be letters, digits, '-' or '_': {bad}")
    jobs = spec.get("jobs", 1)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"{path}: suite.jobs must be a whole number ≥ 1, got {jobs!r}")
    return Suite(
        base=[str(p) for p in spec.get("base") or []],
        runs={str(k): [str(a) for a in (v or [])] for k, v in runs.items()},
        compare=spec.get("compare"),
        source=path,
        jobs=jobs,
    )


def _as_args(items: list[str]) -> list[str]:
    """Config paths become ``--config PATH``; anything starting with ``--`` is passed as is."""
    args: list[str] = []
    expect_value = False
    for item in items:
        if expect_value:
            args.append(item)
            expect_value = False
        elif item.startswith("--"):
            args.append(item)
            expect_value = "=" not in item
        else:
            args += ["--config", item]
    return args


def find_suite(argv: list[str]) -> tuple[Suite, list[str]] | None:
    """If ``argv`` names a suite file with ``--config``/``-c``, return it and the other args."""
    for i, arg in enumerate(argv[:-1]):
        if arg in {"--config", "-c"}:
            suite = load_suite(argv[i + 1])
            if suite is not None:
                return suite, argv[:i] + argv[i + 2 :]
    return None


def run_args(suite: Suite, name: str, subcommand: str, flags: list[str]) -> list[str]:
    """The command line (after the script) of run ``name``."""
    extra = suite.runs[name]
    return [
        subcommand,
        *_as_args(suite.base),
        *_as_args(extra),
        *flags,
        "--trainer.logger.init_args.version",
        name,
    ]


# ------------------------------------------------------------------------ where a run goes
class ConfigResolved(Exception):
    """Raised by the CLI before instantiation when asked only to resolve a run's config
    (``resolve_only``): a suite learns a child run's directory without building it."""

    def __init__(self, config: Any) -> None:
        super().__init__("config resolved")
        self.config = config


class NeedsOwnProcess(Exception):
    """Raised by the CLI before instantiation when a run asked to stay in this process would
    have Lightning launch more processes (DDP): those re-run the script, so the run needs its
    own process. Carries the run's resolved config."""

    def __init__(self, config: Any) -> None:
        super().__init__("this run launches several processes")
        self.config = config


def _device_count(accelerator: Any, devices: Any) -> int:
    """How many devices Lightning would use for ``accelerator`` / ``devices`` (its rules)."""
    accel = str(accelerator or "auto").lower()
    if accel == "cpu":
        available = 1
    else:
        import torch

        cuda = torch.cuda.device_count()
        available = cuda if accel in ("gpu", "cuda") or cuda else 1
    if isinstance(devices, int):
        return available if devices == -1 else devices
    if isinstance(devices, (list, tuple)):
        return len(devices)
    text = str(devices).strip()
    if text in ("auto", "-1"):
        return available if (text == "-1" or accel != "cpu") else 1
    if "," in text:
        return len([d for d in text.split(",") if d.strip()])
    try:
        return int(text)
    except ValueError:
        return 2  # unknown form: let the run be its own process and Lightning judge it


def needs_own_process(trainer: Any) -> bool:
    """Whether a run with these trainer settings makes Lightning launch other processes.

    In-process only when one device on one node with the default strategy: anything else
    (``strategy: ddp``, ``devices: 2``, ``devices: auto`` on a multi-GPU node, several nodes) is
    launched by Lightning, which re-runs the script for each rank.
    """
    get = trainer.get if isinstance(trainer, Mapping) or hasattr(trainer, "get") else dict().get
    strategy = get("strategy", "auto")
    if strategy not in (None, "auto", "single_device"):
        return True
    if int(get("num_nodes", 1) or 1) > 1:
        return True
    return _device_count(get("accelerator", "auto"), get("devices", "auto")) != 1


def run_dir(trainer: Any, version: str) -> Path:
    """The directory a run writes to, from its resolved trainer config (Lightning's log_dir).

    A logger spec → ``save_dir/name/version``; ``logger: true`` → Lightning's default
    TensorBoard logger under ``default_root_dir/lightning_logs``; no logger → ``default_root_dir``.
    """
    trainer = _plain(trainer)
    root = trainer.get("default_root_dir") or os.getcwd()
    logger = trainer.get("logger")
    if isinstance(logger, list):
        logger = logger[0] if logger else False
    if logger is False or logger is None:
        return Path(root)
    init = logger.get("init_args", {}) if isinstance(logger, dict) else {}
    save_dir = init.get("save_dir") or root
    name = init.get("name", "lightning_logs")
    return Path(save_dir) / (name or "") / version


def _plain(value: Any) -> Any:
    """jsonargparse Namespace (or dict) → plain dict."""
    if hasattr(value, "as_dict"):
        return value.as_dict()
    return dict(value) if isinstance(value, Mapping) else value


# ----------------------------------------------------------------------------- running runs
@dataclass
class Outcome:
    status: int
    run_dir: Path | None = None
    #: not run: its trainer launches several processes, so it must run as a child process
    own_process: bool = False


def _call_cli(call: Callable[[], int]) -> int:
    """``call()`` (which builds a CLI from explicit ``args``) as a suite entry: a user error is one
    line and a status, a signal stops the suite. ``sys.argv`` is cut to the script for the call:
    the run's arguments are its ``args`` (Lightning warns when both are given)."""
    argv = sys.argv
    sys.argv = argv[:1]
    try:
        return report_user_errors(call, bugs_raise=False, stop_on_terminate=False)
    finally:
        sys.argv = argv


def _run_in_process(cli_class: type, args: list[str], version: str) -> Outcome:
    """Run one entry in this process, unless it must be its own process (``own_process``)."""
    found: dict[str, Any] = {}

    def call() -> int:
        try:
            cli = cli_class(args=args, in_process_only=True)
        except NeedsOwnProcess as err:
            found["child"] = run_dir(err.config.trainer, version)
            return 0
        found["dir"] = run_dir(cli.config[cli.subcommand].trainer, version)
        return 0

    try:
        status = _call_cli(call)
    finally:
        gc.collect()  # the run's model, data and trainer go before the next run builds its own
        _empty_cuda_cache()
    if "child" in found:
        return Outcome(0, found["child"], own_process=True)
    if status != 0:
        return Outcome(status)
    return Outcome(0, found["dir"])


def _empty_cuda_cache() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def _run_child(script: str, args: list[str], name: str) -> int:
    """Run one entry as a child process in its own process group; signals reach all its ranks."""
    child = subprocess.Popen([sys.executable, script, *args], start_new_session=True)
    print(
        f"[suite] run {name} launches several processes: child process group {child.pid}",
        flush=True,
    )

    def forward(signum: int, _frame: Any) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signum)
        raise Terminated(signum)

    previous_int = signal.getsignal(signal.SIGINT)
    try:
        with terminate_on_signals(forward):
            signal.signal(signal.SIGINT, forward)  # the child left our terminal's process group
            return child.wait()
    except BaseException:
        _stop(child)
        raise
    finally:
        signal.signal(signal.SIGINT, previous_int)


def _stop(child: subprocess.Popen, grace: float = 30.0) -> None:
    """Give a signalled child ``grace`` seconds to tear down, then kill its process group."""
    try:
        child.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()


def _print_configs(cli_class: type, suite: Suite, subcommand: str, flags: list[str]) -> int:
    """``--print_config``: every run's resolved config, one YAML document each; no side effects."""
    for i, name in enumerate(suite.runs):
        print(("---\n" if i else "") + f"# suite run: {name}", flush=True)

        def call(name: str = name) -> int:
            try:
                cli_class(args=run_args(suite, name, subcommand, flags))
            except SystemExit as done:  # --print_config prints, then exits 0
                return int(done.code or 0)
            return 0

        status = report_user_errors(call, bugs_raise=False, stop_on_terminate=False)
        if status:
            return status
    return 0


def _suite_options(suite: Suite, argv: list[str]) -> tuple[list[str], bool, int]:
    """Split the suite's own options (``--keep-going``, ``--jobs N``) from the runs' flags."""
    flags: list[str] = []
    keep_going, jobs = False, suite.jobs
    items = iter(argv)
    for arg in items:
        if arg == KEEP_GOING:
            keep_going = True
        elif arg == JOBS or arg.startswith(JOBS + "="):
            value = arg.partition("=")[2] if "=" in arg else next(items, "")
            try:
                jobs = int(value)
            except ValueError:
                jobs = 0
            if jobs < 1:
                raise ValueError(f"{JOBS}: a whole number of runs at once ≥ 1, got {value!r}")
        else:
            flags.append(arg)
    return flags, keep_going, jobs


@dataclass
class _Child:
    """A run in flight as a child process (``jobs`` > 1)."""

    name: str
    process: subprocess.Popen
    run_dir: Path
    log: Path
    start: float = field(default_factory=time.perf_counter)


def _resolve_run_dir(cli_class: type, args: list[str], version: str) -> tuple[int, Path | None]:
    """Parse a run's config without building it; (status, its run directory). A config error is
    reported here (one line), before any process starts."""
    found: dict[str, Path] = {}

    def call() -> int:
        try:
            cli_class(args=args, resolve_only=True)
        except ConfigResolved as done:
            found["dir"] = run_dir(done.config.trainer, version)
        return 0

    return _call_cli(call), found.get("dir")


def _start_child(script: str, args: list[str], name: str, directory: Path) -> _Child:
    """Start run ``name`` as a child process in its own process group, output to its log."""
    log = directory.parent / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:  # the child holds its own copy of the descriptor
        process = subprocess.Popen(
            [sys.executable, script, *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    print(f"[suite] run {name} started in process {process.pid}; its output: {log}", flush=True)
    return _Child(name, process, directory, log)


def _child_errors(log: Path) -> list[str]:
    """The ``error:`` lines a failed child wrote (its one-line user error), or its last line."""
    lines = log.read_text(errors="replace").splitlines() if log.is_file() else []
    errors = [ln for ln in lines if ln.startswith("error:")]
    return errors or [f"error: run failed; last line: {lines[-1]}" if lines else "error: no output"]


def run_suite(cli_class: type, suite: Suite, argv: list[str], script: str | None = None) -> int:
    """Run every entry of ``suite`` with ``cli_class`` (the CLI of ``script``, by default the
    running one), then compare; see the module docstring."""
    if not argv or argv[0].startswith("-"):
        raise ValueError("put the subcommand first: python sample.py test --config SUITE.yaml")
    subcommand, (flags, keep_going, jobs) = argv[0], _suite_options(suite, argv[1:])
    if any(f == "--print_config" or f.startswith("--print_config=") for f in flags):
        return _print_configs(cli_class, suite, subcommand, flags)
    script = script or sys.argv[0]
    done: dict[str, Path] = {}
    failed: dict[str, int] = {}
    pending = list(suite.runs)
    children: list[_Child] = []

    def finished(name: str, status: int, directory: Path | None, start: float) -> None:
        if status != 0:
            failed[name] = status
            return
        print(f"[suite] run {name} done in {time.perf_counter() - start:.1f} s: {directory}",
              flush=True)  # fmt: skip
        done[name] = directory  # type: ignore[assignment]

    def reap(block: bool = False) -> None:
        ended: list[_Child] = []
        while children:
            ended = [c for c in children if c.process.poll() is not None]
            if ended or not block:
                break
            time.sleep(0.2)
        for child in ended:
            children.remove(child)
            status = child.process.returncode
            if status != 0:
                for line in _child_errors(child.log):
                    print(line, file=sys.stderr, flush=True)
                print(f"[suite] run {child.name} failed (exit {status}); its output: {child.log}",
                      flush=True)  # fmt: skip
            finished(child.name, status, child.run_dir, child.start)

    def announce_stop() -> None:
        flight = ", ".join(c.name for c in children)
        print(
            f"[suite] stopped: run {next(iter(failed))} failed"
            + (f"; not run: {', '.join(pending)} ({KEEP_GOING} runs them)" if pending else "")
            + (f"; waiting for the runs in flight: {flight}" if flight else ""),
            flush=True,
        )

    def stop_now() -> bool:
        return bool(failed) and not keep_going

    try:
        while pending and not stop_now():
            reap()
            # the next entry runs here; free child slots take the ones after it
            while len(children) < jobs - 1 and len(pending) > 1 and not stop_now():
                other = pending.pop(1)
                other_args = run_args(suite, other, subcommand, flags)
                status, directory = _resolve_run_dir(cli_class, other_args, other)
                if directory is None:  # its config is wrong: reported, nothing started
                    finished(other, status or 1, None, time.perf_counter())
                else:
                    children.append(_start_child(script, other_args, other, directory))
            if stop_now():
                break
            name = pending.pop(0)
            args = run_args(suite, name, subcommand, flags)
            print(f"[suite] run {name}: {' '.join(args)}", flush=True)
            start = time.perf_counter()
            outcome = _run_in_process(cli_class, args, name)
            if outcome.own_process:  # Lightning launches its ranks by re-running the script
                outcome.status = _run_child(script, args, name)
            finished(name, outcome.status, outcome.run_dir, start)
        if stop_now():
            announce_stop()
        while children:
            reap(block=True)
    finally:
        for child in children:  # a signal or an error stopped the suite: stop its runs too
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.process.pid, signal.SIGTERM)
        for child in children:
            _stop(child.process)
    if failed and not keep_going:
        return next(iter(failed.values()))
    status = 0
    run_dirs = [str(done[name]) for name in suite.runs if name in done]  # the suite's order
    if suite.compare and run_dirs:
        status = _compare(run_dirs, suite.compare)
    if failed:
        print(f"[suite] failed: {', '.join(failed)}", flush=True)
        return next(iter(failed.values()))
    return status


def _compare(run_dirs: list[str], out: str) -> int:
    from lit_restore.evaluation.compare import main as compare

    # a suite may sweep the data (σ_y): compare labels the runs by data group instead of refusing
    args = [*run_dirs, "--out", out, "--allow-mismatch"]
    print(f"[suite] compare: {' '.join(args)}", flush=True)
    return report_user_errors(lambda: compare(args), bugs_raise=False, stop_on_terminate=False)
