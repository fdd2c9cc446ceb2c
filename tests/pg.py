"""A real PostgreSQL server for the store tests: `initdb`/`pg_ctl` in a temporary directory, a free port, a unix socket.

`pg_server` (session scope) starts it once and stops it at the end; `pg_url` (per test) creates a fresh database on it.
As root the server runs as the `postgres` user (else `nobody`) through `runuser`, since PostgreSQL refuses to run as root.
Tests skip, saying why, only when no PostgreSQL binaries are installed or no unprivileged user exists.
"""
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest


def pg_bindir():
    "The folder of initdb/pg_ctl: $PG_BINDIR, PATH, then Debian's /usr/lib/postgresql/<newest>/bin; None if absent."
    if os.environ.get("PG_BINDIR"):
        return Path(os.environ["PG_BINDIR"])
    if shutil.which("initdb") and shutil.which("pg_ctl"):
        return Path(shutil.which("initdb")).parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def _runas():
    "(prefix for commands, uid, gid): as root, run as postgres (or nobody); else as ourselves."
    if os.geteuid() != 0:
        return [], None, None
    for name in ("postgres", "nobody"):
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            continue
        if shutil.which("runuser"):
            return ["runuser", "-u", name, "--"], pw.pw_uid, pw.pw_gid
    return None, None, None


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PGServer:
    "A throwaway PostgreSQL cluster: start(), url(dbname), new_database(), stop()."
    def __init__(self, bindir):
        self.bindir, self.prefix, self.uid, self.gid = Path(bindir), *_runas()
        self.root = Path(tempfile.mkdtemp(prefix="im-pg-"))
        self.data, self.sock, self.log = self.root / "data", self.root / "sock", self.root / "server.log"
        self.port, self._n = _free_port(), itertools.count()

    def _run(self, *args):
        cmd = self.prefix + [str(self.bindir / args[0]), *map(str, args[1:])]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if r.returncode:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}\n{log[-2000:]}")
        return r

    def start(self):
        self.sock.mkdir()
        if self.uid is not None:
            for p in (self.root, self.sock):
                os.chown(p, self.uid, self.gid)
        self._run("initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        opts = f"-p {self.port} -k {self.sock} -c listen_addresses='' -c max_connections=50"
        self._run("pg_ctl", "-D", self.data, "-o", opts, "-l", self.log, "-w", "-t", "60", "start")
        return self

    def url(self, db="postgres"):
        return f"postgresql://postgres@/{db}?host={self.sock}&port={self.port}"

    def new_database(self):
        import psycopg
        name = f"t{next(self._n)}"
        with psycopg.connect(self.url(), autocommit=True) as c:
            c.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self):
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server():
    "A PostgreSQL server for the whole session, stopped (and its folder removed) at the end."
    pytest.importorskip("psycopg", reason="psycopg 3 is not installed: pip install 'psycopg[binary]>=3.1,<4'")
    bindir = pg_bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL binaries (initdb/pg_ctl): apt-get install postgresql, or set PG_BINDIR")
    if _runas()[0] is None:
        pytest.skip("running as root and no unprivileged user (postgres/nobody) or runuser to start PostgreSQL as")
    server = PGServer(bindir).start()
    yield server
    server.stop()


@pytest.fixture
def pg_url(pg_server):
    "A fresh, empty database on the session's server."
    return pg_server.new_database()
