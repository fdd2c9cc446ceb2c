"Fast checks of tools/build_docs.py's own logic (the site itself is checked by the slow tests/test_docs.py)."
import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _build_docs():
    spec = importlib.util.spec_from_file_location("build_docs", ROOT / "tools" / "build_docs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_longest_notebooks_execute_first(tmp_path, monkeypatch):
    bd = _build_docs()
    src = [bd.NBS / f"{n}.ipynb" for n in ("99_b", "07_tuning", "index", "99_new", "11a_store")]
    monkeypatch.setattr(bd, "TIMES", tmp_path / "missing.json")   # a fresh clone: the measured table only
    known = bd.exec_times()
    assert known["index"] == 75 and known["11a_store"] == 9 and "99_new" not in known
    assert [p.stem for p in bd.execution_order(src, known)] == ["index", "07_tuning", "99_b", "99_new", "11a_store"]
    # after a build: its own times win, the measured table fills the rest
    (tmp_path / "t.json").write_text(json.dumps({"index": 30.5, "99_b": 70.0, "99_new": 25.0}))
    monkeypatch.setattr(bd, "TIMES", tmp_path / "t.json")
    known = bd.exec_times()
    assert [p.stem for p in bd.execution_order(src, known)] == ["99_b", "07_tuning", "index", "99_new", "11a_store"]
    (tmp_path / "t.json").write_text("{not json")
    assert bd.exec_times() == bd._MEASURED


def test_closing_export_cell_is_not_executed():
    "Every notebook's hidden `nbdev_export()` cell (no output, rewrites the package) is skipped by the docs build; nothing else is."
    bd = _build_docs()
    import nbformat
    hits = 0
    for p in sorted(bd.NBS.glob("*.ipynb")):
        for c in nbformat.read(p, as_version=4).cells:
            if c.cell_type == "code" and bd._EXPORT.match(c.source):
                hits += 1
                assert "nbdev_export" in c.source and c.source.lstrip().startswith("#| hide") and len(c.source) < 60
    assert hits >= 40
    assert not bd._EXPORT.match("#| hide\nimport nbdev; nbdev.nbdev_export()\nprint(1)")
    assert not bd._EXPORT.match("x = 1\nimport nbdev; nbdev.nbdev_export()")


def _tiny_notebook(path, cells):
    import nbformat
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src, outputs=outs) for src, outs in cells]
    nbformat.write(nb, path)


def test_forked_executor_keeps_what_a_kernel_shows(tmp_path, monkeypatch):
    """The build's executor (nbdev's CaptureShell in a forked child): printed text, a DataFrame as an HTML table, a
    figure as a PNG in the house style, the notebook's folder as working directory; `#| slow` cells keep their committed
    output, marked cached; the closing nbdev_export() cell is not run."""
    import base64, io
    import nbformat
    from PIL import Image
    bd = _build_docs()
    nbs, build = tmp_path / "nbs", tmp_path / "exec"
    nbs.mkdir(), build.mkdir()
    monkeypatch.setattr(bd, "NBS", nbs)
    monkeypatch.setattr(bd, "BUILD", build)
    old = nbformat.v4.new_output("stream", name="stdout", text="committed\n")
    _tiny_notebook(nbs / "a.ipynb", [
        ("import os, pandas as pd\nprint('hello', os.path.basename(os.getcwd()))", []),
        ("pd.DataFrame({'n': [1, 2]})", []),
        ("import matplotlib.pyplot as plt\nfig, ax = plt.subplots(figsize=(4, 3)); ax.plot([0, 1])", []),
        ("#| slow\nprint('ran')", [old]),
        ("#| hide\nimport nbdev; nbdev.nbdev_export()", []),
    ])
    monkeypatch.chdir(tmp_path)
    times = bd.run_forked([nbs / "a.ipynb"], 1, False, tmp_path / "logs")
    assert set(times) == {"a"} and times["a"] > 0
    cells = nbformat.read(build / "a.ipynb", as_version=4).cells
    assert cells[0].outputs[0].text == "hello nbs\n"
    assert "<table" in cells[1].outputs[0].data["text/html"]
    png = [o for o in cells[2].outputs if "image/png" in o.get("data", {})]
    assert len(png) == 1
    im = Image.open(io.BytesIO(base64.b64decode(png[0].data["image/png"])))
    # 4 inches at the house style's 110 dpi, less the margins a tight bounding box trims (at a kernel's default of
    # 72 dpi it could not exceed 288 px)
    assert 350 < im.size[0] <= 440, im.size
    assert round(im.info["dpi"][0]) == 110, im.info
    assert cells[3].outputs == [old] and cells[3].metadata["im_cached"]
    assert cells[4].outputs == [] and "skip-execution" in cells[4].metadata["tags"]


