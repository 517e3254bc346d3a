"""Fixtures for the search tests: a throwaway PostgreSQL server, started and stopped by pytest.

The server is a fresh cluster in a temporary folder, listening on 127.0.0.1 only (and a Unix
socket in that folder), on a free port, with ``trust`` authentication; with pytest-xdist each
worker starts its own. PostgreSQL refuses to run as root, so under root the cluster belongs
to, and runs as, the ``postgres`` user. Without PostgreSQL binaries the tests that need the
server are skipped, unless ``DICELAB_REQUIRE_POSTGRES=1`` (set by CI) makes that a failure.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

#: The superuser of the throwaway cluster; also the user in the URLs the fixtures yield.
PG_USER = "postgres"

#: Seconds to wait for the server to start or stop.
PG_TIMEOUT_S = 60


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on at the moment of the call."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _unavailable(reason: str) -> NoReturn:
    """Skip the test for want of PostgreSQL, or fail it when CI requires PostgreSQL."""
    if os.environ.get("DICELAB_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"DICELAB_REQUIRE_POSTGRES=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def _find_bindir() -> Path | None:
    """The folder holding initdb and pg_ctl: pg_config's, else the newest Debian/Ubuntu one
    under /usr/lib/postgresql, else the one on PATH."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
            candidates.append(Path(out))

    def version(folder: str) -> tuple[int, ...]:
        name = Path(folder).parent.name
        return tuple(int(part) for part in name.split(".") if part.isdigit())

    candidates += [Path(d) for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version)][
        ::-1
    ]
    initdb = shutil.which("initdb")
    if initdb is not None:
        candidates.append(Path(initdb).parent)
    for folder in candidates:
        if all((folder / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return folder
    return None


class _Cluster:
    """A PostgreSQL cluster in ``base`` run with the binaries of ``bindir``, as the ``postgres``
    user when we are root (``runuser``) and as ourselves otherwise."""

    def __init__(self, bindir: Path, base: Path) -> None:
        self.bindir = bindir
        self.base = base
        self.data = base / "data"
        self.log = base / "server.log"
        self.port = 0
        self._as_postgres = os.geteuid() == 0

    def run(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``tool`` of the PostgreSQL binaries (as the cluster's owner); raise on failure."""
        command = [str(self.bindir / tool), *args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(
            command,
            cwd=self.base,
            capture_output=True,
            text=True,
            timeout=PG_TIMEOUT_S,
            check=True,
        )

    def init(self) -> None:
        """Create the cluster: trust authentication, no fsync (throwaway data, faster)."""
        self.run(
            "initdb",
            "--pgdata",
            str(self.data),
            "--username",
            PG_USER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )

    def start(self) -> None:
        """Start the server on a free loopback port (a few tries, in case another process
        takes the port between choosing and binding it)."""
        for attempt in range(3):
            self.port = free_port()
            settings = {
                "listen_addresses": "'127.0.0.1'",
                "port": str(self.port),
                "unix_socket_directories": f"'{self.base}'",
                "fsync": "off",
                "synchronous_commit": "off",
                "full_page_writes": "off",
                "max_connections": "100",
            }
            # Written by us (root or not) to a file the cluster owner already owns: the owner
            # stays the same, and later values in postgresql.conf win over earlier ones.
            with open(self.data / "postgresql.conf", "a", encoding="utf-8") as conf:
                conf.write("".join(f"\n{key} = {value}" for key, value in settings.items()))
                conf.write("\n")
            try:
                self.restart()
                return
            except subprocess.CalledProcessError:
                if attempt == 2:
                    raise

    def stop(self, mode: str = "immediate") -> None:
        """Stop the server: at once by default (its data is thrown away anyway); ``"fast"``
        disconnects the clients and keeps every committed transaction (this throwaway
        cluster runs with ``synchronous_commit = off``, so an immediate stop can lose the
        last commits, which a production server would keep)."""
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            self.run("pg_ctl", "--pgdata", str(self.data), f"--mode={mode}", "stop")

    def restart(self) -> None:
        """Start the server with the settings last written (again after :meth:`stop`: the
        same port and data)."""
        self.run(
            "pg_ctl",
            "--pgdata",
            str(self.data),
            "--log",
            str(self.log),
            "--wait",
            f"--timeout={PG_TIMEOUT_S}",
            "start",
        )

    def log_tail(self) -> str:
        """The last lines of the server log, for failure messages."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return "(no server log)"


def _make_base() -> Path:
    """A new temporary folder for a cluster, owned by the user the server will run as."""
    if os.geteuid() != 0:
        return Path(tempfile.mkdtemp(prefix="dicelab-pg-"))
    # /tmp rather than $TMPDIR: the postgres user must be able to reach the folder.
    for parent in (tempfile.gettempdir(), "/tmp"):
        base = Path(tempfile.mkdtemp(prefix="dicelab-pg-", dir=parent))
        shutil.chown(base, user="postgres")
        reachable = subprocess.run(
            ["runuser", "-u", "postgres", "--", "test", "-w", str(base)], check=False
        )
        if reachable.returncode == 0:
            return base
        shutil.rmtree(base, ignore_errors=True)
    pytest.fail("no temporary folder that the postgres user can write to", pytrace=False)


@pytest.fixture(scope="session")
def postgres_url(postgres_cluster: _Cluster) -> str:
    """The URL of the ``postgres`` database of a throwaway PostgreSQL server on 127.0.0.1:
    ``postgresql+psycopg2://postgres@127.0.0.1:PORT/postgres``."""
    return f"postgresql+psycopg2://{PG_USER}@127.0.0.1:{postgres_cluster.port}/postgres"


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[_Cluster]:
    """A throwaway PostgreSQL server on 127.0.0.1, running; a test that stops it (to inject an
    outage) must start it again with :meth:`_Cluster.restart`. The server stops at the end of
    the session and its folder is removed."""
    try:
        import psycopg2  # noqa: F401  (the driver the URL names)
    except ImportError:
        _unavailable("the PostgreSQL driver psycopg2 is not installed (pip install -e '.[dev]')")
    bindir = _find_bindir()
    if bindir is None:
        _unavailable(
            "no PostgreSQL server binaries (initdb, pg_ctl, postgres) were found via pg_config, "
            "under /usr/lib/postgresql/*/bin or on PATH; install the postgresql package"
        )
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        _unavailable("running as root, and without runuser the server cannot run as postgres")
    base = _make_base()
    cluster = _Cluster(bindir, base)
    try:
        try:
            cluster.init()
            cluster.start()
        except (OSError, subprocess.SubprocessError) as exc:
            detail = getattr(exc, "stderr", "") or ""
            pytest.fail(
                f"cannot start the test PostgreSQL server in {base}: {exc}\n{detail}\n"
                f"{cluster.log_tail()}",
                pytrace=False,
            )
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgres_db(postgres_url: str) -> Iterator[str]:
    """The URL of a new, empty database on the test server, dropped after the test (with the
    connections the test left open)."""
    import psycopg2

    name = f"dicelab_{uuid.uuid4().hex[:12]}"
    dsn = postgres_url.replace("postgresql+psycopg2://", "postgresql://", 1)
    admin = psycopg2.connect(dsn, connect_timeout=10)
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        yield postgres_url.rsplit("/", 1)[0] + f"/{name}"
        with contextlib.suppress(psycopg2.Error), admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.close()
