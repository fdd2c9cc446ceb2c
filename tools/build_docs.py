"""Build the documentation site under `_docs/` without Quarto: nbdev's notebook processing, rendered by Sphinx.

1. execute every notebook of `nbs/` (fast cells; `--slow` adds the slow ones; `--no-exec` keeps the committed
   outputs) so figures are reproduced today, with nbdev's own executor (execnb's `CaptureShell`, as `nbdev_test`
   runs them): the libraries and the package are imported once, then each notebook runs in a forked child of
   this process, two at a time, longest first (`--kernels`: a fresh Jupyter kernel each instead, slower);
2. process each executed notebook as soon as it is done, while the others still run, with nbdev's own processors
   (`nbdev.processors.FilterDefaults`, the steps `nbdev_proc_nbs` runs before Quarto: hidden and exported cells
   removed, `show_doc` cells added for undocumented exports, directives applied), except nbdev's links to the
   external docs host and its `show_doc` execution, which this script replaces with local ones: every
   `show_doc(...)` call of a cell becomes a Sphinx autodoc entry (parameter table from `docments`, `[source]` link
   to a local copy of the code), and every backticked exported name a local cross-reference;
3. clean the outputs (stderr, warnings, progress widgets and build-machine paths removed; integral float
   counts printed as integers), mark outputs that were not produced by this build as cached, and add an API
   entry for each symbol in a module's `__all__` that the notebook did not show;
4. render the site with Sphinx + MyST-NB and the Furo theme (search, page contents, previous/next, MathJax
   bundled from a registry package by docs/_ext/im_mathjax.py, highlighted code), two processes at a time.

Prints the wall and CPU seconds of each phase. `python tools/build_docs.py [--no-exec | --slow] [--kernels]
[--jobs=N] [NOTEBOOK ...]` (N notebooks and Sphinx processes at once; default one per core, up to 2)
"""
from pathlib import Path
import ast
import importlib
import json
import os
import re
import shutil
import sys
import time

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NBS, BUILD, DOCS, CONF = ROOT / "nbs", ROOT / "_build" / "exec", ROOT / "_docs", ROOT / "docs"
SRC = ROOT / "_build" / "site"
LIB = "interest_migration"
STYLE = CONF / "im.mplstyle"

# Run first in every executed notebook (then removed): the house figure style and printed tables that do
# not wrap. The notebook's own settings, made later, win.
SETUP = f"""
%config InlineBackend.rc = {{}}
import matplotlib.pyplot as _plt, pandas as _pd
_plt.style.use({str(STYLE)!r})
_pd.set_option("display.width", 200); _pd.set_option("display.max_columns", 40)
"""

_CELL_KEYS = ("cell_type", "id", "metadata", "source", "outputs", "execution_count", "attachments")
_SLOW = re.compile(r"^\s*#\|\s*slow\b", re.M)
_EXPORT = re.compile(r"\s*#\|\s*hide\s*\n\s*import nbdev;?\s*\n?\s*nbdev\.nbdev_export\(\)\s*\Z")
_PATHS = [(re.compile(r"(?:/tmp|/work|/root|/home/[\w.-]+|/private/var|/var/folders)/[^\s'\"<>)\]}|,;]*"), "\u2026"),
          (re.compile(r"\S*ipykernel_\d+/\d+\.py(?::\d+)?:?"), ""),
          (re.compile(r"File \S*site-packages/\S+"), "File \u2026")]
_WARN = re.compile(r"^.*\b\w*Warning:.*$\n?(?:^\s+.*$\n?)?", re.M)


# ---------------------------------------------------------------- notebooks and modules (discovered, never listed)
def default_exp(nb) -> str | None:
    for c in nb.cells:
        m = re.search(r"^\s*#\|\s*default_exp\s+(\S+)", c.source, re.M) if c.cell_type == "code" else None
        if m:
            return m.group(1)
    return None


def symbols(mods: list) -> tuple[dict, dict]:
    "name -> full path for every exported symbol (plain, module-qualified, Class.method), and module -> __all__."
    table, alls = {}, {}
    for m in mods:
        mod = importlib.import_module(f"{LIB}.{m}")
        alls[m] = list(getattr(mod, "__all__", []))
        for n in alls[m]:
            full = f"{LIB}.{m}.{n}"
            table.setdefault(n, full)
            table[f"{m}.{n}"] = table[f"{LIB}.{m}.{n}"] = full
            obj = getattr(mod, n)
            if isinstance(obj, type):
                for a, v in vars(obj).items():
                    if not a.startswith("_") and callable(v) or isinstance(v, property) and not a.startswith("_"):
                        table.setdefault(f"{n}.{a}", f"{full}.{a}")
    return table, alls


