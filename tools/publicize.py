"""Make the private names that modules import from each other public, by one idempotent rename.

A name such as `data._utc_from_ns` that `bench`, `scale`, `store`, ... import is part of the package's real
interface, so it gets a public name (a docstring, docments, prose and a test in its notebook, and a place in
`__all__`). This script holds the one mapping old -> new and applies it to the *sources* of the project:

- `nbs/*.ipynb`: the source of code and markdown cells only (outputs, metadata and attachments are never
  touched); the notebook JSON is written back in nbdev_clean's format, so an unchanged notebook stays byte for byte;
- `tests/*.py` and `tools/*.py` (this file excepted: it holds the mapping).

`interest_migration/*.py` is generated: run `nbdev_export` afterwards (the script never edits the package).

A rename matches whole names only: `_pool` is renamed where it stands alone or after a package module
(`encoders._pool`, `interest_migration.encoders._pool`), never inside a longer name (`_pool_size`, `x_pool`)
nor as an attribute of anything else (`self._pool`). Running it twice changes nothing the second time (no new
name contains an old one), so it is safe on any branch, before or after a merge. Usage:

    python tools/publicize.py                 # rewrite nbs/*.ipynb tests/*.py tools/*.py in place
    python tools/publicize.py --check         # list what would change, exit 1 if anything would
    python tools/publicize.py PATH ...        # only these files (.ipynb or text files)
"""
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = "interest_migration"

MAPPING = {
    # data: validation helpers (what `validate_events` is built from) and readers' building blocks
    "_utc_from_ns": "utc_from_ns",
    "_show": "offending_rows",
    "_id_column": "check_id_column",
    "_store_ids": "stored_ids",
    "_timestamp_column": "check_timestamp_column",
    "_behavior_column": "check_behavior_column",
    "_numeric_column": "check_numeric_column",
    "_sort_events": "sort_events",
    "_genre_lists": "genre_lists",
    "_movielens_dataset": "movielens_dataset",
    # readers: the pyarrow fast path that scale streams into DuckDB
    "_NS_PER": "NS_PER",
    "_ArrowUnfit": "ArrowUnfit",
    "_arrow_taobao_reader": "arrow_taobao_reader",
    "_implausible_report": "implausible_report",
    "_items_from_pairs": "items_from_pairs",
    # simulate: the world model that exploration and the benches reuse
    "_SIM_DIURNAL": "SIM_DIURNAL",
    "_sim_world": "sim_world",
    "_sim_chunk": "sim_chunk",
    # metrics
    "_is_torch": "is_torch_tensor",
    "_to_numpy": "as_numpy",
    # profiles
    "_item_category_table": "item_category_table",
    "_xlogx": "xlogx",
    # nextwindow
    "_multilabel_y": "multilabel_array",
    # encoders: the pieces tagging fine-tunes through
    "_quiet_loading": "quiet_loading",
    "_texts": "as_texts",
    "_token_ids": "tokenize_texts",
    "_pool": "pool_hidden",
    "_embed_ids": "embed_token_ids",
    # tagging
    "_Tagger": "TaggerBase",
    # sequence / neural
    "_summary_of": "training_summary",
    "_train_of": "training_sequences",
    "_with_users": "with_users",
    "_Block": "TransformerBlock",
    "_dist_info": "rank_world_size",
    # store / model export
    "_id_key": "id_key",
    "_ScoreNet": "ScoreNet",
    "_jsonable": "json_values",
}


def _modules() -> list:
    "Names under which a package module can qualify an old name (`data`, `interest_migration.data`, ...)."
    mods = sorted(p.stem for p in (ROOT / PKG).glob("*.py") if not p.stem.startswith("_"))
    return mods or ["data"]


def _check_mapping(mapping: dict) -> None:
    "Refuse a mapping that could not be applied twice safely (a new name holding an old one, a clash)."
    news = list(mapping.values())
    if len(set(news)) != len(news): raise ValueError("two old names map to one new name")
    for old, new in mapping.items():
        if not old.startswith("_") or new.startswith("_"): raise ValueError(f"{old} -> {new}: not private -> public")
        for o in mapping:
            if re.search(rf"(?<![\w.]){re.escape(o)}(?!\w)", new): raise ValueError(f"{new} contains {o}")


def pattern(mapping: dict = MAPPING, modules: list | None = None) -> re.Pattern:
    "One regex for every old name, standing alone or qualified by a package module; group `name` is the old name."
    mods = "|".join(map(re.escape, sorted(modules or _modules(), key=len, reverse=True)))
    names = "|".join(map(re.escape, sorted(mapping, key=len, reverse=True)))
    return re.compile(rf"(?P<pre>(?<![\w.])|\b(?:{PKG}\.)?(?:{mods})\.)(?P<name>{names})(?!\w)")


def rename_text(text: str, pat: re.Pattern, mapping: dict = MAPPING) -> tuple:
    "(text with every old name renamed, number of renames)."
    return pat.subn(lambda m: m.group("pre") + mapping[m.group("name")], text)


def rename_notebook(raw: str, pat: re.Pattern, mapping: dict = MAPPING) -> tuple:
    "(notebook JSON text with the cell sources renamed, number of renames); outputs are left alone."
    nb = json.loads(raw)
    n = 0
    for c in nb.get("cells", []):
        src = c.get("source", [])
        lines = [src] if isinstance(src, str) else src
        new = []
        for line in lines:
            line, k = rename_text(line, pat, mapping)
            new.append(line)
            n += k
        c["source"] = new[0] if isinstance(src, str) else new
    if not n: return raw, 0
    return json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + "\n", n


def default_paths() -> list:
    "nbs/*.ipynb, tests/*.py and tools/*.py (without this script)."
    paths = sorted((ROOT / "nbs").glob("*.ipynb")) + sorted((ROOT / "tests").glob("*.py"))
    return paths + [p for p in sorted((ROOT / "tools").glob("*.py")) if p.resolve() != Path(__file__).resolve()]


def main(argv: list) -> int:
    check = "--check" in argv
    paths = [Path(a) for a in argv if a != "--check"] or default_paths()
    _check_mapping(MAPPING)
    pat = pattern()
    total = 0
    for p in paths:
        if p.resolve() == Path(__file__).resolve(): continue
        raw = p.read_text(encoding="utf-8")
        new, n = rename_notebook(raw, pat) if p.suffix == ".ipynb" else rename_text(raw, pat)
        if not n: continue
        total += n
        print(f"{p}: {n} rename(s)" + (" would be made" if check else ""))
        if not check: p.write_text(new, encoding="utf-8")
    if total and not check: print("now run: nbdev_export && nbdev_clean")
    return 1 if check and total else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
