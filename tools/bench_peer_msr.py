#!/usr/bin/env python3
"""The Microsoft Recommenders peer of `interest-migration bench metrics` (`make bench-peer`).

Microsoft Recommenders 1.2.1 lives in its own virtualenv `.venv-msr` (gitignored; its pins, numpy<2 among them,
clash with ours) and is never imported by the library. `interest_migration.bench.bench_metrics_peer` writes the
top-k lists and the relevant items of every user to an `.npz` file, runs this script under `.venv-msr`'s Python,
and reads back the JSON it writes: the seconds each `recommenders.evaluation.python_evaluation` function took on
those lists (best of `--repeat`) and the value it returned.

    python3 tools/bench_peer_msr.py --setup-only              # only build .venv-msr (about 3 minutes)
    python3 tools/bench_peer_msr.py --input lists.npz --out peer.json
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv-msr"
VENV_PY = VENV / "bin" / "python"
# torch is pinned (an unpinned torch pulls a CUDA build); recommenders 1.2.1 needs numpy<2 and pandas<3.
INSTALL = [str(VENV_PY), "-m", "pip", "install", "-q", "torch==2.13.0", "numpy<2", "pandas<3", "scipy<1.14",
           "recommenders==1.2.1"]
# Our metric name -> the python_evaluation function that computes the same idea.
FUNCTIONS = {"precision": "precision_at_k", "recall": "recall_at_k", "ndcg": "ndcg_at_k", "map": "map_at_k"}


def ensure_venv() -> Path:
    "Create .venv-msr with Microsoft Recommenders 1.2.1 when it is missing; return its Python."
    probe = [str(VENV_PY), "-c", "import recommenders.evaluation.python_evaluation"]
    if VENV_PY.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return VENV_PY
    print(f"creating {VENV} ...", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run(INSTALL, check=True)
    return VENV_PY


def in_venv() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


def frames(path: Path):
    "The relevant items and the ranked top-k lists of the .npz file as Microsoft Recommenders' DataFrames."
    import numpy as np
    import pandas as pd
    z = np.load(path)
    topk, indptr, indices = z["topk"], z["truth_indptr"], z["truth_indices"]
    n_users, kmax = topk.shape
    true = pd.DataFrame({"userID": np.repeat(np.arange(n_users), np.diff(indptr)), "itemID": indices,
                         "rating": np.ones(len(indices))})
    pred = pd.DataFrame({"userID": np.repeat(np.arange(n_users), kmax), "itemID": topk.ravel(),
                         "prediction": np.tile(np.arange(kmax, 0, -1, dtype=float), n_users)})
    return true, pred, [int(k) for k in z["k"]]


def run(path: Path, out: Path, repeat: int) -> None:
    "Time each python_evaluation function at each k on the lists in `path`; write seconds and values to `out`."
    import recommenders
    from recommenders.evaluation import python_evaluation as pe
    true, pred, ks = frames(path)
    rec = {"library": "recommenders", "version": recommenders.__version__, "n_users": int(true["userID"].nunique()),
           "repeat": repeat, "total_seconds": float("inf")}
    best, values = {}, {}
    clear = getattr(pe.merge_ranking_true_pred, "cache_clear", lambda: None)
    for _ in range(max(1, repeat)):      # one run = every function at every k, as a user evaluates a model
        clear()                           # its merge cache starts cold each run (it is warm between functions)
        t_run = time.perf_counter()
        for k in ks:
            for ours, name in FUNCTIONS.items():
                t0 = time.perf_counter()
                values[ours, k] = float(getattr(pe, name)(true, pred, col_user="userID", col_item="itemID",
                                                          col_rating="rating", col_prediction="prediction", k=k))
                best[ours, k] = min(best.get((ours, k), float("inf")), time.perf_counter() - t0)
        rec["total_seconds"] = min(rec["total_seconds"], time.perf_counter() - t_run)
    rec["results"] = [{"metric": m, "function": FUNCTIONS[m], "k": k, "seconds": best[m, k], "value": values[m, k]}
                      for (m, k) in best]
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(json.dumps(rec, indent=1))
    os.replace(tmp, out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--input", type=Path, help=".npz with topk, truth_indptr, truth_indices, k")
    p.add_argument("--out", type=Path, help="where the JSON record goes")
    p.add_argument("--repeat", type=int, default=2, help="timed runs per function (best kept)")
    p.add_argument("--setup-only", action="store_true", help="only build .venv-msr")
    a = p.parse_args(argv)
    if not in_venv():
        py = ensure_venv()
        if a.setup_only:
            return 0
        return subprocess.run([str(py), __file__, *(argv if argv is not None else sys.argv[1:])]).returncode
    if a.setup_only:
        return 0
    if a.input is None or a.out is None:
        p.error("--input and --out are required")
    run(a.input, a.out, a.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
