"""Sphinx extension: API entries with a docments parameter table, readable defaults, local cross-references.

Each autodoc entry of `interest_migration` gets a table (parameter, type, default, details) built by
fastcore's `docments` (the comments beside each parameter), defaults printed as written in the source
(`autodoc_preserve_defaults`), or readably (`0.05`, not `np.float64(0.05)`), and the markdown of the
docstrings turned into reStructuredText: backticked names that are exported symbols become local
cross-references, other backticks become literals, markdown links become links.
"""
import inspect
import re

RETURNS = "**returns**"
SYMBOLS: dict = {}  # short or dotted name -> full import path; filled by build_docs via config `im_symbols`


def fmt_default(v) -> str:
    "A default value as a reader wants to see it."
    if v is inspect.Parameter.empty:
        return ""
    if type(v).__name__ == "DefaultValue":  # autodoc_preserve_defaults: the text of the source
        return repr(v)
    try:
        import numpy as np
        if isinstance(v, np.generic):
            return repr(v.item())
    except ImportError:
        pass
    if inspect.isclass(v) or callable(v) and hasattr(v, "__name__"):
        mod = getattr(v, "__module__", "") or ""
        short = {"numpy": "np", "pandas": "pd"}.get(mod.split(".")[0], "")
        return f"{short}.{v.__name__}" if short else v.__name__
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


def fmt_type(a) -> str:
    "An annotation as short text."
    if a is inspect.Parameter.empty or a is None:
        return ""
    if isinstance(a, str):
        return a
    if inspect.isclass(a) and not getattr(a, "__args__", None):
        return a.__qualname__ if a.__module__ == "builtins" else a.__name__
    s = str(a)
    s = re.sub(r"\btyping\.", "", s)
    s = re.sub(r"<class '([\w.]+)'>", lambda m: m.group(1).rsplit(".", 1)[-1], s)
    s = re.sub(r"\b(?:[a-z_][\w]*\.)+([A-Z]\w*)", r"\1", s)  # pandas.core.frame.DataFrame -> DataFrame
    return s


def md_inline_to_rst(text: str) -> str:
    "Markdown inline markup of a docstring or docment as reStructuredText, with local cross-references."
    def link(m):
        return f"`{m.group(1).replace('`', '')} <{m.group(2)}>`__"
    text = re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", link, text)

    def code(m):
        name = m.group(1)
        key = name[:-2] if name.endswith("()") else name
        full = SYMBOLS.get(key)
        if full:
            return f":py:obj:`{name} <{full}>`"
        return f"``{name}``" if name.strip() else m.group(0)
    parts = re.split(r"((?<![`:])`[^`\n]+`(?![`_])|`[^`<>]+ <[^>]+>`__)", text)
    for i, part in enumerate(parts):
        if i % 2:
            parts[i] = code(re.match(r"`([^`\n]+)`", part)) if not part.endswith("`__") else part
        else:  # markdown prose: what reStructuredText would read as markup is escaped
            part = part.replace("\\", "\\\\").replace("|", "\\|")
            part = re.sub(r"(\w)_(?=\W|$)", r"\1\\_", part)
            if part.count("**") % 2 or "*" in part.replace("**", ""):
                part = part.replace("*", "\\*")
            parts[i] = part
    return "".join(parts)


def _cell(s: str) -> str:
    s = s.replace("\n", " ").strip()
    return s if s else "\u2014"


def param_rows(obj):
    "(name, type, default, details) for each parameter of `obj` (its __init__ for a class), and the return."
    from fastcore.docments import docments
    try:
        d = docments(obj, full=True)
    except Exception:
        return None
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        sig = None
    rows = []
    for name, info in d.items():
        if name == "return":
            continue
        p = sig.parameters.get(name) if sig else None
        if p is not None and p.kind is p.VAR_POSITIONAL:
            name = "*" + name
        elif p is not None and p.kind is p.VAR_KEYWORD:
            name = "**" + name
        if name.lstrip("*") in ("self", "cls"):
            continue
        default = p.default if p is not None else info.get("default", inspect.Parameter.empty)
        rows.append((name, fmt_type(info.get("anno")), fmt_default(default), info.get("docment") or ""))
    ret = d.get("return")
    if ret and (ret.get("docment") or ret.get("anno") not in (None, inspect.Parameter.empty)):
        rows.append((RETURNS, fmt_type(ret.get("anno")), "", ret.get("docment") or ""))
    return rows


