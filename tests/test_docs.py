"The rendered site as a reader meets it: served on 127.0.0.1 and opened in headless Chromium (slow)."
from pathlib import Path
import base64
import functools
import http.server
import io
import re
import shutil
import subprocess
import threading

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "_docs"
CHROMIUM = shutil.which("chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site():
    if not (DOCS / "index.html").exists():
        pytest.fail("_docs/ is missing: `make docs` builds it (`make test-slow` does so first)")
    if CHROMIUM is None:
        pytest.fail("chromium is missing: `make chromium` installs Debian's package")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(DOCS))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def _browser(url, tmp_path, *extra):
    prof = tmp_path / "profile"
    r = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={prof}", "--virtual-time-budget=5000", *extra, url],
                       capture_output=True, text=True, timeout=120)
    return r


PAGES = sorted(p.name for p in (ROOT / "nbs").glob("*.ipynb"))


@pytest.mark.parametrize("nb", PAGES)
def test_page_renders_with_images_and_no_errors(site, nb, tmp_path):
    page = Path(nb).with_suffix(".html").name
    assert (DOCS / page).exists(), f"{page} was not built"
    r = _browser(f"{site}/{page}", tmp_path, "--dump-dom")
    dom = r.stdout
    assert r.returncode == 0 and "im-sidebar" in dom, f"{page} did not render: {r.stderr[-500:]}"
    errors = re.findall(r'ansi-red-fg">\s*(\w*(?:Error|Exception))', dom)
    assert "Traceback (most recent call last)" not in dom and not errors, f"{page} shows an error output: {errors}"
    from PIL import Image
    for src in re.findall(r'<img[^>]+src="data:image/png;base64,([^"]+)"', dom):
        im = Image.open(io.BytesIO(base64.b64decode(src)))
        assert im.size[0] > 50 and im.size[1] > 50


def test_topic_pages_have_figures(site, tmp_path):
    for page in [p for p in PAGES if p[:2].isdigit() and p != "13_cli.ipynb"]:
        html = (DOCS / Path(page).with_suffix(".html").name).read_text()
        assert "data:image/png;base64" in html, f"{page} has no figure"


def test_index_screenshot(site, tmp_path):
    out = ROOT / "_build" / "index.png"
    out.parent.mkdir(exist_ok=True)
    r = _browser(f"{site}/index.html", tmp_path, f"--screenshot={out}", "--window-size=1280,900")
    assert out.exists() and out.stat().st_size > 10_000, r.stderr[-500:]


def test_demo_report_opens_in_chromium(tmp_path):
    "The demo's report.html, opened from disk in headless Chromium, shows its tables and decodable figures."
    if CHROMIUM is None:
        pytest.fail("chromium is missing: `make chromium` installs Debian's package")
    from interest_migration.cli import main
    assert main(["demo", "--quiet", "--out", str(tmp_path / "rep")]) == 0
    r = _browser((tmp_path / "rep" / "report.html").as_uri(), tmp_path, "--dump-dom")
    dom = r.stdout
    assert dom.count("<table") >= 4, "tables missing from the rendered report"
    from PIL import Image
    imgs = re.findall(r'<img[^>]+src="data:image/png;base64,([^"]+)"', dom)
    assert len(imgs) >= 2
    for src in imgs:
        assert min(Image.open(io.BytesIO(base64.b64decode(src))).size) > 100
