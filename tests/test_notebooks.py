"Every notebook runs top to bottom through nbdev's own test machinery, honouring `tst_flags`."
from pathlib import Path
import sys
import time

import pytest
import nbdev.test as nbdev_test

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "nbs").glob("*.ipynb"))


def _registries() -> list:
    "The registries a class joins when it is defined (its `kind` is the key)."
    from interest_migration.neural import SEQUENCE_MODELS
    from interest_migration.recommender import RECOMMENDERS
    return [RECOMMENDERS, SEQUENCE_MODELS]


def _package_class(cls):
    "The class of the same name defined in an imported interest_migration module, or None."
    for name, mod in list(sys.modules.items()):
        c = getattr(mod, cls.__name__, None) if name.startswith("interest_migration.") else None
        if isinstance(c, type) and c.__module__ == name:
            return c
    return None


def restore_registries(saved: list):
    """A notebook run in this process defines its classes again under `__main__`, and defining a class registers it:
    put the package's classes back, so a later test that loads a saved model gets the class its import names."""
    for reg, before in zip(_registries(), saved):
        for key, cls in list(reg.items()):
            if getattr(cls, "__module__", None) != "__main__":
                continue
            pkg = before.get(key) or _package_class(cls)
            if pkg is None or pkg.__module__ == "__main__":
                del reg[key]
            else:
                reg[key] = pkg


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(nb, request, monkeypatch):
    # nbdev runs a notebook in its own folder, as JupyterLab does.
    monkeypatch.chdir(nb.parent)
    force = ["slow"] if request.config.getoption("--run-slow") else None
    start = time.perf_counter()
    saved = [dict(r) for r in _registries()]
    try:
        ok, _ = nbdev_test.test_nb(nb, skip_flags=["slow", "cuda"], force_flags=force, showerr=True)
    finally:
        restore_registries(saved)
    assert ok, f"{nb.name} failed to run top to bottom (see the traceback above)"
    print(f"{nb.name}: {time.perf_counter() - start:.1f}s")


def test_restore_registries_puts_package_classes_back():
    "A class re-defined under __main__ (as a notebook run in-process does) is replaced by the package's class of that name."
    from interest_migration.recommender import RECOMMENDERS
    from interest_migration.zero_shot import ColdItemRecommender
    saved = [dict(r) for r in _registries()]
    fake = type("ColdItemRecommender", (), {"__module__": "__main__"})
    new = type("OnlyInANotebook", (), {"__module__": "__main__"})
    RECOMMENDERS["cold_item"], RECOMMENDERS["only_in_a_notebook"] = fake, new
    restore_registries(saved)
    assert RECOMMENDERS["cold_item"] is ColdItemRecommender and "only_in_a_notebook" not in RECOMMENDERS
