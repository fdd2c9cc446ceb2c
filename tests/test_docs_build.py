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
    assert known["index"] == 63 and known["11a_store"] == 8 and "99_new" not in known
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