def test_forked_executor_names_the_failing_notebook_and_cell(tmp_path, monkeypatch):
    import pytest
    bd = _build_docs()
    nbs, build = tmp_path / "nbs", tmp_path / "exec"
    nbs.mkdir(), build.mkdir()
    monkeypatch.setattr(bd, "NBS", nbs)
    monkeypatch.setattr(bd, "BUILD", build)
    _tiny_notebook(nbs / "ok.ipynb", [("x = 1", [])])
    _tiny_notebook(nbs / "bad.ipynb", [("x = 1", []), ("print('before')\n1 / 0", [])])
    with pytest.raises(bd.CellError, match=r"(?s)bad\.ipynb.*code cell 2.*ZeroDivisionError"):
        bd.run_forked([nbs / "ok.ipynb", nbs / "bad.ipynb"], 2, False, tmp_path / "logs")
    assert not (build / "bad.ipynb").exists()


def test_cells_that_depend_on_a_skipped_slow_cell():
    "Known answers on a planted notebook: what a slow cell binds or changes in place taints the fast cells that read it."
    import nbformat
    bd = _build_docs()
    cells = [nbformat.v4.new_code_cell(s) for s in [
        "models = {'a': 1}\nn = 3",                 # 0 fast
        "#| slow\nmodels['big'] = fit(n)",         # 1 slow: changes `models` in place
        "table = evaluate(models)\ntable",          # 2 reads models -> stale; `table` derived
        "table.plot()",                             # 3 reads table -> stale
        "for m in range(n): print(m)",              # 4 own loop variable, n untouched by the slow cell -> fresh
        "#| slow\nclf = Model()\nclf.fit(X)",      # 5 slow: binds clf
        "clf = Model()\nclf.fit(X[:10])\nclf.score(X)",  # 6 binds clf itself before use -> fresh
        "import numpy as np\nnp.mean([1])",         # 7 fresh
        "models = {'b': 2}",                        # 8 rebinds models from fresh values -> fresh
        "len(models)",                              # 9 fresh again
        "%time evaluate(models)",                   # 10 magic line: not parsed as Python; fresh
    ]]
    cells.insert(1, nbformat.v4.new_markdown_cell("prose"))
    assert bd.stale_cells(cells) == {3: ["models"], 4: ["table"]}


def test_tagging_results_depend_on_the_fine_tune():
    """The issue's example (05_tagging, now 08_tagging): the results table evaluates `taggers`, which the slow fine-tune
    cell extends; a fast build keeps the table (and what is derived from it) as committed, with the fine-tuned model."""
    import nbformat
    bd = _build_docs()
    nb = nbformat.read(bd.NBS / "08_tagging.ipynb", as_version=4)
    stale = bd.stale_cells(nb.cells)
    table = next(i for i, c in enumerate(nb.cells) if "evaluate_taggers(taggers" in c.source and "#| export" not in c.source)
    assert stale[table] == ["taggers"]
    assert "MiniLM fine-tuned" in str(nb.cells[table].outputs)  # the committed table, kept by the fast build
    fine_tune = next(i for i, c in enumerate(nb.cells) if bd._SLOW.search(c.source) and 'taggers["MiniLM fine-tuned"]' in c.source)
    assert min(stale) > fine_tune
    marked = bd.mark_cells(nb)
    assert marked.cells[table].metadata["im_stale"] == ["taggers"]
    fresh = [nbformat.v4.new_output("stream", name="stdout", text="recomputed without the fine-tune\n")]
    committed = nb.cells[table].metadata["im_committed"]
    nb.cells[table].outputs = fresh  # what running it in the fast build gives
    bd.restore_stale(nb)
    assert [dict(o) for o in nb.cells[table].outputs] == committed and "im_committed" not in nb.cells[table].metadata


def test_constants_do_not_show_their_types_docstring():
    "An exported array or dict constant gets a type/value table, not numpy's ndarray (or dict's) docstring."
    import sys
    import numpy as np
    sys.path.insert(0, str(ROOT / "docs" / "_ext"))
    import im_api
    import inspect
    for value in (np.arange(3.0), {"a": 1}):
        lines = inspect.cleandoc(value.__doc__).splitlines() + [""]  # what autodoc hands over (its prepare_docstring) for a constant without a `#:` comment; no Sphinx needed, `make test` has none
        im_api.process_docstring(None, "data", "interest_migration.x.CONST", value, {}, lines)
        text = "\n".join(lines)
        assert "list-table" in text and type(value).__name__ in text
        assert value.__doc__.strip().splitlines()[0].strip()[:30] not in text, text[:300]
    own = ["Hours of the day at which simulated users are active."]  # a constant's own `#:` docstring stays
    im_api.process_docstring(None, "data", "interest_migration.x.CONST", np.arange(3.0), {}, own)
    assert own[0] == "Hours of the day at which simulated users are active."
