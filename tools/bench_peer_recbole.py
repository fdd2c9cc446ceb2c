#!/usr/bin/env python3
"""The RecBole peer of `interest-migration bench sequence` (`make bench-peer`; not part of CI).

Runs RecBole 1.2.1's SASRec and GRU4Rec on MovieLens-100K with the protocol of `interest_migration.sequence`
(leave-last-out: `eval_args` split LS valid_and_test, order TO, mode full; `loss_type: CE`; no negative sampling;
otherwise RecBole's defaults) for a few epochs, and writes one JSON file per model
(`bench-out/recbole_sasrec.json`, `bench-out/recbole_gru4rec.json`) with, after every epoch: RecBole's own
training and validation seconds, its own validation metrics, and validation HR/NDCG/MRR@10 under our protocol
(full catalogue, the user's earlier items excluded from the ranking) computed by `interest_migration.metrics`
on RecBole's scores.

RecBole lives in its own virtualenv `.venv-recbole` (gitignored) and is never imported by the library. Run this
file with any Python 3.11: it creates `.venv-recbole` when it is missing and re-runs itself under that venv's
Python. Usage:

    python3 tools/bench_peer_recbole.py                      # SASRec and GRU4Rec, 2 epochs each
    python3 tools/bench_peer_recbole.py --models SASRec --epochs 3
    python3 tools/bench_peer_recbole.py --setup-only         # only build .venv-recbole
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
VENV = ROOT / ".venv-recbole"
VENV_PY = VENV / "bin" / "python"
# One pip command. torch is pinned (an unpinned torch pulls a CUDA build); ray and RecBole 1.2.1 break with numpy 2
# and the newest setuptools. The brief asked for "setuptools<70", but the torch 2.13.0 wheel itself requires
# setuptools>=77.0.3, so "setuptools<70" cannot be resolved together with it; 77.0.3..80.x satisfies torch and still
# ships pkg_resources, which is all RecBole's dependencies need (checked by running this script).
INSTALL = [str(VENV_PY), "-m", "pip", "install", "-q", "torch==2.13.0", "setuptools>=77.0.3,<81", "numpy<2",
           "pandas<3", "scipy<1.14", "recbole==1.2.1"]


def ensure_venv() -> None:
    "Create .venv-recbole with RecBole 1.2.1 when it is missing (about 2 minutes)."
    if VENV_PY.exists() and subprocess.run([str(VENV_PY), "-c", "import recbole"], capture_output=True).returncode == 0:
        return
    print(f"creating {VENV} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run(INSTALL, check=True)


def in_venv() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


def recbole_data_path() -> Path:
    "The dataset_example folder inside the installed RecBole wheel (holds ml-100k/*.inter, *.user, *.item)."
    import importlib.util
    spec = importlib.util.find_spec("recbole")
    return Path(list(spec.submodule_search_locations)[0]) / "dataset_example"


def run_model(model_name: str, epochs: int, out_dir: Path, seed: int | None, threads: int | None = None) -> dict:
    "Train one RecBole model for `epochs` epochs and return the per-epoch record."
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")   # RecBole reloads its own pickled checkpoint
    import numpy as np
    import torch
    if threads:
        torch.set_num_threads(threads)
    from scipy import sparse
    import recbole
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.trainer import Trainer
    from recbole.utils import get_model, init_logger, init_seed

    sys.path.insert(0, str(ROOT))                         # our metrics only (numpy/pandas/scipy): one metric code
    from interest_migration.ranking import ranking_metrics

    t_all = time.perf_counter()
    load_start = os.getloadavg()
    work = out_dir / "recbole-run"
    work.mkdir(parents=True, exist_ok=True)
    os.chdir(work)                                        # RecBole writes log/, log_tensorboard/ and saved/ here
    cfg = {"data_path": str(recbole_data_path()), "checkpoint_dir": str(work / "saved"), "epochs": epochs,
           "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full", "group_by": "user"},
           "loss_type": "CE", "train_neg_sample_args": None, "show_progress": False,
           "metrics": ["Hit", "NDCG", "MRR"], "topk": [10]}
    # RecBole keeps float fields as float32. Its ml-100k.yaml min-max scales them (normalize_all: True), which leaves
    # the timestamp about 1 s of resolution, so "TO" orders a few ratings made within a second differently from the
    # raw timestamps (5 of 943 users get another validation item; the bench counts them). Without the scaling,
    # float32 timestamps (~9e8 s) would have 64 s resolution and a quarter of the users would differ: keep the default.
    if seed is not None:
        cfg["seed"] = seed
    sys.argv = sys.argv[:1]                               # RecBole's Config also reads --key=value from the command line
    config = Config(model=model_name, dataset="ml-100k", config_dict=cfg)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    t0 = time.perf_counter()
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    setup_s = time.perf_counter() - t0
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])

    uid_f, iid_f = config["USER_ID_FIELD"], config["ITEM_ID_FIELD"]
    list_f = iid_f + config["LIST_SUFFIX"]
    n_users, n_cols = dataset.user_num, dataset.item_num            # column 0 is RecBole's padding item
    tr = train_data._dataset.inter_feat
    # history of each user before its validation target: every item in its training samples (inputs and targets)
    u = tr[uid_f].numpy()
    lists = tr[list_f].numpy()
    rows = np.concatenate([np.repeat(u, lists.shape[1]), u])
    cols = np.concatenate([lists.ravel(), tr[iid_f].numpy()])
    keep = cols > 0
    hist_valid = sparse.csr_matrix((np.ones(keep.sum(), np.int8), (rows[keep], cols[keep])), shape=(n_users, n_cols))
    hist_valid.sum_duplicates(); hist_valid.data[:] = 1
    vf = valid_data._dataset.inter_feat
    add = sparse.csr_matrix((np.ones(len(vf), np.int8), (vf[uid_f].numpy(), vf[iid_f].numpy())), shape=(n_users, n_cols))
    hist_test = hist_valid + add
    hist_test.data[:] = 1

    @torch.no_grad()
    def our_protocol(data, hist) -> dict:
        "HR/NDCG/MRR@10 over the full catalogue with each user's earlier items excluded (interest_migration.metrics)."
        t = time.perf_counter()
        model.eval()
        per = {m: [] for m in ("hit", "ndcg", "mrr")}
        for batch in data:
            inter = batch[0].to(config["device"])
            scores = model.full_sort_predict(inter).view(len(inter), -1)[:, 1:].float().cpu().numpy()
            uid = inter[uid_f].cpu().numpy()
            truth = [np.array([i - 1]) for i in inter[iid_f].cpu().numpy()]
            res = ranking_metrics(scores, truth, k=10, metrics=("hit", "ndcg", "mrr"), exclude=hist[uid][:, 1:])
            for m in per:
                per[m].append(res.per_user[(m, 10)])
        out = {f"{m}@10": float(np.concatenate(v).mean()) for m, v in per.items()}
        out["n_users"] = int(sum(len(v) for v in per["hit"]))
        out["seconds"] = time.perf_counter() - t
        return out

    epochs_log: list = []

    class TimedTrainer(Trainer):
        "RecBole's Trainer, timing each training epoch and validation and adding our-protocol validation metrics."
        def _train_epoch(self, *args, **kwargs):
            t = time.perf_counter()
            loss = super()._train_epoch(*args, **kwargs)
            epochs_log.append({"epoch": len(epochs_log) + 1, "train_s": time.perf_counter() - t,
                               "loss": float(sum(loss) if isinstance(loss, tuple) else loss)})
            return loss

        def _valid_epoch(self, *args, **kwargs):
            t = time.perf_counter()
            score, result = super()._valid_epoch(*args, **kwargs)
            rec = epochs_log[-1]
            rec["valid_s"] = time.perf_counter() - t
            rec["elapsed_s"] = sum(r["train_s"] + r.get("valid_s", 0.0) for r in epochs_log)
            rec["recbole_valid"] = {k: float(v) for k, v in result.items()}
            ours = our_protocol(valid_data, hist_valid)
            rec.update({f"valid_{k}": v for k, v in ours.items() if k.endswith("@10")})
            rec["our_eval_s"] = ours["seconds"]
            print(f"[{model_name}] epoch {rec['epoch']}: train {rec['train_s']:.1f}s, valid {rec['valid_s']:.1f}s, "
                  f"loss {rec['loss']:.4f}, NDCG@10 (history masked) {rec['valid_ndcg@10']:.4f}, "
                  f"RecBole's own ndcg@10 {rec['recbole_valid'].get('ndcg@10', float('nan')):.4f}", flush=True)
            return score, result

    trainer = TimedTrainer(config, model)
    trainer.fit(train_data, valid_data, verbose=False, saved=True, show_progress=False)
    test_recbole = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
    test_ours = our_protocol(test_data, hist_test)

    def tokens(field, ids):
        return [str(x) for x in dataset.id2token(field, np.asarray(ids))]
    te = test_data._dataset.inter_feat
    return {
        "tool": "RecBole", "recbole_version": recbole.__version__, "torch_version": torch.__version__,
        "model": model_name, "device": str(config["device"]), "torch_threads": torch.get_num_threads(),
        "config": {k: (config[k] if not isinstance(config[k], (set, tuple)) else list(config[k]))
                   for k in ("epochs", "train_batch_size", "eval_batch_size", "learning_rate", "MAX_ITEM_LIST_LENGTH",
                             "loss_type", "eval_args", "seed", "hidden_size", "n_layers", "n_heads", "inner_size",
                             "hidden_dropout_prob", "attn_dropout_prob", "embedding_size", "num_layers",
                             "dropout_prob", "train_neg_sample_args") if k in config},
        "data": {"users": int(n_users - 1), "items": int(n_cols - 1), "train_samples": int(len(tr)),
                 "valid_samples": int(len(vf)), "test_samples": int(len(te))},
        "setup_s": setup_s,
        "epochs": epochs_log,
        "test_recbole": {k: float(v) for k, v in test_recbole.items()},
        "test_ours": test_ours,
        "split": {"user_id": tokens(uid_f, vf[uid_f].numpy()), "valid_item": tokens(iid_f, vf[iid_f].numpy()),
                  "test_user_id": tokens(uid_f, te[uid_f].numpy()), "test_item": tokens(iid_f, te[iid_f].numpy())},
        "load_avg_start": list(load_start), "load_avg_end": list(os.getloadavg()), "cpu_count": os.cpu_count(),
        "wall_s": time.perf_counter() - t_all,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["SASRec", "GRU4Rec"], help="RecBole model names")
    p.add_argument("--epochs", type=int, default=2, help="training epochs per model (default 2)")
    p.add_argument("--out-dir", default=str(ROOT / "bench-out"), help="where the JSON files go (default bench-out/)")
    p.add_argument("--seed", type=int, default=None, help="RecBole seed (default: RecBole's, 2020)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's, one per core)")
    p.add_argument("--setup-only", action="store_true", help="only create .venv-recbole")
    a = p.parse_args(argv)
    if not in_venv():
        ensure_venv()
        if a.setup_only:
            return 0
        os.execv(str(VENV_PY), [str(VENV_PY), str(Path(__file__).resolve()), *(argv if argv is not None else sys.argv[1:])])
    if a.setup_only:
        return 0
    out_dir = Path(a.out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in a.models:
        print(f"== RecBole {name}: {a.epochs} epoch(s) on ml-100k, load average {os.getloadavg()[0]:.2f} ==", flush=True)
        rec = run_model(name, a.epochs, out_dir, a.seed, a.threads)
        path = out_dir / f"recbole_{name.lower()}.json"
        path.write_text(json.dumps(rec, indent=1))
        last = rec["epochs"][-1]
        print(f"{name}: {len(rec['epochs'])} epochs, {last['elapsed_s']:.1f} s (train + RecBole validation), "
              f"validation NDCG@10 (history masked) {last['valid_ndcg@10']:.4f}; test NDCG@10 "
              f"{rec['test_ours']['ndcg@10']:.4f}; wrote {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
