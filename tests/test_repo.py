"Repository-level checks: the package matches the notebooks, README.md matches nbs/index.ipynb."
from pathlib import Path
import filecmp
import shutil
import subprocess
import sys

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from make_readme import render_readme  # noqa: E402


def _tree(p: Path) -> dict:
    return {f.relative_to(p): f for f in p.rglob("*.py") if "__pycache__" not in f.parts}


def test_package_in_sync_with_notebooks(tmp_path):
    "nbdev_export on a copy of the repo must leave interest_migration/ exactly as committed."
    for name in ("settings.ini", "setup.py"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "nbs", tmp_path / "nbs")
    shutil.copytree(ROOT / "interest_migration", tmp_path / "interest_migration",
                    ignore=shutil.ignore_patterns("__pycache__"))
    exe = Path(sys.executable).with_name("nbdev_export")
    subprocess.run([str(exe)], cwd=tmp_path, check=True, capture_output=True)
    before, after = _tree(ROOT / "interest_migration"), _tree(tmp_path / "interest_migration")
    assert sorted(before) == sorted(after), "nbdev_export would add or remove modules"
    stale = [str(k) for k in before if not filecmp.cmp(before[k], after[k], shallow=False)]
    assert not stale, f"nbdev_export would change {stale}: edit the notebook, run nbdev_export, commit both"


def test_readme_matches_index_notebook():
    assert (ROOT / "README.md").read_text(encoding="utf-8") == render_readme(), \
        "README.md is stale: run `python tools/make_readme.py`"


def test_no_cell_mixes_imports_with_code():
    "nbdev's doc processing runs a non-exported cell's imports on their own: keep them in cells of their own."
    from split_imports import mixed_cells
    import nbformat
    bad = [f"{p.name} cell {i}" for p in sorted((ROOT / "nbs").glob("*.ipynb"))
           for i, _ in mixed_cells(nbformat.read(p, 4))]
    assert not bad, f"run `python tools/split_imports.py nbs/*.ipynb`: {bad}"


def test_export_cells_in_fastcore_rhythm():
    "One definition per export cell (tools/split_export_cells.py leaves nothing to split); short cells."
    import statistics
    import nbformat
    from split_export_cells import split_source, patch_methods
    every = []
    for p in sorted((ROOT / "nbs").glob("*.ipynb")):
        ex = [c.source for c in nbformat.read(p, 4).cells
              if c.cell_type == "code" and c.source.lstrip().startswith("#| export")]
        if not ex:
            continue
        unsplit = [s.splitlines()[1][:60] for s in ex
                   if len([q for part in split_source(s) for q in patch_methods(part)]) > 1]
        assert not unsplit, f"{p.name}: run `python tools/split_export_cells.py {p}`: {unsplit}"
        lens = [len(s.splitlines()) for s in ex]
        every += lens
        assert statistics.median(lens) <= 30, f"{p.name}: median export cell {statistics.median(lens)} lines"
        assert max(lens) <= 80, f"{p.name}: an export cell of {max(lens)} lines"
    assert statistics.median(every) <= 25, f"median export cell {statistics.median(every)} lines"


def test_no_private_name_imported_across_modules():
    "A name another module imports is interface: it is public (tools/publicize.py renames the old private ones)."
    import ast
    found = []
    for f in sorted((ROOT / "interest_migration").glob("*.py")):
        if f.name.startswith("_"): continue
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
                found += [f"{f.stem} imports {node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
    assert not found, "make these public (add them to tools/publicize.py's MAPPING and run it): " + "; ".join(found)


def test_publicize_renames_whole_names_only():
    "The rename touches a name standing alone or after a package module, never a longer name, an attribute or an output."
    import json
    import publicize as P
    m = {"_widget": "widget_public", "_gizmo": "gizmo_public"}
    pat = P.pattern(m, ["encoders", "data"])
    src = ("from .encoders import _widget, _widget_size\nx = _widget(h) + self._widget + my_widget + encoders._widget\n"
           "y = interest_migration.data._gizmo(df); z = other._gizmo; s = '_gizmo'; w = _gizmo_all")
    out, n = P.rename_text(src, pat, m)
    assert out == ("from .encoders import widget_public, _widget_size\nx = widget_public(h) + self._widget + my_widget + encoders.widget_public\n"
                   "y = interest_migration.data.gizmo_public(df); z = other._gizmo; s = 'gizmo_public'; w = _gizmo_all")
    assert n == 5 and P.rename_text(out, pat, m) == (out, 0)            # idempotent
    nb = {"cells": [{"cell_type": "code", "source": ["_gizmo(df)\n", "_widget"], "outputs": [{"text": ["_gizmo\n"]}], "metadata": {}}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    raw = json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + "\n"
    new, k = P.rename_notebook(raw, pat, m)
    cell = json.loads(new)["cells"][0]
    assert (k, cell["source"], cell["outputs"]) == (2, ["gizmo_public(df)\n", "widget_public"], [{"text": ["_gizmo\n"]}])
    assert P.rename_notebook(new, pat, m) == (new, 0)
    P._check_mapping(P.MAPPING)
    for bad in ({"_a": "x", "_b": "x"}, {"_a": "_b"}, {"a": "b"}):   # two names merged; private -> private; not private
        try: P._check_mapping(bad)
        except ValueError: continue
        raise AssertionError(f"{bad} must be refused")


def test_publicize_has_nothing_left_to_rename():
    "Every old private name is gone from nbs/, tests/ and tools/ (run `python tools/publicize.py` after merging a branch)."
    import publicize as P
    assert P.main(["--check"]) == 0
