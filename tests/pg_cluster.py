"""A real PostgreSQL cluster in a temporary folder, for the tests that run on PostgreSQL.

Debian's ``postgresql`` package provides the binaries (``/usr/lib/postgresql/*/bin``; .ci/run
installs it). As root, the cluster runs as the ``postgres`` system user (initdb refuses root).
It listens on a unix socket in the folder and on a free port of 127.0.0.1, trusts local
connections, and trades durability for speed (fsync off): the tests kill asstctl, never PostgreSQL.

Without the binaries (or psycopg) tests that need the cluster are skipped, unless
``ASSTCTL_REQUIRE_POSTGRES=1`` (CI sets it): then they fail.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

REQUIRE_ENV = "ASSTCTL_REQUIRE_POSTGRES"
SUPERUSER = "asstctl"


def find_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def missing() -> str | None:
    """Why no cluster can be started here (None: it can)."""
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        return "psycopg / psycopg_pool are not installed (pip install -e '.[test]')"
    if find_bin() is None:
        return "PostgreSQL binaries (initdb, pg_ctl) not found: apt-get install postgresql"
    if os.getuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root but there is no 'postgres' user to run the cluster as"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Cluster:
    def __init__(self) -> None:
        self.bin = find_bin()
        self.dir = Path(tempfile.mkdtemp(prefix="asstctl-pg-"))
        self.data, self.sockets = self.dir / "data", self.dir / "sockets"
        self.sockets.mkdir()
        self.port = free_port()
        self._as_user: list[str] = []
        if os.getuid() == 0:
            user = pwd.getpwnam("postgres")
            for path in (self.dir, self.sockets):
                os.chown(path, user.pw_uid, user.pw_gid)
            self._as_user = ["runuser", "-u", "postgres", "--"]

    def _run(self, *command: str) -> None:
        result = subprocess.run([*self._as_user, *command], capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")

    def start(self) -> "Cluster":
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "--auth=trust",
                  "--no-sync", "-E", "UTF8", "--locale=C")
        options = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.sockets} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 "
                   "-c shared_buffers=64MB")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "log"), "-w",
                  "-t", "60", "-o", options, "start")
        self._run(str(self.bin / "createdb"), "-h", str(self.sockets), "-p", str(self.port), "-U", SUPERUSER,
                  "asstctl")
        return self

    @property
    def url(self) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/asstctl"

    def schema_url(self, schema: str) -> str:
        """The database, with ``schema`` first on the search path (one per test: cheap isolation)."""
        return f"{self.url}?options=-csearch_path%3D{schema}"

    def create_schema(self, schema: str) -> str:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        return self.schema_url(schema)

    def drop_schema(self, schema: str) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    def stop(self) -> None:
        try:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
