"Every notebook runs top to bottom through nbdev's own test machinery, honouring `tst_flags`."
from pathlib import Path
import time

import pytest
import nbdev.test as nbdev_test

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "nbs").glob("*.ipynb"))


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(nb, request, monkeypatch):
    # nbdev runs a notebook in its own folder, as JupyterLab does.
    monkeypatch.chdir(nb.parent)
    force = ["slow"] if request.config.getoption("--run-slow") else None
    start = time.perf_counter()
    ok, _ = nbdev_test.test_nb(nb, skip_flags=["slow", "cuda"], force_flags=force, showerr=True)
    assert ok, f"{nb.name} failed to run top to bottom (see the traceback above)"
    print(f"{nb.name}: {time.perf_counter() - start:.1f}s")