# ---------------------------------------------------------------- 1. execute
# Seconds each notebook took to execute (fast cells, two at a time) in the last build here, or, in a fresh clone, in the
# measured build below (make docs from a fresh clone, 2026-11-29 09:52, a Jupyter kernel each, 47 notebooks): the build
# starts the longest first. Only the order depends on them, never the output.
TIMES = ROOT / "_build" / "exec_times.json"
_MEASURED = {"index": 75, "12a_demo": 60, "07_tuning": 58, "08_tagging": 42, "00c_taobao_log": 36,
             "09_zero_shot": 36, "11_privacy": 33, "10a_neural": 31, "03_nextwindow": 29, "05a_transfer": 27,
             "13_cli": 27, "10f_side_seq": 25, "08_encoders": 23, "09a_cold_users": 22, "11c_loop": 22, "10d_cf": 18,
             "11ab_export": 18, "11b_serving": 18, "12c_bench_seq": 18, "06_exploration": 17, "12_bench": 16,
             "12b_bench_scale": 16, "10b_bert4rec": 16, "10e_explain": 15, "11ac_coldstart": 15, "00b_simulate": 15,
             "03a_side_features": 14, "05_segments": 14, "11ae_request_path": 14, "02_profiles": 14,
             "01_metrics": 13, "08a_search": 13, "01a_ranking": 12, "01b_recommender": 12, "06a_offpolicy": 12,
             "11d_serve_bench": 12, "03c_scale": 12, "04_intent": 12, "05_segmenters": 12, "10_sequence": 11,
             "00_data": 11, "11aa_ope": 10, "10c_distributed": 9, "11a_store": 9, "03b_churn": 9, "00a_readers": 8,
             "11ad_incremental": 7}
_UNKNOWN_S = 20.0  # a notebook not timed yet: a typical one


def exec_times() -> dict:
    "Notebook stem -> seconds of its last execution (the measured table where there is none)."
    try:
        return {**_MEASURED, **json.loads(TIMES.read_text())}
    except (OSError, ValueError):
        return dict(_MEASURED)


def execution_order(src: list, known: dict) -> list:
    "The notebooks longest first by their known times (an untimed one counts as a typical one); ties in name order."
    return sorted(src, key=lambda nb: (-known.get(Path(nb).stem, _UNKNOWN_S), Path(nb).name))


# ---- which fast cells show results of a slow cell the build skips
_MUTATING = {"fit", "partial_fit", "fit_transform", "update", "append", "extend", "add", "pop", "popitem", "remove", "clear",
             "insert", "setdefault", "set_params", "sort", "load_state_dict", "train", "step", "reset", "seed", "manual_seed"}


def _parse(source: str):
    try:  # IPython magics and shell lines as `pass`
        return ast.parse("\n".join("pass" if l.lstrip().startswith(("%", "!")) else l for l in source.splitlines()))
    except SyntaxError:
        return None


def _imported(tree) -> set:
    return {(a.asname or a.name).split(".")[0] for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
            for a in n.names}


def _base_name(node) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def changed_names(tree) -> set:
    "Names a cell binds (imports aside) or changes in place: item and attribute stores, mutating method calls (`.fit`, `.append`, ...)."
    out = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del)):
            out.add(n.id)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(n.name)
        elif isinstance(n, (ast.Attribute, ast.Subscript)) and isinstance(n.ctx, ast.Store):
            out.add(_base_name(n.value))
        elif isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr in _MUTATING:
            out.add(_base_name(n.func.value))
    return out - {None} - _imported(tree)


def _local_names(tree) -> set:
    "Names a cell binds anywhere (loop variables, parameters, imports...): a use of one of them is the cell's own."
    out = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
            out.add(n.id)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            a = n.args
            out |= {x.arg for x in a.posonlyargs + a.args + a.kwonlyargs + [a.vararg, a.kwarg] if x is not None}
            out |= {n.name} if hasattr(n, "name") else set()
        elif isinstance(n, ast.ClassDef):
            out.add(n.name)
        elif isinstance(n, ast.ExceptHandler) and n.name:
            out.add(n.name)
    return out | _imported(tree)


