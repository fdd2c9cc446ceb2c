"""Split `#| export` cells so each holds one top-level definition (fastcore's rhythm).

`python tools/split_export_cells.py nbs/*.ipynb` rewrites the notebooks in place; running it twice changes nothing.
A cell is split before each top-level `def`/`class` (with its decorators and the comment lines right above it);
constants and other statements stay with the definition that follows them (or the one before, at the end of a cell).
Classes are never split. The exported module is unchanged except for nbdev's `# %%` cell markers.
"""
from pathlib import Path
import ast
import re
import sys

import nbformat

EXPORT = re.compile(r"^#\|\s*(export|exporti|exports)\b")


def _directives(lines: list) -> int:
    "Number of leading directive lines (`#| ...`)."
    n = 0
    while n < len(lines) and lines[n].lstrip().startswith("#|"):
        n += 1
    return n


def split_source(src: str) -> list:
    "The source of one export cell as a list of cell sources, one top-level definition each."
    lines = src.splitlines()
    nd = _directives(lines)
    head, body = lines[:nd], lines[nd:]
    if not head or not EXPORT.match(head[0].strip()):
        return [src]
    try:
        tree = ast.parse("\n".join(body))
    except SyntaxError:
        return [src]
    defs = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    if len(defs) < 2:
        return [src]
    starts = []
    for n in defs:
        s = min([n.lineno] + [d.lineno for d in n.decorator_list]) - 1  # 0-based line of the first decorator
        while s > 0 and body[s - 1].lstrip().startswith("#"):  # comment lines right above belong to it
            s -= 1
        starts.append(s)
    # statements between two definitions stay with the following definition: cut at the end of the previous one
    cuts = []
    prev_end = None
    for n, s in zip(defs, starts):
        if prev_end is not None:
            between = [x for x in tree.body if prev_end <= x.lineno - 1 < s]
            cuts.append(prev_end if between else s)
        prev_end = n.end_lineno
    cuts = [0] + cuts + [len(body)]
    pieces = []
    for a, b in zip(cuts[:-1], cuts[1:]):
        chunk = body[a:b]
        while chunk and not chunk[0].strip():
            chunk = chunk[1:]
        while chunk and not chunk[-1].strip():
            chunk = chunk[:-1]
        if chunk:
            pieces.append("\n".join(head + chunk))
    return pieces if len(pieces) > 1 else [src]


def _has_zero_arg_super(node) -> bool:
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "super" and not n.args
               for n in ast.walk(node))


def patch_methods(src: str, max_lines: int = 80) -> list:
    "A cell holding one class longer than `max_lines`: the class with its dunder methods, then one `@patch` cell per other method."
    lines = src.splitlines()
    if len(lines) <= max_lines:
        return [src]
    nd = _directives(lines)
    head, body = lines[:nd], lines[nd:]
    try:
        tree = ast.parse("\n".join(body))
    except SyntaxError:
        return [src]
    classes = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    if len(classes) != 1 or len([n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]) != 1:
        return [src]
    cls = classes[0]
    moved, keep_out = [], set()
    for m in cls.body:
        if not isinstance(m, ast.FunctionDef) or m.name.startswith("__"):
            continue
        decos = [ast.unparse(d) for d in m.decorator_list]
        if any(d not in ("classmethod", "property") for d in decos) or _has_zero_arg_super(m) or not m.args.args:
            continue
        if m.args.args[0].annotation is not None:
            continue
        s = m.lineno - 1 - len(m.decorator_list)
        s = min([m.lineno] + [d.lineno for d in m.decorator_list]) - 1
        while s > 0 and body[s - 1].strip().startswith("#"):
            s -= 1
        moved.append((s, m.end_lineno, m, decos))
    if not moved:
        return [src]
    drop = set()
    cells = []
    for s, e, m, decos in moved:
        drop.update(range(s, e))
        chunk = body[s:e]
        indent = len(chunk[-1]) - len(chunk[-1].lstrip()) if False else None
        first = body[m.lineno - 1]
        ind = len(first) - len(first.lstrip())
        chunk = [l[ind:] if l[:ind].strip() == "" else l.lstrip() for l in chunk]
        chunk = [l for l in chunk if not (l.startswith("@classmethod") or l.startswith("@property"))]
        arg0 = m.args.args[0].arg
        # annotate the first argument with the class: `def f(self, x)` -> `def f(self: Cls, x)`
        for i, l in enumerate(chunk):
            if l.startswith("def "):
                chunk[i] = re.sub(r"\(\s*" + arg0 + r"\b", f"({arg0}: {cls.name}", l, count=1)
                break
        deco = "@patch" + ("(cls_method=True)" if "classmethod" in decos else "(as_prop=True)" if "property" in decos else "")
        cells.append("\n".join(head + [deco] + chunk))
    rest = [l for i, l in enumerate(body) if i not in drop]
    # collapse runs of blank lines left behind
    out = []
    for l in rest:
        if not l.strip() and out and not out[-1].strip():
            continue
        out.append(l)
    while out and not out[-1].strip():
        out.pop()
    try:
        t2 = ast.parse("\n".join(out))
        c2 = [n for n in t2.body if isinstance(n, ast.ClassDef)][0]
        if not c2.body:
            raise SyntaxError
    except (SyntaxError, IndexError):
        return [src]
    return ["\n".join(head + out)] + cells


def split_notebook(path: Path) -> int:
    "Split the export cells of one notebook in place; returns the number of cells added."
    nb = nbformat.read(path, as_version=4)
    cells, added = [], 0
    for c in nb.cells:
        if c.cell_type != "code":
            cells.append(c)
            continue
        parts = [q for p in split_source(c.source) for q in patch_methods(p)]
        if len(parts) == 1:
            cells.append(c)
            continue
        for i, p in enumerate(parts):
            new = nbformat.v4.new_code_cell(p)
            new.metadata = dict(c.metadata)
            if i == len(parts) - 1:
                new.outputs = c.outputs  # outputs of an export cell belong after its last definition
            cells.append(new)
        added += len(parts) - 1
    if added:
        if any(c.cell_type == "code" and "\n@patch" in c.source for c in cells):
            _add_patch_import(cells)
        nb.cells = cells
        nbformat.write(nb, path)
    return added


def _add_patch_import(cells: list):
    "Make sure the notebook's first export cell imports fastcore's `patch`."
    for c in cells:
        if c.cell_type == "code" and EXPORT.match(c.source.strip()) and re.search(r"^(import|from) ", c.source, re.M):
            if "from fastcore.basics import patch" not in c.source:
                lines = c.source.splitlines()
                nd = _directives(lines)
                tree = ast.parse("\n".join(lines[nd:]))
                third = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom)) and not getattr(n, "level", 0)]
                at = nd + (third[-1].end_lineno if third else 0)
                lines.insert(at, "from fastcore.basics import patch")
                c.source = "\n".join(lines)
            return


if __name__ == "__main__":
    for p in sys.argv[1:]:
        n = split_notebook(Path(p))
        print(f"{p}: {n} cell(s) added")
