"""The rendered site and the demo report as a reader meets them: served on 127.0.0.1, opened in headless Chromium.

Slow (run by `make test-slow`, after `make docs` and `make chromium`). Checks the site's features (search, page
contents, previous/next, local links only, an API entry with a parameter table for every symbol of each module's
`__all__`, maths typeset offline, no traceback/warning/machine path) and keeps screenshots under
`_build/screenshots/` as build artefacts. Without Chromium the browser checks are skipped, saying why.
"""
from pathlib import Path
import base64
import functools
import http.server
import importlib
import io
import pkgutil
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.parse

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "_docs"
SHOTS = ROOT / "_build" / "screenshots"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]
NO_CHROMIUM = "headless Chromium is not installed (`make chromium` installs Debian's package)"
# Hosts of rendered documentation: the site must link its own pages, never these.
DOC_HOSTS = re.compile(r"https?://[^/\"']*(github\.io|readthedocs\.io|readthedocs\.org|nbdev\.fast\.ai|docs\.python\.org)")
TEX = re.compile(r"\$\$|\\\(|\\\)|\\\[|\\begin\{|\\frac\{|\\sum_|\\mathbb")

pytestmark = pytest.mark.slow


def pages() -> list:
    return sorted(p.stem for p in (ROOT / "nbs").glob("*.ipynb"))


def exported() -> dict:
    "module -> __all__, discovered from the package (modules come and go as notebooks are split)."
    import interest_migration as im
    out = {}
    for m in pkgutil.iter_modules(im.__path__):
        if not m.name.startswith("_"):
            mod = importlib.import_module(f"interest_migration.{m.name}")
            out[m.name] = list(getattr(mod, "__all__", []))
    return out


def machine_paths() -> list:
    "Strings that only appear in a page by leaking from the build machine."
    home = str(Path.home())
    return [str(ROOT), "site-packages", "ipykernel_", tempfile.gettempdir() + "/tmp"] + ([home] if home != "/" else [])


@pytest.fixture(scope="module")
def built():
    if not (DOCS / "index.html").exists():
        pytest.fail("_docs/ is missing: `make docs` builds it (`make test-slow` does so first)")
    from bs4 import BeautifulSoup
    return {p: BeautifulSoup((DOCS / f"{p}.html").read_text(encoding="utf-8"), "html.parser") for p in pages()}


@pytest.fixture(scope="module")
def site(built):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(DOCS))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def browser(url: str, tmp_path: Path, *extra, budget: int = 15000):
    if CHROMIUM is None:
        pytest.skip(NO_CHROMIUM)
    prof = tmp_path / f"profile{len(list(tmp_path.glob('profile*')))}"
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={prof}", f"--virtual-time-budget={budget}", *extra, url],
                          capture_output=True, text=True, timeout=180)


def dom(url: str, tmp_path: Path, budget: int = 15000):
    from bs4 import BeautifulSoup
    r = browser(url, tmp_path, "--dump-dom", budget=budget)
    assert r.returncode == 0 and "<body" in r.stdout, f"{url} did not render: {r.stderr[-500:]}"
    return BeautifulSoup(r.stdout, "html.parser")


def visible_text(soup) -> str:
    soup = soup.__copy__()
    for t in soup.find_all(["script", "style", "noscript", "mjx-assistive-mml"]):
        t.decompose()
    return soup.get_text(" ")


# ---------------------------------------------------------------- static checks of the built pages (no browser)
def test_every_page_built(built):
    assert set(built) == set(pages())


def test_every_exported_symbol_has_an_entry_with_parameters(built):
    entries = {}
    for p, soup in built.items():
        for dt in soup.select("dl.py > dt[id]"):
            entries.setdefault(dt["id"], (p, dt.find_parent("dl")))
    missing, no_table = [], []
    for mod, names in exported().items():
        for n in names:
            full = f"interest_migration.{mod}.{n}"
            if full not in entries:
                missing.append(full)
                continue
            dd = entries[full][1].find("dd", recursive=False)
            if dd is None or dd.select_one("table.im-params") is None:
                no_table.append(full)
    assert not missing, f"no API entry for {missing}"
    assert not no_table, f"API entries without a parameter table: {no_table}"
    import inspect
    borrowed = []  # a constant's entry showing the docstring of its value's type (numpy's ndarray manual, dict's)
    for mod, names in exported().items():
        m = importlib.import_module(f"interest_migration.{mod}")
        for n in names:
            v = getattr(m, n)
            if inspect.isclass(v) or inspect.isroutine(v) or inspect.ismodule(v) or not (v.__doc__ or "").strip():
                continue
            first = v.__doc__.strip().splitlines()[0].strip()
            if len(first) > 20 and first in entries[f"interest_migration.{mod}.{n}"][1].get_text(" "):
                borrowed.append(f"{mod}.{n}")
    assert not borrowed, f"constants documented with their type's docstring: {borrowed}"