def stale_cells(cells) -> dict:
    """Index -> names, for each fast code cell that reads a name a `#| slow` cell above binds or changes (or that such a
    cell derived from one): a build that skips the slow cells would show that cell's output computed without them,
    beside prose and cached outputs that quote the slow run (the issue's 05_tagging table without its fine-tuned model)."""
    tainted, out = set(), {}
    for i, c in enumerate(cells):
        tree = _parse(c.source) if c.cell_type == "code" else None
        if tree is None:
            continue
        if _SLOW.search(c.source):
            tainted |= changed_names(tree)
            continue
        uses = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
        uses = (uses - _local_names(tree)) & tainted
        if uses:
            out[i] = sorted(uses)
            tainted |= changed_names(tree)
        else:
            tainted -= changed_names(tree)  # recomputed from fresh values
    return out


def mark_cells(nb, slow: bool = False):
    """Tag the cells the build does not run: the closing `nbdev_export()` and, unless `slow`, the `#| slow` cells
    (their committed outputs kept, marked cached); the fast cells that depend on a skipped slow cell run (later cells
    need their values) but keep their committed outputs too, marked (`restore_stale` puts them back)."""
    stale = {} if slow else stale_cells(nb.cells)
    for i, c in enumerate(nb.cells):
        if c.cell_type == "code" and _EXPORT.match(c.source):
            # the hidden closing `nbdev_export()` writes the package (every module, seconds per notebook) and shows nothing
            c.metadata.setdefault("tags", []).append("skip-execution")
        elif c.cell_type == "code" and _SLOW.search(c.source):
            if slow:
                c.metadata["im_fresh"] = True
            else:  # `#| slow` cells keep their committed outputs (run them with --slow), marked as cached
                c.metadata.setdefault("tags", []).append("skip-execution")
                c.metadata["im_cached"] = True
        elif i in stale:
            c.metadata["im_stale"] = stale[i]
            c.metadata["im_committed"] = [dict(o) for o in c.get("outputs", [])]
    return nb


def restore_stale(nb):
    "The committed outputs back on the cells that depend on a skipped slow cell (after they ran)."
    for c in nb.cells:
        if "im_committed" in c.metadata:
            c.outputs = [nbformat.from_dict(o) for o in c.metadata.pop("im_committed")]
    return nb


def execute_kernel(src: Path, dst: Path, slow: bool = False) -> float:
    "Run a notebook top to bottom in a fresh Jupyter kernel (nbclient), in the nbs folder, and save the executed copy."
    from nbclient import NotebookClient
    nb = mark_cells(nbformat.read(src, as_version=4), slow)
    nb.cells.insert(0, nbformat.v4.new_code_cell(SETUP))
    start = time.perf_counter()
    NotebookClient(nb, timeout=1200, kernel_name="python3", resources={"metadata": {"path": str(NBS)}}).execute()
    nb.cells.pop(0)
    restore_stale(nb)
    nb.metadata["im_executed"] = True
    nbformat.write(nb, dst)
    return time.perf_counter() - start


class CellError(RuntimeError):
    "A cell of a notebook raised while the docs build ran it."


def execute(src: Path, dst: Path, slow: bool = False) -> float:
    """Run a notebook top to bottom in this process with nbdev's own executor (execnb's `CaptureShell`, what
    `nbdev_test` and tests/test_notebooks.py run notebooks with), in the nbs folder, and save the executed copy.
    The build calls it in a forked child of a process that has already imported the libraries (`preload`)."""
    from execnb.shell import CaptureShell
    nb = mark_cells(nbformat.read(src, as_version=4), slow)
    start = time.perf_counter()
    os.chdir(NBS)
    shell = CaptureShell(path=NBS, mpl_format="png", timeout=1200)  # png: the figure format of a Jupyter kernel
    shell.run(SETUP)
    if shell.exc:
        raise CellError(f"the build's setup cell failed: {shell.exc!r}")
    n = 0
    for c in nb.cells:
        if c.cell_type != "code" or "skip-execution" in c.metadata.get("tags", []):
            continue
        n += 1
        outs = shell.run(c.source)
        c.outputs = [nbformat.from_dict(o) for o in outs]
        c.execution_count = n
        for o in c.outputs:
            if o.output_type == "execute_result":
                o.execution_count = n
        if shell.exc is not None and "raises-exception" not in c.metadata.get("tags", []):
            import traceback
            tb = "".join(traceback.format_exception(shell.exc))
            raise CellError(f"code cell {n} of {src.name} raised:\n{c.source[:300]}\n{tb[-3000:]}")
        shell.exc = None
    restore_stale(nb)
    nb.metadata["im_executed"] = True
    nbformat.write(nb, dst)
    return time.perf_counter() - start


