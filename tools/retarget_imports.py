"""Point `from interest_migration.X import ...` lines at the modules that now define each name.

After a module is split (e.g. `data` -> `data`, `readers`, `simulate`), imports elsewhere still name the old
module. This tool finds where every name is defined by parsing `interest_migration/*.py` with `ast` (top-level
functions, classes and assignments; fastcore `@patch` methods are not module names) and rewrites each
`from interest_migration.X import a, b as c` / `from .X import ...` statement (parenthesised multi-line ones too,
at any indentation) in notebook code cells and Python files so that each name comes from its defining module.

- Aliases (`a as b`) are kept; names defined nowhere (or in several modules, none of them X) stay where they are.
- A name the notebook itself now defines (its `#| default_exp` module) is dropped from the import.
- Statements whose names all stay put are left byte for byte; running it twice changes nothing the second time.
- `import interest_migration.X as M` followed by `M.name` for a moved name is reported, not rewritten.

Usage:

    python tools/retarget_imports.py                   # nbs/*.ipynb tests/*.py tools/*.py, in place
    python tools/retarget_imports.py --check           # report what would change, exit 1 if anything would
    python tools/retarget_imports.py PATH ...          # only these files
"""
import ast
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
PKG = "interest_migration"


def _is_patch(node) -> bool:
    "A fastcore `@patch` / `@patch_to(...)` method: defined at top level but not a module name."
    for d in getattr(node, "decorator_list", []):
        f = d.func if isinstance(d, ast.Call) else d
        name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
        if name.startswith("patch"): return True
    return False


