"""Sphinx extension: maths typeset by MathJax 3 served from the site itself (offline), safe for a parallel build.

The MathJax files come from the registry package `sphinx-mathjax-offline` (its `static/mathjax` folder, MathJax's
own distribution); this extension points `mathjax_path` at `_static/mathjax/tex-chtml.js` and copies the folder
there once the build has succeeded. The package's own extension does the same, but it does not declare itself
safe for parallel reading and writing, so Sphinx ignored `-j` for the whole site; this one does (it keeps no state).
"""
import importlib.util
import shutil
from pathlib import Path

PACKAGE = "sphinx-mathjax-offline"
ENTRY = "mathjax/tex-chtml.js"


def mathjax_folder() -> Path:
    "The folder of MathJax's distribution shipped by the registry package (an error naming the package when missing)."
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the maths of the site needs the package {PACKAGE} (the docs extra of setup.py)")
    folder = Path(list(spec.submodule_search_locations)[0]) / "static" / "mathjax"
    if not (folder / "tex-chtml.js").is_file():
        raise RuntimeError(f"{folder} has no tex-chtml.js: reinstall {PACKAGE}")
    return folder


def set_path(app, config):
    config.mathjax_path = ENTRY


def copy_files(app, exc):
    if exc is None and app.builder.format == "html":
        shutil.copytree(mathjax_folder(), Path(app.outdir) / "_static" / "mathjax", dirs_exist_ok=True)


def setup(app):
    mathjax_folder()  # fail at once, not after the build
    app.connect("config-inited", set_path)
    app.connect("build-finished", copy_files)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