# What the notebooks import, imported once by the build before it forks one child per notebook: a fresh kernel
# spends seconds of CPU per notebook on these imports (and the package's modules), a forked child none.
PRELOAD = ("numpy", "pandas", "scipy.sparse", "scipy.stats", "sklearn.linear_model", "sklearn.metrics", "matplotlib.pyplot",
           "torch", "IPython", "execnb.shell", "matplotlib_inline.backend_inline", "nbdev.showdoc", "fastcore.test")


def preload(mods: list) -> float:
    "Import the heavy libraries and every module of the package in this process (seconds taken)."
    start = time.perf_counter()
    for m in PRELOAD:
        try:
            importlib.import_module(m)
        except ImportError:
            pass
    for m in mods:
        importlib.import_module(f"{LIB}.{m}")
    return time.perf_counter() - start


def _child(src: Path, dst: Path, slow: bool, log: Path) -> None:
    "A forked child: its output to `log`, the notebook executed, its time (or the error) in `dst`.json."
    res = dst.with_suffix(".json")
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1), os.dup2(fd, 2)
    try:
        res.write_text(json.dumps({"seconds": execute(src, dst, slow)}))
        code = 0
    except BaseException as e:  # noqa: BLE001 -- reported by the parent with the notebook's name
        res.write_text(json.dumps({"error": f"{type(e).__name__}: {e}"}))
        code = 1
    sys.stdout.flush(), sys.stderr.flush()
    os._exit(code)


def run_forked(order: list, jobs: int, slow: bool, logs: Path, done=None) -> dict:
    """Execute the notebooks of `order` in forked children, `jobs` at a time, starting them in that order; calls
    `done(stem)` as each one finishes. Returns stem -> seconds; raises CellError naming the first notebook that failed."""
    import multiprocessing as mp
    from multiprocessing.connection import wait
    ctx = mp.get_context("fork")
    logs.mkdir(parents=True, exist_ok=True)
    todo, running, times, finished = list(order), {}, {}, []
    try:
        while todo or running or finished:
            while todo and len(running) < jobs:  # slots refilled before the finished notebooks are processed
                nb = todo.pop(0)
                p = ctx.Process(target=_child, args=(nb, BUILD / nb.name, slow, logs / f"{nb.stem}.log"))
                p.start()
                running[p.sentinel] = (p, nb)
            if finished:
                if done:
                    done(finished.pop(0))
                else:
                    finished.clear()
                continue
            for s in wait(list(running)):
                p, nb = running.pop(s)
                p.join()
                res = BUILD / f"{nb.stem}.json"
                info = json.loads(res.read_text()) if res.exists() else {"error": f"exit status {p.exitcode}"}
                res.unlink(missing_ok=True)
                if p.exitcode or "error" in info:
                    tail = (logs / f"{nb.stem}.log").read_text(errors="replace")[-3000:]
                    raise CellError(f"{nb.name}: {info.get('error')}\n--- its output (tail of {logs.name}/{nb.stem}.log):\n{tail}")
                times[nb.stem] = info["seconds"]
                finished.append(nb.stem)
    finally:
        for p, _ in running.values():
            p.kill(), p.join()
    return times


# ---------------------------------------------------------------- 2. nbdev processing, show_doc -> autodoc
def nbdev_process(path: Path):
    "nbdev's own processors, minus its external links, its show_doc execution and its Quarto-only code folding."
    from execnb.nbio import nb2str, read_nb
    from nbdev.processors import FilterDefaults
    from nbdev.process import NBProcessor
    nb = read_nb(path)
    procs = [p for p in FilterDefaults().procs() if p.__name__ not in ("add_links", "exec_show_docs", "add_fold")]
    NBProcessor(nb=nb, procs=procs).process()
    d = json.loads(nb2str(nb))
    for c in d["cells"]:  # attributes nbdev's processing adds (has_sd, idx_), not in the notebook schema
        for k in [k for k in c if k not in _CELL_KEYS]:
            del c[k]
    return nbformat.reads(json.dumps(d), as_version=4)