def _top_names(tree: ast.Module) -> set:
    "Names a module defines at top level (not the ones it imports)."
    out = set()
    for s in tree.body:
        if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if not _is_patch(s): out.add(s.name)
        elif isinstance(s, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = s.targets if isinstance(s, ast.Assign) else [s.target]
            for t in targets:
                for n in ast.walk(t):
                    if isinstance(n, ast.Name): out.add(n.id)
    out.discard("__all__")
    return out


def definitions(pkg: Path = ROOT / PKG) -> dict:
    "name -> sorted list of the package's modules that define it at top level."
    found = {}
    for f in sorted(pkg.glob("*.py")):
        if f.name.startswith("_"): continue
        for n in _top_names(ast.parse(f.read_text(encoding="utf-8"))):
            found.setdefault(n, []).append(f.stem)
    return {n: sorted(m) for n, m in found.items()}


def _parse(src: str):
    "ast of a cell or file; cell magics, shell escapes and `?` help lines are blanked (line numbers kept)."
    try:
        return ast.parse(src)
    except SyntaxError:
        lines = ["" if l.lstrip().startswith(("%", "!")) or l.rstrip().endswith("?") else l for l in src.split("\n")]
        try:
            return ast.parse("\n".join(lines))
        except SyntaxError:
            return None


def _target(name: str, module: str, defs: dict) -> str:
    "The module `name` should be imported from (its current one when unknown, ambiguous or still defined there)."
    where = defs.get(name, [])
    if module in where or len(where) != 1: return module
    return where[0]


def _format(prefix: str, module: str, aliases: list, indent: str, width: int = 120) -> str:
    "One `from MODULE import ...` statement, wrapped in parentheses when longer than `width`."
    names = [a.name + (f" as {a.asname}" if a.asname else "") for a in aliases]
    head = f"from {prefix}{module} import "
    line = head + ", ".join(names)
    if len(indent + line) <= width: return line
    pad = indent + " " * (len(head) + 1)
    rows, cur = [], ""
    for n in names:
        if cur and len(pad + cur + n + ", ") > width:
            rows.append(cur.rstrip()); cur = ""
        cur += n + ", "
    rows.append(cur.rstrip().rstrip(","))
    return head + "(" + ("\n" + pad).join(rows) + ")"


def retarget_source(src: str, defs: dict, own: str | None = None) -> tuple:
    "Rewrite the package imports in `src`; returns (new source, list of change messages, list of warnings)."
    tree = _parse(src)
    if tree is None: return src, [], []
    lines = src.split("\n")
    edits, changes, warns = [], [], []
    modules = {m for ms in defs.values() for m in ms}
    aliases_of = {}  # `import interest_migration.X as M` -> M: X
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith(PKG + ".") and a.asname: aliases_of[a.asname] = a.name.split(".", 1)[1]
        if not isinstance(node, ast.ImportFrom) or not node.module: continue
        if node.level == 0 and node.module.startswith(PKG + "."):
            prefix, module = PKG + ".", node.module[len(PKG) + 1:]
        elif node.level == 1:
            prefix, module = ".", node.module
        else:
            continue
        if module not in modules or any(a.name == "*" for a in node.names): continue
        groups, dropped = {module: []}, []
        for a in node.names:
            t = _target(a.name, module, defs)
            if t == own and t != module: dropped.append(a.name); continue
            groups.setdefault(t, []).append(a)
        if len(groups) == 1 and not dropped: continue  # nothing moves: leave the text as it is
        first, last = lines[node.lineno - 1], lines[node.end_lineno - 1]
        before = first[:node.col_offset]
        after = last[node.end_col_offset:] if node.end_lineno > node.lineno else first[node.end_col_offset:]
        indent = before if not before.strip() else ""
        stmts = [_format(prefix, m, al, indent) for m, al in groups.items() if al]
        sep = "\n" + indent if indent == before else "; "
        if stmts: new = before + sep.join(stmts) + after
        else: new = before + "pass" + after if before else None  # all names dropped: keep a block valid, else drop the lines
        edits.append((node.lineno, node.end_lineno, new))
        for m, al in groups.items():
            if m != module and al: changes.append(f"line {node.lineno}: {', '.join(a.name for a in al)}: {module} -> {m}")
        if dropped: changes.append(f"line {node.lineno}: {', '.join(dropped)}: dropped (defined in this notebook's module {own})")
    if aliases_of:
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases_of:
                m = aliases_of[node.value.id]
                if _target(node.attr, m, defs) != m:
                    warns.append(f"line {node.lineno}: {node.value.id}.{node.attr}: {node.attr} now lives in "
                                 f"{_target(node.attr, m, defs)} (not rewritten)")
    for lo, hi, new in sorted(edits, reverse=True):
        lines[lo - 1:hi] = [] if new is None else new.split("\n")
    return "\n".join(lines), changes, warns


def _own_module(nb) -> str | None:
    for c in nb.cells:
        m = re.search(r"^#\|\s*default_exp\s+(\S+)", c.source, re.M) if c.cell_type == "code" else None
        if m: return m.group(1)
    return None


def retarget_file(path: Path, defs: dict, write: bool = True) -> tuple:
    "Retarget one notebook or Python file; returns (change messages, warnings), each prefixed with the place."
    changes, warns = [], []
    if path.suffix == ".ipynb":
        nb = nbformat.read(path, 4)
        own = _own_module(nb)
        for i, c in enumerate(nb.cells):
            if c.cell_type != "code": continue
            new, ch, w = retarget_source(c.source, defs, own)
            changes += [f"{path} cell {i} {m}" for m in ch]; warns += [f"{path} cell {i} {m}" for m in w]
            c.source = new
        if changes and write: nbformat.write(nb, path)
    else:
        src = path.read_text(encoding="utf-8")
        new, ch, w = retarget_source(src, defs)
        changes += [f"{path} {m}" for m in ch]; warns += [f"{path} {m}" for m in w]
        if changes and write: path.write_text(new, encoding="utf-8")
    return changes, warns


def main(argv: list) -> int:
    check = "--check" in argv
    paths = [Path(a) for a in argv if a != "--check"]
    if not paths:
        paths = sorted((ROOT / "nbs").glob("*.ipynb")) + sorted((ROOT / "tests").glob("*.py")) + sorted((ROOT / "tools").glob("*.py"))
    defs = definitions()
    n = 0
    for p in paths:
        ch, w = retarget_file(p, defs, write=not check)
        for m in ch: print(("would change " if check else "changed ") + m)
        for m in w: print("warning: " + m)
        n += len(ch)
    print(f"{n} import(s) {'to retarget' if check else 'retargeted'} in {len(paths)} file(s)")
    return 1 if (check and n) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
