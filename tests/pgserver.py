"""A real PostgreSQL server for the tests: Debian's `initdb` + `pg_ctl` into a temporary folder, loopback only.

`.ci/run` installs Debian's `postgresql` package; without it `PgServer.available()` says why and the tests skip.
As root (CI), the server runs as the unprivileged user `nobody` (PostgreSQL refuses to run as root), its folder
handed to that user; trust authentication on 127.0.0.1 and a socket inside the folder, fsync off (a test server).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
from pathlib import Path


def _binary(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    return found[-1] if found else shutil.which(name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    """One server in a fresh temporary folder: :meth:`start`, :meth:`url`, :meth:`restart`, :meth:`stop` (removes it).

    The folder is made with ``mkdtemp`` in the system's temporary folder, not pytest's (which is private to root,
    so ``nobody`` could not reach a data folder inside it).
    """

    def __init__(self) -> None:
        import tempfile

        self.folder = Path(tempfile.mkdtemp(prefix="hwnas-pg-"))
        self.data = self.folder / "data"
        self.port = _free_port()
        self.initdb, self.pg_ctl = _binary("initdb"), _binary("pg_ctl")

    @staticmethod
    def available() -> str | None:
        """None when a server can be started here, else why not (the skip reason)."""
        if not _binary("initdb") or not _binary("pg_ctl"):
            return "PostgreSQL's initdb/pg_ctl not found (Debian package postgresql; .ci/run installs it)"
        if os.geteuid() == 0 and not shutil.which("runuser"):
            return "running as root without runuser: PostgreSQL refuses to run as root"
        try:
            import psycopg2  # noqa: F401
        except ImportError:
            return "psycopg2 is not installed (pip install 'hwnas[cluster]')"
        return None

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = list(args)
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "nobody", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=120)

    def start(self) -> PgServer:
        self.folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.folder, "nobody")
        if not self.data.exists():
            self._run(self.initdb, "-D", str(self.data), "-A", "trust", "-U", "hwnas", "--no-sync", "-E", "UTF8")
        self._ctl("start")
        self.database("hwnas")
        return self

    def database(self, name: str) -> str:
        """Create the database ``name`` unless it exists; its URL (a study per test lives in its own database)."""
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user="hwnas", dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{name}"')
        conn.close()
        return self.url(name)

    def _ctl(self, what: str) -> None:
        opts = (f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=50")
        args = [self.pg_ctl, "-D", str(self.data), "-l", str(self.folder / "server.log"), "-w", "-t", "60"]
        if what == "stop":
            self._run(*args, "-m", "fast", "stop", check=False)
        else:
            self._run(*args, "-o", opts, what)

    def restart(self) -> None:
        self._ctl("restart")

    def stop(self, *, remove: bool = True) -> None:
        """Stop the server; ``remove``: delete its folder too (else :meth:`start` brings the same data back)."""
        self._ctl("stop")
        if remove:
            shutil.rmtree(self.folder, ignore_errors=True)

    def url(self, database: str = "hwnas") -> str:
        return f"postgresql://hwnas@127.0.0.1:{self.port}/{database}"
