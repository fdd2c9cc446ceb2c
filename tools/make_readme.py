"""Write README.md from nbs/index.ipynb (nbdev_readme needs Quarto, which is unavailable here).

`python tools/make_readme.py` writes it; `--check` exits 1 when README.md is stale. The conversion
uses the notebook's saved outputs, so run the notebook (or `make docs`) before regenerating.
"""
from pathlib import Path
import re
import sys

import nbformat
from nbconvert import MarkdownExporter

ROOT = Path(__file__).resolve().parents[1]
HEADER = "<!-- Generated from nbs/index.ipynb by tools/make_readme.py: edit the notebook, not this file. -->\n\n"


def render_readme(nb_path: Path = ROOT / "nbs" / "index.ipynb") -> str:
    "The README text for the index notebook: hidden cells dropped, directives removed, site links pointed at notebooks."
    nb = nbformat.read(nb_path, as_version=4)
    keep = []
    for cell in nb.cells:
        src = cell.source.lstrip()
        if cell.cell_type == "code" and re.match(r"#\|\s*hide", src):
            continue
        if cell.cell_type == "code":
            cell.source = "\n".join(l for l in cell.source.splitlines() if not l.startswith("#|")).strip()
            for o in cell.get("outputs", []):  # GitHub shows text tables better than pandas' scoped HTML
                data = o.get("data", {})
                if "text/html" in data and "text/plain" in data:
                    del data["text/html"]
        keep.append(cell)
    nb.cells = keep
    nb.metadata["language_info"] = {"name": "python"}
    exporter = MarkdownExporter(exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(nb)
    body = re.sub(r"\]\((\d\d_[a-z_]+)\.html\)", r"](nbs/\1.ipynb)", body)
    body = re.sub(r"\n{3,}", "\n\n", body).strip() + "\n"
    return HEADER + body


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    text, target = render_readme(), ROOT / "README.md"
    if "--check" in argv:
        if target.read_text(encoding="utf-8") != text:
            print("README.md is stale: run `python tools/make_readme.py` (or `make export`).")
            return 1
        return 0
    target.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
