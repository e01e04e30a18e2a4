"""Throwaway PostgreSQL clusters and PgBouncer poolers for the test suite.

``start_postgres()`` runs ``initdb`` into a fresh temporary directory, starts the server on a
free TCP port of 127.0.0.1 (plus a Unix socket inside that directory) and creates the
``cronkeeper_test`` database.  ``start_pgbouncer(cluster)`` puts a PgBouncer in transaction
pooling mode in front of it, the way Supabase's pooler does.

PostgreSQL and PgBouncer both refuse to run as root.  When the tests run as root (CI, this
machine) every server command runs as the ``postgres`` OS user that the Debian package
creates: one-shot commands through ``runuser -u postgres --``, the long-running PgBouncer
through ``subprocess.Popen(user=..., group=...)`` so that the process we hold *is* PgBouncer
and can be signalled directly.  Run as any other user, everything runs as that user.

Every cluster and pooler registers an ``atexit`` backstop, so a failing test (or a forgotten
``cleanup()``) does not leave a server running after the interpreter exits.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import quote

__all__ = [
    "DEFAULT_DB",
    "PgBouncer",
    "PgCluster",
    "PgHarnessError",
    "PsqlError",
    "find_pg_bin",
    "find_pgbouncer",
    "free_port",
    "start_pgbouncer",
    "start_postgres",
    "wait_for_port",
]

DEFAULT_DB = "cronkeeper_test"
SUPERUSER = "postgres"
LOOPBACK = "127.0.0.1"
PG_BIN_ENV = "CRONKEEPER_TEST_PG_BIN"

_START_TIMEOUT = 30.0
_STOP_TIMEOUT = 30.0
# Longest Unix socket path (sun_path is 108 bytes with the terminating NUL on Linux).
_MAX_SOCKET_PATH = 107


class PgHarnessError(RuntimeError):
    """The test harness could not find, start, stop or talk to PostgreSQL or PgBouncer."""


class PsqlError(PgHarnessError):
    """``psql`` exited non-zero; ``stderr`` holds PostgreSQL's message."""

    def __init__(self, message: str, *, returncode: int, stderr: str) -> None:
        super().__init__(message)
        self.returncode = returncode
        self.stderr = stderr


# --------------------------------------------------------------------------------------------
# Locating binaries, ports
# --------------------------------------------------------------------------------------------


def _version_key(path: Path) -> tuple[int, ...]:
    # /usr/lib/postgresql/<version>/bin -> numeric version, so that 15 sorts after 9.6.
    return tuple(int(part) for part in re.findall(r"\d+", path.parent.name)) or (0,)


def _is_pg_bin(path: Path) -> bool:
    return all(os.access(path / tool, os.X_OK) for tool in ("initdb", "pg_ctl", "postgres"))


def find_pg_bin() -> Path:
    """Return the directory holding ``initdb``, ``pg_ctl``, ``postgres`` and ``psql``.

    Order: ``$CRONKEEPER_TEST_PG_BIN`` if set, the newest ``/usr/lib/postgresql/*/bin``, then
    the directory ``initdb`` on ``PATH`` really lives in (symlinks resolved, so that
    ``/usr/local/bin/initdb -> /usr/lib/postgresql/15/bin/initdb`` finds the ``psql`` next
    to it).
    """
    override = os.environ.get(PG_BIN_ENV)
    if override:
        path = Path(override)
        if not _is_pg_bin(path):
            raise PgHarnessError(
                f"{PG_BIN_ENV}={override} does not contain executable initdb, pg_ctl and postgres"
            )
        return path
    versioned = sorted(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin") if _is_pg_bin(p)),
        key=_version_key,
    )
    if versioned:
        return versioned[-1]
    initdb = shutil.which("initdb")
    if initdb is not None:
        path = Path(initdb).resolve().parent
        if _is_pg_bin(path):
            return path
    raise PgHarnessError(
        "PostgreSQL server binaries not found: no /usr/lib/postgresql/*/bin and no initdb on "
        "PATH. Run `bash scripts/ensure-system-deps.sh` (or `apt-get install postgresql`), or "
        f"point {PG_BIN_ENV} at the directory holding initdb."
    )


