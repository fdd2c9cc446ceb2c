"""Screens of SASRec settings for issue #20 on MovieLens-100K, chosen on VALIDATION NDCG@10 only (test is printed for the record).

Usage: python tools/seq_fast_study.py NAME '{"param": value, ...}' [--seeds 0 1 2] [--base fast|none] [--log FILE]
Each run fits SASRec (SASREC_FAST's settings updated by the JSON, or only the JSON with --base none) once per seed on one
torch thread with `bench_sasrec_variants`, and appends one JSON line per seed (best validation NDCG@10, test NDCG@10 [CI],
epochs, CPU and wall seconds, load average) to the log.

The rows of 12c_bench_seq's screens of 2026-11-29 15:40-17:08 UTC (the base was SASREC_FAST with peak 3e-3 then):
  python tools/seq_fast_study.py "6 epochs" '{"max_epochs":6,"min_epochs":6}'
  python tools/seq_fast_study.py "ema .99" '{"weight_average":0.99}'
  python tools/seq_fast_study.py "ls .1" '{"label_smoothing":0.1}'
  python tools/seq_fast_study.py "d128" '{"embedding_size":128}'
  python tools/seq_fast_study.py "peak 1.5e-3" '{"learning_rate":0.0015}'
  python tools/seq_fast_study.py "peak 2e-3" '{"learning_rate":0.002}'
  python tools/seq_fast_study.py "sampled 256 7ep" '{"loss":"sampled","n_negatives":256,"max_epochs":7,"min_epochs":7,"learning_rate":0.003}'
  python tools/seq_fast_study.py "sampled pp256 7ep" '{"loss":"sampled","n_negatives":256,"shared_negatives":false,"max_epochs":7,"min_epochs":7,"learning_rate":0.003}'
  python tools/seq_fast_study.py "sampled 256 7ep 2e-3" '{"loss":"sampled","n_negatives":256,"max_epochs":7,"min_epochs":7,"learning_rate":0.002}'
  python tools/seq_fast_study.py "sampled pp256 7ep 2e-3" '{"loss":"sampled","n_negatives":256,"shared_negatives":false,"max_epochs":7,"min_epochs":7,"learning_rate":0.002}'
With SASREC_FAST now at peak 2e-3, the first six need '"learning_rate":0.003' added to reproduce their rows.

Session 10 (2026-11-29 18:39-, base SASREC_FAST at peak 2e-3: 2 blocks, max_len 50, 5 epochs; one thread, load 2-4):
  python tools/seq_fast_study.py "1 block 8ep" '{"n_layers":1,"max_epochs":8,"min_epochs":8}'
  python tools/seq_fast_study.py "len100" '{"max_len":100}'
  python tools/seq_fast_study.py "1 block len30 8ep" '{"n_layers":1,"max_len":30,"max_epochs":8,"min_epochs":8}'
  python tools/seq_fast_study.py "1 block len20 8ep" '{"n_layers":1,"max_len":20,"max_epochs":8,"min_epochs":8}'
  python tools/seq_fast_study.py "1 block len30 7ep" '{"n_layers":1,"max_len":30,"max_epochs":7,"min_epochs":7}'
  python tools/seq_fast_study.py "len30" '{"max_len":30}'
  python tools/seq_fast_study.py "1 block len30 6ep" '{"n_layers":1,"max_len":30,"max_epochs":6,"min_epochs":6}'
  python tools/seq_fast_study.py "1 block len30 7ep do.3" '{"n_layers":1,"max_len":30,"max_epochs":7,"min_epochs":7,"dropout":0.3}'
  python tools/seq_fast_study.py "1 block len30 5ep" '{"n_layers":1,"max_len":30,"max_epochs":5,"min_epochs":5}'
(stopped before their first seed finished, no row: "1 block len100 8ep", "1 block 8ep do.3", "1 block 8ep wd.1")
Validation chose "1 block len30 6ep" (mean 0.1257), now SASREC_FAST. To reproduce a session-10 row now, add to its JSON
whichever of "n_layers":2, "max_len":50, "max_epochs":5, "min_epochs":5 it does not set (the JSON overrides SASREC_FAST).
"""
import argparse, json, os, sys, time

os.environ.setdefault("PYTHONHASHSEED", "0")
from interest_migration.bench_seq import SASREC_FAST, bench_sasrec_variants

p = argparse.ArgumentParser()
p.add_argument("name"); p.add_argument("params")
p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
p.add_argument("--base", choices=["fast", "none"], default="fast")
p.add_argument("--log", default="bench-out/seq_fast_study.jsonl")
a = p.parse_args()
params = (SASREC_FAST if a.base == "fast" else {}) | json.loads(a.params)
tab = bench_sasrec_variants({a.name: params}, seeds=tuple(a.seeds), num_threads=1, n_boot=200)
os.makedirs(os.path.dirname(a.log) or ".", exist_ok=True)
with open(a.log, "a") as f:
    for _, r in tab.iterrows():
        rec = {"name": a.name, "params": params, "time_utc": time.strftime("%H:%M", time.gmtime()), "load_end": os.getloadavg()[0],
               **{k: (v if isinstance(v, str) else float(v)) for k, v in r.items() if k not in ("variant",)}}
        f.write(json.dumps(rec) + "\n")
        print(f"{a.name:<28} seed {r['seed']!s:<4} valid {r['best_valid_ndcg@10']:.4f} test {r['test_ndcg@10']:.4f} "
              f"epochs {r['epochs']:.0f} (best {r['best_epoch']:.0f}) cpu {r['cpu_s']:.1f} wall {r['wall_s']:.1f} load {r['load_1min']:.1f}",
              file=sys.stderr)