def _has_source(dotted: str) -> bool:
    "Whether the object named `dotted` is a function or class (a type alias such as `serving.Id` has no source to link)."
    import importlib, inspect
    parts = dotted.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try: obj = importlib.import_module(".".join(parts[:i]))
        except ImportError: continue
        for a in parts[i:]: obj = getattr(obj, a, None)
        return inspect.isfunction(obj) or inspect.isclass(obj) or inspect.ismethod(obj)
    return True


def test_entries_link_their_source(built):
    for p, soup in built.items():
        for dl in soup.select("dl.py.function, dl.py.class"):
            dt = dl.find("dt")
            if dt.get("id", "").startswith("interest_migration.") and _has_source(dt["id"]):
                assert dt.select_one("a .viewcode-link"), f"{p}: {dt['id']} has no [source] link"
                href = dt.select_one("a .viewcode-link").find_parent("a")["href"]
                assert (DOCS / urllib.parse.urlsplit(href).path).exists(), href


def site_links(docs: Path) -> list:
    "(page, reference) of every link, script, style sheet and image of every HTML file under `docs` that does not resolve there."
    from bs4 import BeautifulSoup
    docs = docs.resolve()
    html = {p.resolve(): BeautifulSoup(p.read_text(encoding="utf-8"), "html.parser") for p in docs.rglob("*.html")}
    ids = {p: {t["id"] for t in soup.find_all(id=True)} for p, soup in html.items()}
    bad = []
    for p, soup in html.items():
        for tag, attr in (("a", "href"), ("link", "href"), ("script", "src"), ("img", "src")):
            for t in soup.find_all(tag, **{attr: True}):
                ref = t[attr]
                if DOC_HOSTS.search(ref):
                    bad.append((p.relative_to(docs).as_posix(), ref))
                    continue
                u = urllib.parse.urlsplit(ref)
                if u.scheme or ref.startswith("mailto:"):
                    continue
                target = (p.parent / urllib.parse.unquote(u.path)).resolve() if u.path else p
                if not target.exists() or docs not in target.parents:
                    bad.append((p.relative_to(docs).as_posix(), ref))
                elif u.fragment and target in ids and u.fragment not in ids[target]:
                    bad.append((p.relative_to(docs).as_posix(), ref))
    return bad


def test_links_are_local_and_resolve(built):
    "Every link of the site (topic pages, API source pages, the index and search pages) resolves in _docs/, anchors included."
    assert len(list(DOCS.rglob("*.html"))) > len(built), "the API source pages (_modules/) are missing"
    bad = site_links(DOCS)
    assert not bad, f"{len(bad)} links that do not resolve locally: {bad[:20]}"


def test_link_check_finds_broken_links(tmp_path):
    "The link check itself: a missing page, a missing anchor, a docs host and a file outside the site are all caught."
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.html").write_text('<p id="x"></p><a href="a.html#x">ok</a><a href="#x">ok</a><a href="sub/b.html">ok</a>'
                                     '<a href="https://example.org/">external, fine</a><script src="sub/s.js"></script>')
    (tmp_path / "sub" / "b.html").write_text('<a href="../a.html#x">ok</a>')
    (tmp_path / "sub" / "s.js").write_text("")
    assert site_links(tmp_path) == []
    (tmp_path / "sub" / "c.html").write_text('<a href="../missing.html">1</a><a href="../a.html#nope">2</a>'
                                             '<a href="https://nbdev.fast.ai/x.html">3</a><a href="../../outside.html">4</a>'
                                             '<img src="gone.png">')
    assert [r for _, r in site_links(tmp_path)] == ["../missing.html", "../a.html#nope", "https://nbdev.fast.ai/x.html",
                                                    "../../outside.html", "gone.png"]


def test_backticked_names_link_to_their_entries(built):
    soup = built["02_profiles"]
    links = [a["href"] for a in soup.select("a.reference.internal") if "interest_profile" in a.get("href", "")]
    assert any(h.endswith("#interest_migration.profiles.interest_profile") for h in links), links[:5]


def test_previous_next_and_page_contents(built):
    order = [p for p in pages()]
    for p, soup in built.items():
        rel = soup.select_one("div.related-pages")
        assert rel is not None, f"{p} has no previous/next links"
        if p != "index":
            assert rel.select_one("a.prev-page"), f"{p} has no previous link"
        if p != order[-2] and p != "index":  # the last topic page has no next
            assert rel.select_one("a.next-page"), f"{p} has no next link"
        assert len(soup.select("aside.toc-drawer div.toc-tree li")) >= 2, f"{p} has no table of contents"