def _dotted(node) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def show_doc_targets(source: str) -> list[str]:
    "The objects of every `show_doc(...)` call of a cell, in order (nbdev renders only the last one)."
    src = "\n".join(l for l in source.splitlines() if not l.lstrip().startswith("#|"))
    try:
        tree = ast.parse(src)
    except SyntaxError:
        return []
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _dotted(node.func) in ("show_doc", "nbdev.showdoc.show_doc") and node.args:
            d = _dotted(node.args[0])
            if d:
                out.append((node.lineno, node.col_offset, d))
    return [d for *_, d in sorted(out)]


def resolve(name: str, module: str | None, table: dict) -> tuple[str, str] | None:
    "(full path, autodoc directive) of a name shown in `module`'s notebook."
    import inspect
    full = None
    if module and f"{module}.{name}" in table:
        full = table[f"{module}.{name}"]
    full = full or table.get(name)
    if full is None and module:  # a method of an exported class or a name of the module not in the table
        head, *rest = name.split(".")
        mod = importlib.import_module(f"{LIB}.{module}")
        if hasattr(mod, head):
            full = f"{LIB}.{module}.{name}"
    if full is None:
        return None
    modname, _, rest = full[len(LIB) + 1:].partition(".")
    obj = importlib.import_module(f"{LIB}.{modname}")
    parent = None
    for part in rest.split("."):
        parent, obj = obj, getattr(obj, part, None)
        if obj is None:
            return None
    if inspect.isclass(obj):
        kind = "autoclass"
    elif isinstance(parent, type):
        kind = "autoproperty" if isinstance(inspect.getattr_static(parent, rest.split(".")[-1]), property) else "automethod"
    elif callable(obj):
        kind = "autofunction"
    else:
        kind = "autodata"
    return full, kind


def api_cell(entries: list, done: set):
    "A markdown cell of autodoc entries (an object documented twice is indexed once)."
    parts = []
    for full, kind in entries:
        opts = []
        if full in done:
            opts.append(":no-index:")
        if kind == "autodata":
            opts.append(":no-value:")
        done.add(full)
        body = "\n".join(f"   {o}" for o in opts)
        parts.append(f".. {kind}:: {full}\n{body}\n".rstrip() + "\n")
    return nbformat.v4.new_markdown_cell("```{eval-rst}\n" + "\n".join(parts) + "```")


_CODE_SPAN = re.compile(r"(?<![`\[])`([A-Za-z_][\w.]*)(\(\))?`(?![`\]])")


def link_names(md: str, table: dict, pages: set = frozenset()) -> str:
    "Backticked exported names (outside code blocks and links) as local cross-references; links to pages local."
    md = re.sub(r"\]\((\w+)\.html(#[^)\s]*)?\)",
                lambda m: f"]({m.group(1)}.ipynb{m.group(2) or ''})" if m.group(1) in pages else m.group(0), md)
    out, fence = [], False
    for line in md.split("\n"):
        if line.lstrip().startswith(("```", "~~~")):
            fence = not fence
        if fence or line.startswith("    "):
            out.append(line)
            continue
        def sub(m):
            full = table.get(m.group(1))
            if not full:
                return m.group(0)
            text = m.group(1) + (m.group(2) or "")
            return "{py:obj}" + f"`{text} <{full}>`"
        out.append(_CODE_SPAN.sub(sub, line))
    return "\n".join(out)


# ---------------------------------------------------------------- 3. outputs
def clean_text(s: str) -> str:
    for rx, rep in _PATHS:
        s = rx.sub(rep, s)
    return s