def find_pgbouncer() -> Path:
    """Return the ``pgbouncer`` executable (``PATH`` first, then ``/usr/sbin``)."""
    found = shutil.which("pgbouncer") or shutil.which(
        "pgbouncer", path="/usr/sbin:/usr/local/sbin:/usr/bin"
    )
    if found is None:
        raise PgHarnessError(
            "pgbouncer not found. Run `bash scripts/ensure-system-deps.sh` "
            "(or `apt-get install pgbouncer`)."
        )
    return Path(found)


def free_port(host: str = LOOPBACK) -> int:
    """Ask the kernel for a currently free TCP port on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    """Block until a TCP connection to ``host:port`` succeeds, else raise ``TimeoutError``."""
    deadline = time.monotonic() + timeout
    while not _port_open(host, port):
        if time.monotonic() >= deadline:
            raise TimeoutError(f"nothing accepted connections on {host}:{port} within {timeout}s")
        time.sleep(0.05)


# --------------------------------------------------------------------------------------------
# Running things as the postgres OS user
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Account:
    """Who runs the servers: ``postgres`` when we are root, otherwise ourselves."""

    name: str
    uid: int
    gid: int
    switch: bool  # True when we are root and must drop to ``name``

    @classmethod
    def detect(cls) -> _Account:
        if os.geteuid() != 0:
            entry = pwd.getpwuid(os.geteuid())
            return cls(entry.pw_name, entry.pw_uid, entry.pw_gid, switch=False)
        try:
            entry = pwd.getpwnam(SUPERUSER)
        except KeyError:
            raise PgHarnessError(
                "running as root, but there is no `postgres` OS user to run PostgreSQL as "
                "(PostgreSQL refuses to run as root). Install the Debian `postgresql` package "
                "(scripts/ensure-system-deps.sh) or run the tests as an unprivileged user."
            ) from None
        if shutil.which("runuser") is None:
            raise PgHarnessError("running as root but `runuser` (util-linux) is not installed")
        return cls(entry.pw_name, entry.pw_uid, entry.pw_gid, switch=True)

    def argv(self, argv: list[str]) -> list[str]:
        return ["runuser", "-u", self.name, "--", *argv] if self.switch else argv

    def give(self, path: Path) -> None:
        if self.switch:
            os.chown(path, self.uid, self.gid)

    def run(
        self,
        argv: list[str],
        *,
        cwd: Path,
        input: str | None = None,
        timeout: float = 60.0,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(argv),
            cwd=cwd,  # never inherit a cwd (e.g. /root) the postgres user cannot enter
            env=_clean_env(),
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def _clean_env() -> dict[str, str]:
    # PGHOST, PGOPTIONS, PGDATABASE... from the developer's shell must not leak into the harness.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.setdefault("LC_ALL", "C")  # English server messages; initdb gets --locale=C anyway
    return env


def _make_root(prefix: str, base_dir: Path | None, account: _Account) -> Path:
    if base_dir is not None:
        base_dir.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix=prefix, dir=base_dir))
    account.give(root)
    if account.switch:
        probe = account.run(["test", "-w", str(root), "-a", "-x", str(root)], cwd=Path("/"))
        if probe.returncode != 0:
            shutil.rmtree(root, ignore_errors=True)
            raise PgHarnessError(
                f"the `{account.name}` OS user cannot reach {root}: some parent directory is "
                f"not traversable by it (pytest's tmp_path under /tmp/pytest-of-root is 0700). "
                f"Pass base_dir=None (system temp dir) or a world-traversable directory."
            )
    return root


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<no log: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A killed postmaster is re-parented to PID 1, which may not reap it: a zombie is dead.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] != "Z"


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _make_url(host: str, port: int, db: str, user: str, password: str | None) -> str:
    auth = quote(user, safe="")
    if password is not None:
        auth += ":" + quote(password, safe="")
    return f"postgresql://{auth}@{host}:{port}/{quote(db, safe='')}"


# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------


class PgCluster:
    """One throwaway PostgreSQL cluster: data dir, socket and log all under ``root``.

    ``stop()`` / ``start()`` simulate an outage: the same data directory comes back on the same
    port, so URLs handed out before stay valid.
    """

    host: str = LOOPBACK

    def __init__(
        self, *, root: Path, port: int, bin_dir: Path, account: _Account, db: str = DEFAULT_DB
    ) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.socket_dir = root
        self.log_file = root / "postgresql.log"
        self.port = port
        self.bin_dir = bin_dir
        self.db = db
        self._account = account
        self._closed = False
        self._paused: list[int] = []
        atexit.register(self._atexit)

    def __repr__(self) -> str:
        return f"PgCluster(port={self.port}, root={str(self.root)!r})"

    # -- addresses -------------------------------------------------------------------------

    def url(self, db: str = DEFAULT_DB, user: str = SUPERUSER, password: str | None = None) -> str:
        """``postgresql://postgres@127.0.0.1:PORT/DB`` (plain libpq URL, no driver suffix)."""
        return _make_url(self.host, self.port, db, user, password)

    # -- lifecycle -------------------------------------------------------------------------

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` of the server log (for failure messages)."""
        return _tail(self.log_file, lines)

    def _tool(self, name: str) -> str:
        return str(self.bin_dir / name)

    def _postmaster_pid(self) -> int | None:
        try:
            first = (self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
            return int(first.strip())
        except (OSError, ValueError):
            return None

    def is_running(self) -> bool:
        """True while the postmaster of this data directory is alive."""
        pid = self._postmaster_pid()
        return pid is not None and _pid_alive(pid)

    def start(self, timeout: float = _START_TIMEOUT) -> None:
        """Start (or restart after ``stop()``) the server on ``self.port``; no-op if running."""
        if self._closed:
            raise PgHarnessError(f"{self!r} was cleaned up; start a new cluster instead")
        if self.is_running():
            return
        offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        argv = [
            self._tool("pg_ctl"),
            "start",
            "-w",
            "-t",
            str(int(timeout)),
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            "-o",
            f"-p {self.port}",
        ]
        try:
            result = self._account.run(argv, cwd=self.root, timeout=timeout + 10)
            ok = result.returncode == 0
            detail = (result.stdout + result.stderr).strip()
        except subprocess.TimeoutExpired:
            ok, detail = False, "pg_ctl did not return"
        if ok:
            try:
                wait_for_port(self.host, self.port, timeout=5)
            except TimeoutError as exc:
                ok, detail = False, str(exc)
        if not ok:
            if self.is_running():  # half-started: do not leak it
                self._force_stop()
            new_log = self._log_since(offset)
            raise PgHarnessError(
                f"PostgreSQL did not start on port {self.port} within {timeout}s: {detail}\n"
                f"--- tail of {self.log_file} ---\n{new_log}"
            )

    def _log_since(self, offset: int) -> str:
        try:
            with self.log_file.open("rb") as fh:
                fh.seek(offset)
                text = fh.read().decode(errors="replace")
        except OSError:
            return _tail(self.log_file)
        return "\n".join(text.splitlines()[-40:])

    def stop(self, mode: str = "fast", timeout: float = _STOP_TIMEOUT) -> None:
        """Stop the server (``mode``: ``smart``, ``fast`` or ``immediate`` = crash-like).

        Never leaves it running: a stop that fails or times out escalates to ``immediate``,
        then to SIGKILL of the postmaster.  No-op when already stopped.  ``fast`` and ``smart``
        checkpoint, so committed data survives; ``immediate`` is a crash, and with
        ``synchronous_commit=off`` the last ~0.6 s of commits may be lost (run ``CHECKPOINT``
        first if a test needs them).
        """
        if mode not in {"smart", "fast", "immediate"}:
            raise ValueError(f"unknown pg_ctl stop mode {mode!r}")
        if not self.is_running():
            return
        if self._paused:  # a stopped postmaster would not hear pg_ctl
            self.resume()
        self._pg_ctl_stop(mode, timeout)
        if self.is_running():
            self._force_stop()

    def _pg_ctl_stop(self, mode: str, timeout: float) -> None:
        argv = [
            self._tool("pg_ctl"),
            "stop",
            "-w",
            "-t",
            str(int(timeout)),
            "-m",
            mode,
            "-D",
            str(self.data_dir),
        ]
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._account.run(argv, cwd=self.root, timeout=timeout + 10)

    def _force_stop(self) -> None:
        self._pg_ctl_stop("immediate", 10)
        pid = self._postmaster_pid()
        if pid is None or not _pid_alive(pid):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        # A SIGKILLed postmaster leaves its pid file behind; drop it so is_running() is honest
        # and a later start() is not confused.
        with contextlib.suppress(OSError):
            (self.data_dir / "postmaster.pid").unlink()

    def restart(self) -> None:
        self.stop()
        self.start()

    def _server_pids(self) -> list[int]:
        """The postmaster first, then every process it forked (backends, walwriter, …)."""
        postmaster = self._postmaster_pid()
        if postmaster is None or not _pid_alive(postmaster):
            raise PgHarnessError(f"{self!r} is not running")
        children: list[int] = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                if int(stat.read_text().rpartition(")")[2].split()[1]) == postmaster:
                    children.append(int(stat.parent.name))
        return [postmaster, *children]

    def pause(self) -> None:
        """SIGSTOP the postmaster and its backends: a database that hangs instead of refusing.

        Connections stay open and new ones are accepted by the kernel, but nothing answers —
        what a network partition or a stalled host looks like to a client. ``resume()`` it.
        """
        self._paused = self._server_pids()
        for pid in self._paused:  # the postmaster first, so it forks nothing meanwhile
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT what ``pause()`` stopped (and anything the postmaster forked since)."""
        pids = self._paused
        with contextlib.suppress(PgHarnessError):
            pids = [*pids, *self._server_pids()]
        for pid in reversed(pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self._paused = []

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        self.pause()
        try:
            yield
        finally:
            self.resume()

    def cleanup(self) -> None:
        """Stop the server and delete its directory.  Idempotent."""
        if self._closed:
            return
        try:
            self.stop()
        finally:
            self._closed = True
            shutil.rmtree(self.root, ignore_errors=True)
            atexit.unregister(self._atexit)

    def _atexit(self) -> None:
        try:
            self.cleanup()
        except Exception as exc:  # interpreter is exiting: report, never raise
            print(f"tests.support.pg: could not clean up {self!r}: {exc}", file=sys.stderr)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()

    # -- SQL -------------------------------------------------------------------------------

    def psql(self, sql: str, db: str = DEFAULT_DB, timeout: float = 60.0) -> str:
        """Run ``sql`` (one or more statements) with psql as the postgres user.

        ``ON_ERROR_STOP`` is on; output is unaligned tuples only (``-At``), e.g. ``"1"`` for
        ``SELECT 1``, rows separated by newlines and columns by ``|``.  Raises ``PsqlError``.
        """
        argv = [
            self._tool("psql"),
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            str(self.socket_dir),
            "-p",
            str(self.port),
            "-U",
            SUPERUSER,
            "-d",
            db,
            "-f",
            "-",
        ]
        result = self._account.run(argv, cwd=self.root, input=sql, timeout=timeout)
        if result.returncode != 0:
            raise PsqlError(
                f"psql on {db!r} exited {result.returncode}: {result.stderr.strip()}",
                returncode=result.returncode,
                stderr=result.stderr,
            )
        return result.stdout.rstrip("\n")

    def create_database(self, name: str) -> None:
        self.psql(f"CREATE DATABASE {_quote_ident(name)}", db="postgres")

    def drop_database(self, name: str) -> None:
        """Drop ``name`` if it exists, disconnecting its sessions first."""
        self.psql(f"DROP DATABASE IF EXISTS {_quote_ident(name)} WITH (FORCE)", db="postgres")


def _server_settings(socket_dir: Path) -> dict[str, str]:
    escaped = str(socket_dir).replace("'", "''")
    return {
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "listen_addresses": f"'{LOOPBACK}'",
        "unix_socket_directories": f"'{escaped}'",
        "max_connections": "200",
        "shared_buffers": "32MB",
        "timezone": "'UTC'",
        "lc_messages": "'C'",
    }


def start_postgres(
    base_dir: Path | None = None,
    *,
    settings: Mapping[str, str] | None = None,
    db: str = DEFAULT_DB,
) -> PgCluster:
    """``initdb`` + start a throwaway cluster and create ``db`` (``cronkeeper_test``).

    ``base_dir``: parent of the cluster's temp directory (default: the system temp dir); the
    ``postgres`` user must be able to traverse it.  ``settings``: extra ``postgresql.conf``
    lines, values written verbatim (quote strings yourself: ``{"statement_timeout": "'5s'"}``).
    """
    bin_dir = find_pg_bin()
    account = _Account.detect()
    root = _make_root("cronkeeper-pg-", base_dir, account)
    try:
        socket_path = root / ".s.PGSQL.65535"
        if len(str(socket_path)) > _MAX_SOCKET_PATH:
            raise PgHarnessError(f"{root} is too long for a Unix socket path; use a shorter base")
        init = account.run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(root / "data"),
                "-A",
                "trust",
                "-U",
                SUPERUSER,
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ],
            cwd=root,
            timeout=120,
        )
        if init.returncode != 0:
            raise PgHarnessError(f"initdb failed ({init.returncode}):\n{init.stdout}{init.stderr}")
        conf = _server_settings(root) | dict(settings or {})
        with (root / "data" / "postgresql.conf").open("a") as fh:  # keeps postgres ownership
            fh.write("\n# cronkeeper test harness\n")
            fh.writelines(f"{key} = {value}\n" for key, value in conf.items())
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise

    cluster = PgCluster(root=root, port=free_port(), bin_dir=bin_dir, account=account, db=db)
    try:
        # free_port() is racy (another process may grab the port before the postmaster binds
        # it): retry on a fresh port when that is what went wrong.
        for attempt in range(3):
            try:
                cluster.start()
                break
            except PgHarnessError as exc:
                if attempt == 2 or "could not bind" not in str(exc):
                    raise
                cluster.port = free_port()
        cluster.create_database(db)
    except BaseException:
        cluster.cleanup()
        raise
    return cluster


# --------------------------------------------------------------------------------------------
# PgBouncer
# --------------------------------------------------------------------------------------------


class PgBouncer:
    """A PgBouncer in front of a ``PgCluster`` (transaction pooling by default)."""

    host: str = LOOPBACK

    def __init__(
        self, *, root: Path, port: int, cluster: PgCluster, process: subprocess.Popen[bytes]
    ) -> None:
        self.root = root
        self.ini_path = root / "pgbouncer.ini"
        self.log_file = root / "pgbouncer.log"
        self.port = port
        self.cluster = cluster
        self.process = process
        self._closed = False
        atexit.register(self._atexit)

    def __repr__(self) -> str:
        return f"PgBouncer(port={self.port}, backend_port={self.cluster.port})"

    def url(self, db: str = DEFAULT_DB, user: str = SUPERUSER, password: str | None = None) -> str:
        """``postgresql://postgres@127.0.0.1:BOUNCER_PORT/DB``."""
        return _make_url(self.host, self.port, db, user, password)

    def is_running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_file, lines)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (immediate shutdown), SIGKILL after ``timeout``.  Idempotent."""
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def cleanup(self) -> None:
        if self._closed:
            return
        try:
            self.stop()
        finally:
            self._closed = True
            shutil.rmtree(self.root, ignore_errors=True)
            atexit.unregister(self._atexit)

    def _atexit(self) -> None:
        try:
            self.cleanup()
        except Exception as exc:
            print(f"tests.support.pg: could not clean up {self!r}: {exc}", file=sys.stderr)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()


def _pgbouncer_ini(cluster: PgCluster, options: Mapping[str, str | int]) -> str:
    lines = [
        "[databases]",
        f"* = host={cluster.host} port={cluster.port}",
        "",
        "[pgbouncer]",
        *(f"{key} = {value}" for key, value in options.items()),
        "",
    ]
    return "\n".join(lines)


def start_pgbouncer(
    cluster: PgCluster,
    base_dir: Path | None = None,
    *,
    users: Iterable[str] = (SUPERUSER,),
    settings: Mapping[str, str | int] | None = None,
    timeout: float = 10.0,
) -> PgBouncer:
    """Start PgBouncer (``pool_mode = transaction``) on a free port in front of ``cluster``.

    ``users``: roles allowed through (written to the auth_file with empty passwords; with
    ``auth_type = trust`` a role must still be listed there).  ``settings``: overrides/extra
    ``[pgbouncer]`` options, e.g. ``{"pool_mode": "session"}``.
    """
    binary = find_pgbouncer()
    account = _Account.detect()
    root = _make_root("cronkeeper-pgbouncer-", base_dir, account)
    port = free_port()
    auth_file = root / "userlist.txt"
    auth_file.write_text("".join(f'"{u.replace(chr(34), chr(34) * 2)}" ""\n' for u in users))
    options: dict[str, str | int] = {
        "listen_addr": LOOPBACK,
        "listen_port": port,
        "unix_socket_dir": str(root),
        "auth_type": "trust",
        "auth_file": str(auth_file),
        "admin_users": SUPERUSER,
        "stats_users": SUPERUSER,
        "pool_mode": "transaction",
        "max_client_conn": 200,
        "default_pool_size": 20,
        "ignore_startup_parameters": "extra_float_digits,options",
        # After an outage, retry the server login after 1 s instead of the default 15 s.
        "server_login_retry": 1,
        "server_connect_timeout": 5,
        "query_wait_timeout": 30,
        "log_connections": 0,
        "log_disconnections": 0,
    }
    options.update(settings or {})
    ini = root / "pgbouncer.ini"
    ini.write_text(_pgbouncer_ini(cluster, options))
    for path in (auth_file, ini):
        account.give(path)

    log = (root / "pgbouncer.log").open("ab")
    try:
        # Popen(user=...) rather than runuser: the child we hold is PgBouncer itself.
        process = subprocess.Popen(
            [str(binary), str(ini)],
            cwd=root,
            env=_clean_env() | {"HOME": str(root)},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in the terminal must not reach it directly
            user=account.uid if account.switch else None,
            group=account.gid if account.switch else None,
            extra_groups=[] if account.switch else None,
        )
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    finally:
        log.close()

    bouncer = PgBouncer(root=root, port=port, cluster=cluster, process=process)
    deadline = time.monotonic() + timeout
    while not _port_open(LOOPBACK, port):
        if process.poll() is not None or time.monotonic() >= deadline:
            tail = bouncer.log_tail()
            code = process.poll()
            bouncer.cleanup()
            state = f"exited with {code}" if code is not None else f"not listening after {timeout}s"
            raise PgHarnessError(f"pgbouncer on port {port} {state}:\n{tail}")
        time.sleep(0.05)
    return bouncer