def test_no_traceback_warning_or_machine_path(built):
    leaks = machine_paths()
    for p, soup in built.items():
        outputs = " ".join(o.get_text(" ") for o in soup.select("div.cell_output"))
        text = visible_text(soup)
        assert "Traceback (most recent call last)" not in text, p
        w = re.findall(r"\b\w*Warning: ", outputs)
        assert not w and "stderr" not in " ".join(" ".join(o.get("class", [])) for o in soup.select("div.output")), \
            f"{p} shows a warning or stderr output: {w[:3]}"
        for s in leaks:
            assert s not in text, f"{p} shows a path of the build machine: {s}"


def test_cached_outputs_are_marked(built):
    "A build never passes old outputs off as fresh: committed outputs carry a visible mark saying so."
    import json
    import nbformat
    mode = json.loads((DOCS / ".im-build.json").read_text())["mode"]
    for p in pages():
        if mode == "no-exec":  # nothing ran: every page says its outputs are the committed ones
            assert built[p].select_one(".im-committed"), f"{p} does not say its outputs were not re-run"
            continue
        nb = nbformat.read(ROOT / "nbs" / f"{p}.ipynb", as_version=4)
        slow = [c for c in nb.cells if c.cell_type == "code" and re.search(r"^\s*#\|\s*slow\b", c.source, re.M)
                and c.get("outputs")]
        shown = len(built[p].select("div.im-cached"))
        if mode == "exec":  # fast build: slow cells kept their committed outputs, each marked
            assert shown >= min(1, len(slow)), f"{p}: {len(slow)} slow cells with outputs, {shown} marked cached"
        else:  # --slow ran every cell: nothing is cached
            assert shown == 0, f"{p}: cached marks in a build that ran every cell"
    # The example of mixed outputs: the tagging page's prose quotes the fine-tuned model (a slow cell); its
    # results table and the figure below it must show that model too, whether re-run (--slow) or kept as committed.
    cells = [c for c in built["08_tagging"].select("div.cell")
             if c.select_one("div.cell_input") and "evaluate_taggers(taggers" in c.select_one("div.cell_input").get_text()]
    assert len(cells) == 1 and "F1 micro" in cells[0].select_one("div.cell_output").get_text()
    assert "MiniLM fine-tuned" in cells[0].select_one("div.cell_output").get_text(), \
        "08_tagging's results table lacks the fine-tuned model that its prose quotes"


def test_tables_are_html_with_integer_counts(built):
    for p, soup in built.items():
        for tbl in soup.select("div.cell_output table.dataframe"):
            head = [th.get_text(strip=True) for th in tbl.select("thead th")]
            for j, h in enumerate(head):
                if re.fullmatch(r"(n|n_\w+|\w+_n|count|events|users|items|support|n_users|n_items)", h):
                    vals = [r.find_all(["th", "td"])[j].get_text(strip=True) for r in tbl.select("tbody tr")
                            if len(r.find_all(["th", "td"])) == len(head)]
                    assert not any(re.fullmatch(r"-?\d+\.0+", v) for v in vals), f"{p}: counts in {h!r} as floats"


# ---------------------------------------------------------------- in the browser
def test_search_finds_interest_profile_entry(site, tmp_path):
    soup = dom(f"{site}/search.html?q=interest_profile", tmp_path)
    hits = [a["href"] for a in soup.select("ul.search li a[href]")]
    target = [h for h in hits if h.endswith("#interest_migration.profiles.interest_profile")]
    assert target, f"search returned {hits[:5]}"
    page = dom(f"{site}/{target[0]}", tmp_path)
    entry = page.find(id="interest_migration.profiles.interest_profile")
    assert entry is not None and "interest_profile" in entry.get_text()
    assert entry.find_parent("dl").select_one("table.im-params") is not None


@pytest.mark.parametrize("page", pages())
def test_page_in_browser(site, page, tmp_path):
    "Maths typeset by the bundled MathJax (no raw TeX left), contents and figures present, nothing fetched off-site."
    soup = dom(f"{site}/{page}.html", tmp_path, budget=20000)
    text = visible_text(soup)
    tex = TEX.findall(" ".join(t for t in text.split("\n")))
    code = " ".join(c.get_text(" ") for c in soup.select("pre, code"))
    raw = [t for t in tex if t not in code]
    assert not raw, f"{page} shows raw TeX: {raw[:5]}"
    for tag in soup.find_all(["script", "link", "img"]):
        src = tag.get("src") or tag.get("href") or ""
        assert not src.startswith(("http://", "https://", "//")), f"{page} loads {src} from off-site"
    from PIL import Image
    for img in soup.select("div.cell_output img"):
        src = img.get("src", "")
        data = base64.b64decode(src.split(",", 1)[1]) if src.startswith("data:") else (DOCS / src).read_bytes()
        w, h = Image.open(io.BytesIO(data)).size
        assert w > 100 and h > 80, f"{page}: a figure of {w}x{h} px"