def int_counts(html_table: str) -> str:
    "Columns of an HTML table whose every value is an integral float (some >= 2) printed as integers."
    from bs4 import BeautifulSoup
    soup = BeautifulSoup(html_table, "html.parser")
    changed = False
    for tbl in soup.find_all("table"):
        rows = [r.find_all(["td", "th"]) for r in (tbl.tbody or tbl).find_all("tr")]
        rows = [r for r in rows if r and r[-1].name == "td"]
        if not rows:
            continue
        width = max(len(r) for r in rows)
        for j in range(width):
            cells = [r[j] for r in rows if len(r) == width and r[j].name == "td"]
            vals = [c.get_text(strip=True) for c in cells]
            nums = [v for v in vals if v not in ("", "NaN", "nan", "<NA>", "None")]
            if not nums or not all(re.fullmatch(r"-?\d+\.0+", v) for v in nums):
                continue
            if max(abs(float(v)) for v in nums) < 2:
                continue
            for c, v in zip(cells, vals):
                if re.fullmatch(r"-?\d+\.0+", v):
                    c.string = v.split(".")[0]
                    changed = True
    return str(soup) if changed else html_table


def clean_outputs(cell) -> None:
    keep = []
    for o in cell.get("outputs", []):
        t = o.get("output_type")
        if t == "stream":
            if o.get("name") == "stderr":
                continue
            text = _WARN.sub("", clean_text("".join(o.get("text", ""))))
            if not text.strip():
                continue
            o["text"] = text
        elif t in ("display_data", "execute_result"):
            data = o.get("data", {})
            if "application/vnd.jupyter.widget-view+json" in data:
                continue  # progress bars: a live widget with nothing to show in a page
            for k in ("text/plain", "text/html", "text/markdown", "text/latex"):
                if k in data:
                    data[k] = clean_text("".join(data[k]) if isinstance(data[k], list) else data[k])
            if "text/html" in data and "<table" in data["text/html"]:
                data["text/html"] = int_counts(data["text/html"])
        elif t == "error":
            raise RuntimeError(f"an error output in a cell:\n{cell.source[:300]}\n{o.get('ename')}: {o.get('evalue')}")
        keep.append(o)
    cell["outputs"] = keep


def frontmatter(nb) -> dict:
    import yaml
    for c in nb.cells:
        if c.cell_type == "raw" and c.source.lstrip().startswith("---"):
            return yaml.safe_load(c.source.strip().strip("-")) or {}
    return {}


def title_of(nb, fm, stem) -> str:
    if fm.get("title"):
        return str(fm["title"])
    for c in nb.cells:
        m = re.search(r"^#\s+(.+)$", c.source, re.M) if c.cell_type == "markdown" else None
        if m:
            return m.group(1).strip()
    return stem


def api_placeholder(entries: list):
    "A cell standing for the API entries of a `show_doc` cell until `finish_pages` knows which page indexes each object."
    c = nbformat.v4.new_markdown_cell("")
    c.metadata["im_api"] = [list(e) for e in entries]
    return c


def finish_pages(pages: list, alls: dict, table: dict) -> None:
    """In page order, the deferred API cells rendered (an object documented twice is indexed on its first page) and,
    on a module's page, entries for the symbols of its `__all__` that no page showed so far."""
    done = set()
    for nb, info in pages:
        cells = []
        for c in nb.cells:
            cells.append(api_cell([tuple(e) for e in c.metadata["im_api"]], done) if "im_api" in c.metadata else c)
        module = info["module"]
        if module in alls:
            missing = []
            for n in alls[module]:
                r = resolve(n, module, table)
                if r and r[0] not in info["shown"] and r[0] not in done:
                    missing.append(r)
            if missing:
                cells.append(nbformat.v4.new_markdown_cell(
                    "## More of the API\n\nExported by `" + f"{LIB}.{module}" + "` and not shown above."))
                cells.append(api_cell(missing, done))
        nb.cells = cells


