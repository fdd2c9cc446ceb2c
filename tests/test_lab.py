"""`make lab`'s server, started on a free port: /lab loads, a notebook opens through the contents API and its
first cells run in a kernel through the server's websocket, as a reader clicking "run" would."""
from pathlib import Path
import json
import socket
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
jupyterlab = pytest.importorskip("jupyterlab", reason="jupyterlab is absent: it is in settings.ini's dev_requirements "
                                                      "(pip install -e '.[dev]'), or `make lab` installs it")
import lab  # noqa: E402  tools/lab.py, the command `make lab` runs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url, token, data=None, method=None):
    req = urllib.request.Request(url, data=None if data is None else json.dumps(data).encode(), method=method,
                                 headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, r.read()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port, token = _free_port(), uuid.uuid4().hex
    argv, url = lab.command(port=port, token=token)
    assert "--ServerApp.ip=127.0.0.1" in argv
    import os
    assert ("--allow-root" in argv) == (os.geteuid() == 0)
    home = tmp_path_factory.mktemp("home")  # no user settings or runtime files of the machine
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(home / "rt"), "JUPYTER_CONFIG_DIR": str(home / "cfg"),
           "JUPYTERLAB_SETTINGS_DIR": str(home / "ls"), "JUPYTERLAB_WORKSPACES_DIR": str(home / "ws"),
           "PYTHONPATH": str(ROOT)}
    log = open(home / "server.log", "w+")
    # the command `make lab` runs (tools/lab.py prints the URL, then becomes the server), on a free port
    proc = subprocess.Popen([sys.executable, str(ROOT / "tools" / "lab.py"), "--port", str(port), "--token", token],
                            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            if _get(f"{base}/api/status", token)[0] == 200:
                break
        except OSError:
            time.sleep(0.5)
        if proc.poll() is not None:
            break
    if proc.poll() is not None:
        log.seek(0)
        pytest.fail(f"the lab server exited: {log.read()[-2000:]}")
    log.seek(0)
    printed = log.read()
    assert f"JupyterLab on the notebooks: {url}" in printed, printed[-2000:]
    yield base, token, url
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def test_make_lab_runs_the_tested_command():
    "`make lab` runs tools/lab.py (the command the server fixture starts), so what is tested here is what a reader gets."
    make = (ROOT / "Makefile").read_text()
    recipe = make[make.index("\nlab:"):].split("\n\n")[0]
    assert "tools/lab.py" in recipe and "--allow-root" not in recipe and "0.0.0.0" not in recipe


def test_url_printed_is_local_with_token():
    argv, url = lab.command(port=8899, token="abc")
    assert url == "http://127.0.0.1:8899/lab?token=abc"
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "lab.py"), "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--port" in out.stdout


def test_lab_page_loads(server):
    base, token, _ = server
    status, body = _get(f"{base}/lab", token)
    assert status == 200 and b"JupyterLab" in body


def _run_cells(base, token, kernel_id, codes):
    "Execute each code through the server's kernel websocket; return (status, outputs text) per cell."
    from tornado.ioloop import IOLoop
    from tornado.websocket import websocket_connect
    from tornado.httpclient import HTTPRequest

    async def go():
        ws_url = base.replace("http", "ws") + f"/api/kernels/{kernel_id}/channels"
        ws = await websocket_connect(HTTPRequest(ws_url, headers={"Authorization": f"token {token}"}))
        session, results = uuid.uuid4().hex, []
        for code in codes:
            mid = uuid.uuid4().hex
            ws.write_message(json.dumps({
                "header": {"msg_id": mid, "username": "test", "session": session, "msg_type": "execute_request",
                           "version": "5.3", "date": ""},
                "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
                "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                            "allow_stdin": False, "stop_on_error": True}}))
            out, status, idle = [], None, False
            deadline = time.time() + 120
            while status is None or not idle:
                msg = await ws.read_message()
                assert msg is not None, "the kernel websocket closed"
                m = json.loads(msg)
                if m.get("parent_header", {}).get("msg_id") != mid:
                    continue
                t = m["header"]["msg_type"]
                if t == "execute_reply":
                    status = m["content"]["status"]
                elif t == "status" and m["content"]["execution_state"] == "idle":
                    idle = True
                elif t == "stream":
                    out.append(m["content"]["text"])
                elif t in ("execute_result", "display_data"):
                    out.append(m["content"]["data"].get("text/plain", ""))
                elif t == "error":
                    out.append(f"{m['content']['ename']}: {m['content']['evalue']}")
                assert time.time() < deadline, f"cell did not finish: {code[:200]}"
            results.append((status, "".join(out)))
        ws.close()
        return results
    return IOLoop.current().run_sync(go, timeout=600)


def test_notebook_opens_and_first_cells_run(server):
    base, token, _ = server
    name = sorted(p.name for p in (ROOT / "nbs").glob("[0-9]*.ipynb"))[0]
    status, body = _get(f"{base}/api/contents/{name}?content=1&type=notebook", token)
    model = json.loads(body)
    assert status == 200 and model["type"] == "notebook"
    code = [c["source"] for c in model["content"]["cells"] if c["cell_type"] == "code"][:4]
    assert code, f"{name} has no code cells"
    status, body = _get(f"{base}/api/sessions", token, method="POST", data={
        "path": name, "type": "notebook", "name": name, "kernel": {"name": "python3"}})
    kernel_id = json.loads(body)["kernel"]["id"]
    try:
        results = _run_cells(base, token, kernel_id, code + ["import interest_migration, os\n"
                                                             "print(interest_migration.__version__, os.path.basename(os.getcwd()))"])
    finally:
        _get(f"{base}/api/kernels/{kernel_id}", token, method="DELETE")
    for src, (st, out) in zip(code, results):
        assert st == "ok", f"cell failed in the lab kernel: {src[:200]!r} -> {out[-500:]}"
    st, out = results[-1]
    assert st == "ok" and out.split() == [__import__("interest_migration").__version__, "nbs"], out
