"""#18 study: exact bound-and-prune of LinUCB's widths (measured, not kept in the library; see nbs/06_exploration "What the runs show").

    .venv/bin/python tools/linucb_prune_study.py counts      # candidate arms per user for eigen bounds, raw and whitened (k = 2, 4, 6, 8)
    .venv/bin/python tools/linucb_prune_study.py time [K]    # the pruned act (whitened, top-K) against the full computation:
                                                             # ms per step and whether every decision is the same

2,000 users, 50 steps, seed 0, one BLAS thread for the timing.
"""
import time, numpy as np, sys
from threadpoolctl import threadpool_limits
from interest_migration.bandit_env import BanditEnv, context_features
from interest_migration.exploration import LinUCB, _SPARSE, _GROUP_COLS
from interest_migration.simulate import SIM_REGIONS
K = int(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[1] == 'time' else 4
d = 32
N_ = np.zeros((d, 2)); N_[0] = 1; N_[1:9, 0] = -1; N_[9:14, 1] = -1
Qn, _ = np.linalg.qr(N_)
wv, Vv = np.linalg.eigh(np.eye(d) - Qn @ Qn.T); BASIS = Vv[:, wv > 0.5]
class Pruned(LinUCB):
    def _refresh(self):
        super()._refresh()
        if self.b_.shape[1] <= _SPARSE: return
        M, A, B, S, g = self.Ainv_, self.A_, BASIS, _SPARSE, _GROUP_COLS
        G = B.T @ A.sum(0) @ B
        L = np.linalg.cholesky(G)
        Mt = L.T @ (B.T @ M @ B) @ L
        lam, V = np.linalg.eigh(Mt)
        lam, V = lam[:, ::-1], V[:, :, ::-1]
        k = K
        self.lam_, self.lamk_ = lam[:, :k].copy(), lam[:, k].copy()   # C x k, C
        Linv = np.linalg.inv(L)
        P = B @ Linv.T @ V[:, :, :k]            # C x 32 x k  : v'xi = (B L^-T v)'x
        C = len(M)
        self.Pz_ = np.ascontiguousarray(P[:, S:, :].transpose(1, 0, 2).reshape(d - S, C * k))
        self.Pg_ = P[:, g, :].sum(2).transpose(1, 0, 2).reshape(len(g), C * k).copy()   # groups x C*k
        Nw = B @ np.linalg.inv(G) @ B.T
        self.Nzz_ = Nw[S:, S:].copy(); self.Nh_ = 2 * Nw[g][:, :, S:].sum(1); self.Nc_ = Nw[g[:, :, None], g[:, None, :]].sum((1, 2))
        self.Mzz_ = M[:, S:, S:].copy()
    def act(self, ctx):
        X, grp = self._features(ctx)
        self._init(X)
        n, C = len(X), self.C
        U = self.rng.random((n, C))
        if not hasattr(self, "lam_"):
            m, w = self.scores(X, grp); m += self.alpha * w; m += 1e-9 * U
            return m.argmax(1), np.ones(n)
        Z = np.ascontiguousarray(X[:, _SPARSE:])
        mean = Z @ self.thz_; mean += self.ths_[grp]
        k = self.lam_.shape[1]
        proj = (Z @ self.Pz_); proj += self.Pg_[grp]
        proj *= proj
        p2 = proj.reshape(n, C, k)
        top = np.einsum("nck,ck->nc", p2, self.lam_)
        sp2 = p2.sum(2)
        nx2 = np.einsum("nd,nd->n", Z @ self.Nzz_ + self.Nh_[grp], Z) + self.Nc_[grp]
        rest = np.maximum(nx2[:, None] - sp2, 0); rest *= self.lamk_
        rest += top
        hi = mean + self.alpha * np.sqrt(rest) * (1 + 1e-9) + (1e-9 + 1e-12)
        lo = (mean + self.alpha * np.sqrt(top) * (1 - 1e-9)).max(1)
        cand = hi >= lo[:, None]
        nc = cand.sum(1)
        a = cand.argmax(1)
        multi = nc > 1
        self.stats_ = getattr(self, "stats_", []) + [(nc.mean(), multi.mean())]
        if multi.any():
            S = np.full((n, C), -np.inf)
            for c in range(C):
                idx = np.flatnonzero(cand[:, c] & multi)
                if not len(idx): continue
                Zc, gc = Z[idx], grp[idx]
                q = np.einsum("nd,nd->n", Zc @ self.Mzz_[c] + self.H_[gc, c], Zc) + self.cst_[gc, c]
                S[idx, c] = mean[idx, c] + self.alpha * np.sqrt(np.maximum(q, 0)) + 1e-9 * U[idx, c]
            r = np.flatnonzero(multi)
            a[r] = S[r].argmax(1)
        return a, np.ones(n)
class Ref(LinUCB):
    def act(self, ctx):
        X, grp = self._features(ctx)
        U = self.rng.random((len(X), self.C))
        m, w = self.scores(X, grp); m += self.alpha * w; m += 1e-9 * U
        return m.argmax(1), np.ones(len(X))

def timing():
    n = 2000
    env = BanditEnv(n_users=n, horizon=50, seed=0)
    res = {}
    for name, pol in (("ref", Ref(env.C, seed=0, compiled=False)), ("pruned", Pruned(env.C, seed=0, compiled=False))):
        env.reset(); ta = tu = 0; acts = []
        with threadpool_limits(1, "blas"):
            for t in range(50):
                ctx = env.contexts(); pol.prepare(ctx)
                c0 = time.process_time(); a, p = pol.act(ctx); ta += time.process_time() - c0
                acts.append(a)
                o = env.step(a)
                c0 = time.process_time(); pol.update(ctx, a, o["reward"]); tu += time.process_time() - c0
        res[name] = np.array(acts)
        print(f"{name}: act {ta/50*1e3:.2f} ms/step, update {tu/50*1e3:.2f} ms/step, total {(ta+tu)/50*1e3:.2f}")
        if name == "pruned": print("cand/user, multi share:", np.array(pol.stats_).mean(0).round(3))
    print("equal decisions:", (res["ref"] == res["pruned"]).all(), (res["ref"] != res["pruned"]).sum())

def counts():
    B = BASIS
    n = 2000
    env = BanditEnv(n_users=n, horizon=50, seed=0)
    pol = LinUCB(env.C, seed=0, compiled=False)  # the NumPy reference path this study was measured on
    tot = {}    
    for t in range(50):
        ctx = env.contexts(); X = context_features(ctx)
        pol._init(X)
        m, w = pol.scores(X)
        M = pol.Ainv_
        out = [t]
        for gname in ("raw", "whitened"):
            G = np.eye(B.shape[1]) if gname == "raw" else B.T @ pol.A_.sum(0) @ B
            L = np.linalg.cholesky(G); Li = np.linalg.inv(L)
            xi = X @ B @ Li.T
            Mt = L.T @ (B.T @ M @ B) @ L
            lam, V = np.linalg.eigh(Mt); lam, V = lam[:, ::-1], V[:, :, ::-1]
            nx = (xi ** 2).sum(1)
            for k in (2, 4, 6, 8):
                proj = np.einsum("nd,cdk->nck", xi, V[:, :, :k])
                top = (proj ** 2 * lam[None, :, :k]).sum(2)
                ub = np.sqrt(top + np.maximum(nx[:, None] - (proj ** 2).sum(2), 0) * lam[None, :, k])
                lb = np.sqrt(top)
                assert (ub >= w * (1 - 1e-7)).all() and (lb <= w * (1 + 1e-7)).all()
                c1 = (m + ub >= (m + lb).max(1)[:, None] - 1e-12).sum(1)
                out.append(f"{gname} k={k}: {c1.mean():.2f}")
                tot[gname, k] = tot.get((gname, k), 0) + c1.sum()
        if t % 5 == 0 or t < 3: print(*out)
        a = pol.act(ctx)[0]
        pol.update(ctx, a, env.step(a)["reward"])
    print({k: round(v / (50 * n), 2) for k, v in tot.items()})

if __name__ == '__main__':
    counts() if sys.argv[1:2] == ['counts'] else timing()
