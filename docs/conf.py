"Sphinx configuration of the documentation site; `tools/build_docs.py` writes the pages and runs Sphinx with it."
import json
import os
import sys
from configparser import ConfigParser
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE / "_ext"))
cfg = ConfigParser(delimiters=["="])
cfg.read(ROOT / "settings.ini", encoding="utf-8")
ini = cfg["DEFAULT"]

project = ini["title"]
author = ini["author"]
copyright = ini["copyright"]
release = version = ini["version"]

extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.viewcode", "im_mathjax", "sphinx_copybutton", "im_api"]
root_doc = "index"
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
source_suffix = {".ipynb": "myst-nb", ".md": "myst-nb"}

# notebooks arrive executed (or with their committed outputs) and processed by nbdev: never run here
nb_execution_mode = "off"
nb_render_markdown_format = "myst"
nb_merge_streams = True
nb_output_stderr = "remove"
nb_mime_priority_overrides = [("html", "application/vnd.jupyter.widget-view+json", None),
                              ("html", "application/vnd.jupyter.stderr", None)]
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist", "attrs_inline"]
myst_heading_anchors = 3
myst_dmath_double_inline = True

autodoc_preserve_defaults = True
autodoc_typehints = "signature"
autodoc_member_order = "bysource"
autodoc_class_signature = "mixed"
add_module_names = False
maximum_signature_line_length = 88
toc_object_entries = True
toc_object_entries_show_parents = "hide"
python_use_unqualified_type_names = True
# Every module of the package imported here, once: autodoc imports them while reading, and Sphinx's parallel readers
# are forked from this process, so each would import torch and the package again (seconds of CPU each).
for _m in sorted(p.stem for p in (ROOT / ini["lib_path"]).glob("[!_]*.py")):
    __import__(f"{ini['lib_path']}.{_m}")
im_symbols = json.loads(Path(os.environ["IM_SYMBOLS_FILE"]).read_text()) if os.environ.get("IM_SYMBOLS_FILE") else {}

html_theme = "furo"
html_title = project
html_static_path = [str(HERE / "_static")]
html_css_files = ["im.css"]
html_copy_source = False
html_show_sourcelink = False
html_last_updated_fmt = None
pygments_style = "friendly"
pygments_dark_style = "monokai"
suppress_warnings = ["mystnb.unknown_mime_type", "myst.header"]
