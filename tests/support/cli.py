"""Running the ``cronkeeper`` command in-process, or as a real process when that is the subject.

A ``python -m cronkeeper`` subprocess costs an interpreter start and every import (about a
second, more on a loaded machine). Most CLI tests are about what a command prints and which
exit code it ends with, which the same entry point gives in-process: :func:`run_cli` calls
``cronkeeper.cli.main`` (the console script, with its one-line error handling) with the
arguments, environment and working directory a process would have had, captures stdout and
stderr the way Click's ``CliRunner`` does, and returns a ``CompletedProcess``. It runs the
command on its own thread, so that the command's ``asyncio.run`` works from async tests too,
and puts back the logging configuration the command changes.

:func:`run_cli_process` is the real process, for what only a process shows: exit codes as
the shell sees them, signals, an interpreter that prints no traceback, ``serve``.
"""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

__all__ = ["CLI", "clean_env", "run_cli", "run_cli_process"]

CLI = [sys.executable, "-m", "cronkeeper"]
_SETTINGS_PREFIXES = ("CRON", "DATABASE", "META_", "MIXPANEL_", "NOTION_", "ALERT_")
_lock = threading.Lock()  # one in-process command at a time: it owns os.environ and sys.std*


def clean_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without cronkeeper's settings, plus ``env``."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(_SETTINGS_PREFIXES)}
    full.update(env or {})
    return full


def run_cli_process(
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """``python -m cronkeeper ARGS`` as a real process."""
    return subprocess.run(
        [*CLI, *args],
        env=clean_env(env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


_LOGGERS = ("httpx", "httpcore", "alembic", "uvicorn", "uvicorn.access", "uvicorn.error")


@contextmanager
def _isolated(env: dict[str, str], cwd: Path | None) -> Iterator[tuple[io.StringIO, io.StringIO]]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level for name in _LOGGERS}
    saved_env = dict(os.environ)
    saved_cwd = os.getcwd()
    saved_std = sys.stdin, sys.stdout, sys.stderr
    saved_argv = sys.argv
    out, err = io.StringIO(), io.StringIO()
    try:
        os.environ.clear()
        os.environ.update(env)
        if cwd is not None:
            os.chdir(cwd)
        sys.stdin, sys.stdout, sys.stderr = io.StringIO(""), out, err
        yield out, err
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved_std
        sys.argv = saved_argv
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
        for handler in handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(level)
        for name, old in levels.items():
            logging.getLogger(name).setLevel(old)


def run_cli(
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """``cronkeeper ARGS`` in-process (``serve`` too, for the tests where it refuses to start:
    one that starts instead never returns, and ends the test at ``timeout``)."""
    from cronkeeper.cli import main

    code: list[int] = []
    failure: list[BaseException] = []

    def invoke() -> None:
        try:
            main()
        except SystemExit as exc:
            code.append(exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1))
        except BaseException as exc:  # what would have been a traceback in a real process
            failure.append(exc)
        else:
            code.append(0)

    with _lock, _isolated(clean_env(env), cwd) as (out, err):
        sys.argv = ["cronkeeper", *args]
        thread = threading.Thread(target=invoke, name="cronkeeper-cli", daemon=True)
        thread.start()
        thread.join(timeout)
        if thread.is_alive():
            raise subprocess.TimeoutExpired(["cronkeeper", *args], timeout)
    if failure:
        raise failure[0]
    return subprocess.CompletedProcess(
        ["cronkeeper", *args], code[0], out.getvalue(), err.getvalue()
    )