# The topic page the issue names 02_prediction: the notebook was renamed 02_profiles (5f5e991) when prediction moved
# to 03_nextwindow; it is still the long page of profiles and migration, with maths.
PREDICTION_PAGE = "02_profiles"


def test_screenshots(site, tmp_path):
    """Screenshots kept as build artefacts under _build/screenshots/: the index, 02_prediction's page (now 02_profiles),
    the longest topic page, and that page on a narrow screen (sidebar collapsed); the report's is taken below."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    assert PREDICTION_PAGE in pages()
    longest = max((p for p in pages() if p != "index"), key=lambda p: (DOCS / f"{p}.html").stat().st_size)
    shots = [("index", "index.html", "1280,900"), (PREDICTION_PAGE, f"{PREDICTION_PAGE}.html", "1280,900"),
             (longest, f"{longest}.html", "1280,900"), (f"{longest}-narrow", f"{longest}.html", "420,900")]
    for name, url, size in shots:
        out = SHOTS / f"{name}.png"
        out.unlink(missing_ok=True)
        r = browser(f"{site}/{url}", tmp_path, f"--screenshot={out}", f"--window-size={size}")
        assert out.exists() and out.stat().st_size > 10_000, r.stderr[-500:]


PROBE = """<!doctype html><body><iframe id="f" src="site/{page}.html" style="width:{width}px;height:900px;border:0"></iframe>
<script>
document.getElementById("f").addEventListener("load", () => {{
  const d = document.getElementById("f").contentDocument, box = s => d.querySelector(s).getBoundingClientRect();
  const out = {{sidebar_right: box(".sidebar-drawer").right, content_left: box("article").left,
               menu_button: getComputedStyle(d.querySelector(".nav-overlay-icon")).display}};
  const pre = document.createElement("pre"); pre.id = "result"; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
}});
</script></body>"""


def layout(page: str, width: int, tmp_path: Path) -> dict:
    "Where the sidebar and the page's text are when `page` is shown `width` px wide (measured by the browser itself)."
    import json
    root = tmp_path / f"probe{width}"
    root.mkdir()
    (root / "site").symlink_to(DOCS.resolve(), target_is_directory=True)
    (root / "probe.html").write_text(PROBE.format(page=page, width=width))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)  # the probe and the page from one origin
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        soup = dom(f"http://127.0.0.1:{srv.server_address[1]}/probe.html", tmp_path)
    finally:
        srv.shutdown()
    res = soup.find(id="result")
    assert res is not None, "the probe page did not report the layout"
    return json.loads(res.get_text())


def test_sidebar_collapses_on_a_narrow_screen(built, tmp_path):
    "At 420 px the sidebar is off-screen behind a menu button and the text starts at the left edge; at 1280 px it shows."
    narrow, wide = layout(PREDICTION_PAGE, 420, tmp_path), layout(PREDICTION_PAGE, 1280, tmp_path)
    assert narrow["sidebar_right"] <= 0 and narrow["menu_button"] != "none" and narrow["content_left"] < 60, narrow
    assert wide["sidebar_right"] > 150 and wide["menu_button"] == "none" and wide["content_left"] > 150, wide


def test_demo_report_in_browser(tmp_path):
    "The demo's report.html opened from disk: summary first, tables, legible figures; a screenshot kept."
    if CHROMIUM is None:
        pytest.skip(NO_CHROMIUM)
    from interest_migration.cli import main
    assert main(["demo", "--quiet", "--out", str(tmp_path / "rep")]) == 0
    soup = dom((tmp_path / "rep" / "report.html").as_uri(), tmp_path)
    assert len(soup.find_all("table")) >= 4, "tables missing from the rendered report"
    text = visible_text(soup)
    assert "Traceback (most recent call last)" not in text and not re.findall(r"\b\w*Warning: ", text)
    for s in machine_paths() + [str(tmp_path)]:
        assert s not in text, f"the report shows a path of the build machine: {s}"
    first = soup.find(["h2", "section"])
    assert first is not None and "summary" in first.get_text().lower(), "the report does not open with its summary"
    from PIL import Image
    imgs = [i["src"] for i in soup.find_all("img") if i.get("src", "").startswith("data:image/png;base64,")]
    assert len(imgs) >= 2
    for src in imgs:
        im = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        assert min(im.size) > 100 and im.info.get("dpi", (100,))[0] >= 99, im.info
    SHOTS.mkdir(parents=True, exist_ok=True)
    r = browser((tmp_path / "rep" / "report.html").as_uri(), tmp_path, f"--screenshot={SHOTS / 'report.png'}",
                "--window-size=1280,1400")
    assert (SHOTS / "report.png").stat().st_size > 10_000, r.stderr[-500:]
