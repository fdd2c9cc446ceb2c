"""Start JupyterLab on the notebooks, the way `make lab` does (and `tests/test_lab.py` checks).

Binds 127.0.0.1 unless `--ip` says otherwise, passes `--allow-root` only when running as root, and prints
the URL (with its token) before the server starts. `python tools/lab.py [--port N] [--ip ADDR] [--token T]`.
"""
from pathlib import Path
import argparse
import os
import secrets
import sys

ROOT = Path(__file__).resolve().parents[1]


def command(port: int = 8888, ip: str = "127.0.0.1", token: str | None = None, root: Path = ROOT) -> tuple[list, str]:
    "The server's argv and the URL a reader opens."
    token = token or secrets.token_hex(16)
    argv = [sys.executable, "-m", "jupyterlab", f"--notebook-dir={root / 'nbs'}", f"--ServerApp.ip={ip}",
            f"--ServerApp.port={port}", "--ServerApp.port_retries=0", "--no-browser",
            f"--IdentityProvider.token={token}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        argv.append("--allow-root")  # containers and cloud notebook machines often run as root
    host = f"[{ip}]" if ":" in ip else ip
    return argv, f"http://{host}:{port}/lab?token={token}"


def main(args=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=int(os.environ.get("LAB_PORT", 8888)))
    p.add_argument("--ip", default=os.environ.get("LAB_IP", "127.0.0.1"))
    p.add_argument("--token", default=os.environ.get("LAB_TOKEN"))
    a = p.parse_args(args)
    argv, url = command(a.port, a.ip, a.token)
    print(f"JupyterLab on the notebooks: {url}", flush=True)
    os.execv(argv[0], argv)


if __name__ == "__main__":
    sys.exit(main())
