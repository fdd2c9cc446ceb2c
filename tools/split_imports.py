"""Move top-level imports out of non-exported notebook code cells that also hold other code.

nbdev's doc processing (`proc_nbs`) executes import lines of non-exported cells on their own, so a cell that
mixes `import x` with code that uses other cells' names breaks the docs build. Usage:

    python tools/split_imports.py nbs/*.ipynb          # rewrite the notebooks in place
    python tools/split_imports.py --check nbs/*.ipynb  # list offending cells, exit 1 if any
"""
import ast
import sys

import nbformat


def _is_export(src: str) -> bool:
    first = src.lstrip().split("\n", 1)[0]
    return first.startswith("#|") and "export" in first


def mixed_cells(nb) -> list:
    "Indices of non-export code cells with top-level imports and other statements, with their import line numbers."
    found = []
    for i, c in enumerate(nb.cells):
        if c.cell_type != "code" or _is_export(c.source) or "#| hide" in c.source:
            continue                  # exported and hidden cells never reach the docs' execution
        try:
            tree = ast.parse(c.source)
        except SyntaxError:           # cell magics and shell escapes: leave alone
            continue
        imps = [s for s in tree.body if isinstance(s, (ast.Import, ast.ImportFrom))]
        if imps and len(imps) < len(tree.body):
            found.append((i, sorted({n for s in imps for n in range(s.lineno - 1, s.end_lineno)})))
    return found


def split(nb) -> int:
    "Put each mixed cell's imports (with its #| directives) in a new cell just before it; returns how many."
    found = dict(mixed_cells(nb))
    cells = []
    for i, c in enumerate(nb.cells):
        if i in found:
            lines = c.source.split("\n")
            directives = [l for l in lines if l.startswith("#|")]
            cells.append(nbformat.v4.new_code_cell("\n".join(directives + [lines[j] for j in found[i]])))
            c.source = "\n".join(l for j, l in enumerate(lines) if j not in found[i]).strip("\n")
        cells.append(c)
    nb.cells = cells
    return len(found)


def main(argv: list) -> int:
    check = "--check" in argv
    bad = 0
    for path in [a for a in argv if a != "--check"]:
        nb = nbformat.read(path, 4)
        if check:
            for i, _ in mixed_cells(nb):
                print(f"{path}: cell {i} mixes top-level imports with other code")
                bad += 1
        elif split(nb):
            nbformat.write(nb, path)
            print(f"{path}: split")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