def page(exec_nb: Path, table: dict, executed: bool, stems: set = frozenset()) -> tuple[object, str, dict]:
    """One notebook as the page Sphinx renders (its API cells deferred to `finish_pages`), its title, and what
    `finish_pages` needs: its module and the objects it shows."""
    raw = nbformat.read(exec_nb, as_version=4)
    module = default_exp(raw)
    # remember cached/fresh marks by source (nbdev's processing rebuilds cells)
    cached = {c.source.strip() for c in raw.cells if c.metadata.get("im_cached")}
    stale = {c.source.strip(): c.metadata["im_stale"] for c in raw.cells if c.metadata.get("im_stale")}
    nb = nbdev_process(exec_nb)
    fm = frontmatter(nb)
    title = title_of(nb, fm, exec_nb.stem)
    cells = [nbformat.v4.new_markdown_cell(f"# {title}\n\n" + (f"> {fm['description']}\n" if fm.get("description") else ""))]
    if not executed:
        cells.append(nbformat.v4.new_markdown_cell(
            ":::{note}\n:class: im-committed\nThe outputs on this page are those committed with the notebook: this "
            "build did not run it (`python tools/build_docs.py` without `--no-exec` does).\n:::"))
    shown = set()
    for c in nb.cells:
        if c.cell_type == "raw" or "AUTOGENERATED" in c.source:
            continue
        if c.cell_type == "markdown":
            c.source = link_names(c.source, table, stems)
            cells.append(c)
            continue
        targets = show_doc_targets(c.source)
        if targets:
            entries = [r for r in (resolve(t, module, table) for t in targets) if r]
            for t in targets:
                if not resolve(t, module, table):
                    print(f"  warning: show_doc({t}) in {exec_nb.name} names nothing exported; left out")
            shown.update(e[0] for e in entries)
            if entries:
                cells.append(api_placeholder(entries))
            continue
        was_cached = any(c.source.strip() and c.source.strip() in s for s in cached)
        uses = next((v for k, v in stale.items() if c.source.strip() and c.source.strip() in k), None)
        lines = c.source.splitlines()
        opts = [l[2:].strip() for l in lines if l.startswith("#|")]
        c.source = "\n".join(l for l in lines if not l.startswith("#|")).strip()
        tags = c.metadata.setdefault("tags", [])
        if "echo: false" in opts or not c.source:
            tags.append("remove-input")
        if "output: false" in opts:
            tags.append("remove-output")
        clean_outputs(c)
        if not c.source and not c.outputs:
            continue
        cells.append(c)
        if was_cached and c.outputs:
            cells.append(nbformat.v4.new_markdown_cell(
                "```{raw} html\n<div class=\"im-cached\">\u21b3 cached output: this cell is flagged <code>#| slow</code> "
                "and was not re-run by this build; the output above is the one committed with the notebook "
                "(<code>python tools/build_docs.py --slow</code> re-runs it).</div>\n```"))
        elif uses and c.outputs:
            names = ", ".join(f"<code>{n}</code>" for n in uses)
            cells.append(nbformat.v4.new_markdown_cell(
                "```{raw} html\n<div class=\"im-cached\">\u21b3 cached output: this cell uses " + names + " from a "
                "<code>#| slow</code> cell above that this build did not re-run, so the output above is the one committed "
                "with the notebook, consistent with the slow cell's (<code>python tools/build_docs.py --slow</code> "
                "re-runs both).</div>\n```"))
    nb.cells = cells
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                   "language_info": {"name": "python", "pygments_lexer": "ipython3"}}
    return nb, title, {"module": module, "shown": shown}