def table(rows, header=("Parameter", "Type", "Default", "Details")) -> list:
    out = ["", ".. list-table::", "   :header-rows: 1", "   :class: im-params", ""]
    out.append("   * - " + header[0])
    out += [f"     - {h}" for h in header[1:]]
    for r in rows:
        name, *rest = r
        out.append("   * - " + (name if name == RETURNS else f"``{name}``"))
        for i, v in enumerate(rest):
            if i < len(rest) - 1:
                out.append("     - " + (f"``{v}``" if v else "\u2014"))
            else:
                out.append("     - " + _cell(md_inline_to_rst(v)))
    return out + [""]


def process_docstring(app, what, name, obj, options, lines):
    if not name.startswith("interest_migration"):
        return
    if what in ("data", "attribute"):
        first = next((l.strip() for l in lines if l.strip()), "")
        if first and first in (getattr(obj, "__doc__", None) or "") + (type(obj).__doc__ or ""):
            lines[:] = []  # the docstring of the value's type (ndarray, dict, tuple), not of this constant
    lines[:] = [md_inline_to_rst(l) for l in lines]
    if what in ("function", "method", "class"):
        rows = param_rows(obj)
        if rows is None:
            return
        if not rows:
            lines += ["", "*No parameters.*", "", ".. list-table::", "   :class: im-params im-noparams", "",
                      "   * - (none)", ""]
        else:
            lines += table(rows)
    elif what in ("data", "attribute"):
        r = repr(obj)
        r = r if len(r) <= 200 else r[:197] + "..."
        lines += ["", ".. list-table::", "   :header-rows: 1", "   :class: im-params", "",
                  "   * - Type", "     - Value", f"   * - ``{type(obj).__name__}``", "     - ``" +
                  r.replace("`", "'") + "``", ""]


def process_signature(app, what, name, obj, options, signature, return_annotation):
    "Readable numpy scalars in signatures that were not preserved from source."
    if signature:
        signature = re.sub(r"np\.(?:float|int)\d+\(([^()]*)\)", r"\1", signature)
        signature = re.sub(r"<function (\w+) at 0x[0-9a-f]+>", r"\1", signature)
        signature = re.sub(r"<_ArrayFunctionDispatcher object at 0x[0-9a-f]+>", "...", signature)
    return signature, return_annotation


def _unpadded_rst():
    """MyST pads each `eval-rst` block with one blank line per line of the page before it, to keep line numbers;
    MyST-NB numbers a notebook's cells 10,000 lines apart, so an API entry in cell 100 was parsed after a million
    blank lines (minutes per page). Parse the block as it is: the build's warnings lose the line number."""
    from myst_parser.mdit_to_docutils import base
    from myst_parser.mocking import MockRSTParser

    def render_restructuredtext(self, token) -> None:
        newdoc = base.make_document()
        newdoc["source"] = self.document["source"]
        newdoc.settings = self.document.settings
        newdoc.reporter = self.reporter
        MockRSTParser().parse(token.content, newdoc)
        for node in newdoc:
            if node["names"]:
                self.document.note_explicit_target(node, node)
        self.current_node.extend(newdoc.children)
    base.DocutilsRenderer.render_restructuredtext = render_restructuredtext


def setup(app):
    _unpadded_rst()
    app.add_config_value("im_symbols", {}, "env")

    def init(app, config):
        SYMBOLS.clear()
        SYMBOLS.update(config.im_symbols)
    app.connect("config-inited", init)
    app.connect("autodoc-process-docstring", process_docstring)
    app.connect("autodoc-process-signature", process_signature)
    return {"parallel_read_safe": True, "version": "1"}
