"""#18 study: LinUCB's compiled kernels (interest_migration.bandit_kernels) against the NumPy reference and MABWiser, per step.

    .venv/bin/python tools/linucb_kernel_study.py ab [reps]   # ms per step (act, update) of LinUCB compiled, NumPy (compiled=False)
                                                            # and MABWiser's LinUCB, interleaved; same decisions check
    .venv/bin/python tools/linucb_kernel_study.py parts       # the compiled step's parts in the loop (act kernel, tie-break, update, inverse + tables)

2,000 users, 50 steps, seed 0, one BLAS thread; CPU time of this process. The judged figure is `interest-migration bench bandits`.
"""
import os, sys, time
import numpy as np
from threadpoolctl import threadpool_limits
from interest_migration.bandit_env import BanditEnv
from interest_migration.bandit_kernels import linucb_act, linucb_solve, linucb_update
from interest_migration.bench import _MABWiserSegments
from interest_migration.exploration import LinUCB, _GROUP_COLS, _SPARSE, _tie_uniforms
pt = time.process_time


def run(pol, env):
    "ms per step of act and of update, and the decisions."
    env.reset(); ta = tu = 0.0; acts = []
    for _ in range(env.horizon):
        ctx = env.contexts(); pol.prepare(ctx)
        c0 = pt(); a, _ = pol.act(ctx); ta += pt() - c0
        o = env.step(a)
        c0 = pt(); pol.update(ctx, a, o["reward"]); tu += pt() - c0
        acts.append(a)
    return ta / env.horizon * 1e3, tu / env.horizon * 1e3, np.array(acts)


def ab(reps=3):
    from mabwiser.mab import LearningPolicy
    env = BanditEnv(n_users=2000, horizon=50, seed=0)
    for _ in range(reps):
        c, r, m = (run(LinUCB(8, seed=0), env), run(LinUCB(8, seed=0, compiled=False), env),
                   run(_MABWiserSegments(8, LearningPolicy.LinUCB(alpha=1.0, l2_lambda=1.0), contextual=True), env))
        tot = lambda x: x[0] + x[1]
        print(f"load {os.getloadavg()[0]:.1f}: compiled {c[0]:.3f}+{c[1]:.3f}, numpy {r[0]:.3f}+{r[1]:.3f}, MABWiser {tot(m):.3f} ms/step;"
              f" MABWiser/compiled {tot(m) / tot(c):.1f}x, MABWiser/numpy {tot(m) / tot(r):.1f}x; same decisions {np.array_equal(c[2], r[2])}", flush=True)


def parts():
    env = BanditEnv(n_users=2000, horizon=50, seed=0)
    pol, T = LinUCB(8, seed=0), dict.fromkeys(["act kernel", "tie-break", "update kernel", "inverse + tables"], 0.0)
    env.reset()
    for _ in range(env.horizon):
        ctx = env.contexts(); pol.prepare(ctx)
        X, g = pol._features(ctx); pol._init(X); a = np.empty(len(X), np.int64)
        sp = pol._sparse_rows(X, fill=False)
        c0 = pt(); k = linucb_act(X, _SPARSE, g, pol._z0, pol.tabs_, 8, 1.0, a, sp); c1 = pt()
        rows = np.flatnonzero(a < 0)
        if k:
            m, w = pol.scores(X[rows], g[rows]); m += w
        U = _tie_uniforms(pol.rng, rows, len(X), 8)
        if k: a[rows] = (m + 1e-9 * U).argmax(1)
        c2 = pt(); o = env.step(a)
        c3 = pt(); linucb_update(sp, _SPARSE, g, _GROUP_COLS, pol._z0, a, o["reward"], pol.A_, pol.b_)
        c4 = pt(); linucb_solve(pol.A_, pol.b_, pol.Ainv_, pol.theta_, _SPARSE, _GROUP_COLS, pol._z0, pol.tabs_); c5 = pt()
        for key, dt in zip(T, (c1 - c0, c2 - c1, c4 - c3, c5 - c4)): T[key] += dt * 1e3 / env.horizon
    print(f"load {os.getloadavg()[0]:.1f}: " + ", ".join(f"{k} {v:.3f}" for k, v in T.items()) + f" ms/step; sum {sum(T.values()):.3f}")


if __name__ == "__main__":
    with threadpool_limits(1, "blas"):
        if sys.argv[1:2] == ["parts"]: parts()
        else: ab(int(sys.argv[2]) if len(sys.argv) > 2 else 3)