# ---------------------------------------------------------------- main
def cpu_seconds() -> float:
    "CPU seconds (user + system) of this process and of its children that have ended."
    import resource
    return sum(getattr(resource.getrusage(w), f) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
               for f in ("ru_utime", "ru_stime"))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    t0, c0 = time.perf_counter(), cpu_seconds()
    do_exec = "--no-exec" not in argv
    slow = "--slow" in argv
    kernels = "--kernels" in argv  # a fresh Jupyter kernel per notebook (the slower way this build used to run them)
    names = [a for a in argv if not a.startswith("--")]
    src = [NBS / n for n in names] if names else sorted(NBS.glob("*.ipynb"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"  # figures into the page
    for d in (BUILD, SRC):
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
    jobs = next((int(a.split("=", 1)[1]) for a in argv if a.startswith("--jobs=")), min(2, os.cpu_count() or 1))
    if do_exec and jobs > 1:
        # notebooks run side by side (`--jobs=N`, default one per core up to 2), like the test suite's two workers;
        # each keeps to one BLAS/torch thread so that two of them share the cores instead of fighting
        for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ.setdefault(v, "1")
    os.chdir(ROOT)  # nbdev reads settings.ini from the working folder
    mods = [m for m in (default_exp(nbformat.read(p, as_version=4)) for p in sorted(NBS.glob("*.ipynb"))) if m]
    if do_exec and not kernels:
        print(f"imported the libraries once, for every notebook, in {preload(mods):.1f}s", flush=True)
    table, alls = symbols(mods)
    stems = {p.stem for p in src}
    processed, titles = {}, {}

    spent = [0.0]

    def process(stem):  # nbdev's processing of one executed notebook, while the others still run
        start = time.process_time()
        nb, titles[stem], info = page(BUILD / f"{stem}.ipynb", table, executed=do_exec, stems=stems)
        processed[stem] = (nb, info)
        spent[0] += time.process_time() - start

    times = {}
    if do_exec:
        known = exec_times()
        # longest first: the last notebooks to start are short ones, so no process runs alone for long at the end
        first = execution_order(src, known)
        print(f"executing {len(src)} notebooks, {jobs} at a time, longest first"
              f"{' (a Jupyter kernel each)' if kernels else ''} ...", flush=True)
        try:
            if kernels:
                from concurrent.futures import ThreadPoolExecutor
                with ThreadPoolExecutor(max_workers=jobs) as pool:
                    futs = {nb: pool.submit(execute_kernel, nb, BUILD / nb.name, slow) for nb in first}
                    for nb in src:
                        times[nb.stem] = futs[nb].result()
                for nb in src:
                    process(nb.stem)
            else:
                times = run_forked(first, jobs, slow, ROOT / "_build" / "logs", done=process)
        except Exception as e:
            print(f"executing the notebooks failed: {type(e).__name__}: {str(e)[-4000:]}", file=sys.stderr)
            return 1
        for nb in src:
            print(f"  {nb.name}: {times[nb.stem]:.1f}s", flush=True)
        print(f"  (sum {sum(times.values()):.0f}s over {jobs} at a time)")
        if not slow:
            TIMES.write_text(json.dumps({**known, **{k: round(v, 1) for k, v in times.items()}}, indent=0, sort_keys=True))
    else:
        for nb in src:
            shutil.copy(nb, BUILD / nb.name)
            process(nb.stem)
    order = sorted(processed, key=lambda stem: (stem != "index", stem))
    finish_pages([processed[stem] for stem in order], alls, table)
    for stem in order:
        nb = processed[stem][0]
        if stem == "index":
            toc = "\n".join(q for q in order if q != "index")
            nb.cells.append(nbformat.v4.new_markdown_cell(f"```{{toctree}}\n:hidden:\n:maxdepth: 1\n\n{toc}\n```"))
        nbformat.write(nb, SRC / f"{stem}.ipynb")
    t1, c1 = time.perf_counter(), cpu_seconds()
    print(f"pages ready ({len(order)}) in {t1 - t0:.0f}s, {c1 - c0:.0f} CPU-s ({spent[0]:.0f} of them processing pages)", flush=True)
    print("rendering with Sphinx ...", flush=True)
    out = ROOT / "_build" / "html"  # MyST-NB writes its jupyter_execute/ beside the output folder
    for d in (DOCS, out):
        if d.exists():
            shutil.rmtree(d)
    sym = ROOT / "_build" / "symbols.json"   # a file, not an environment variable: one variable may hold at most 128 KiB
    sym.parent.mkdir(parents=True, exist_ok=True)
    sym.write_text(json.dumps(table))
    os.environ["IM_SYMBOLS_FILE"] = str(sym)
    processed.clear()
    # Sphinx in this process: the package is imported already, and Sphinx's parallel readers (every extension is
    # parallel-safe: docs/_ext/im_mathjax.py) are forked from it, so none imports torch and the package again
    from sphinx.cmd.build import build_main
    rc = build_main(["-b", "html", "-q", "-c", str(CONF), "-d", str(ROOT / "_build" / "doctrees"), "-j", str(jobs),
                     str(SRC), str(out)])
    if rc:
        return rc
    shutil.move(out, DOCS)
    mode = "no-exec" if not do_exec else "slow" if "--slow" in argv else "exec"
    (DOCS / ".im-build.json").write_text(json.dumps({"mode": mode, "pages": order}))
    print(f"Sphinx: {time.perf_counter() - t1:.0f}s, {cpu_seconds() - c1:.0f} CPU-s")
    print(f"wrote {DOCS.relative_to(ROOT)}/ ({len(order)} pages) in {time.perf_counter() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
