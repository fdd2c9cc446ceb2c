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
