"""Export-cell shape of the notebooks (issue #16's "fastcore rhythm" figures).

    python tools/cell_stats.py nbs/*.ipynb     # median export-cell length, share of one-definition cells, longest cells

A cell counts as an export cell when its first line is `#| export` (or exporti/exports); its length is its lines
without the directive lines; its definitions are its top-level `def`/`class` statements (decorated ones included).
"""
import ast
import re
import statistics
import sys

import nbformat

EXPORT = re.compile(r"^#\|\s*(export|exporti|exports)\b")


def export_cells(paths: list) -> list:
    "(notebook, cell index, lines, definitions) of every export cell."
    out = []
    for path in paths:
        for i, c in enumerate(nbformat.read(path, 4).cells):
            lines = c.source.splitlines()
            if c.cell_type != "code" or not lines or not EXPORT.match(lines[0].strip()): continue
            body = [l for l in lines if not l.lstrip().startswith("#|")]
            try: tree = ast.parse("\n".join(body))
            except SyntaxError: continue
            n_defs = sum(isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) for s in tree.body)
            out.append((path, i, len(body), n_defs))
    return out


def main(argv: list) -> int:
    cells = export_cells(argv)
    with_defs = [c for c in cells if c[3] > 0]
    print(f"{len(cells)} export cells in {len(argv)} notebooks; median length {statistics.median(c[2] for c in cells):g} lines "
          f"(cells with a definition: {statistics.median(c[2] for c in with_defs):g}); "
          f"{sum(c[3] == 1 for c in with_defs) / len(with_defs):.1%} of the cells with definitions hold exactly one; "
          f"longest {max(c[2] for c in cells)} lines; over 80 lines: {sum(c[2] > 80 for c in cells)}")
    for p, i, n, d in sorted(cells, key=lambda c: -c[2])[:5]:
        print(f"  {n:4d} lines, {d} definition(s): {p} cell {i}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
