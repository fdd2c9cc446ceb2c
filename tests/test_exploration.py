"Known-answer tests of the exploration module: environment, bandit statistics, LinUCB ridge, OPE estimators."
import numpy as np
import pytest
import torch
from interest_migration.data import DataError
from interest_migration.simulate import sim_world
from interest_migration.exploration import (BetaThompson, DQNPolicy, EpsilonGreedy, LinThompson, LinUCB, RandomPolicy,
                                            SegmentGreedy, UCB1, direct_method, doubly_robust, ips, run_policy, snips)
from interest_migration.bandit_env import BanditEnv, context_features, segment_prior
from interest_migration.offpolicy import ope_table

torch.set_num_threads(1)

@pytest.fixture(scope="module")
def env():
    return BanditEnv(n_users=300, horizon=30, seed=0)

def test_env_world_is_the_simulators(env):
    w = sim_world(2_000 + 300, 80, 8, "2026-01-01", 120, 0.5, 0.7, 30.0, 0)
    np.testing.assert_allclose(env.before, w["before"][2_000:])
    np.testing.assert_allclose(env.after, w["after"][2_000:])
    assert env.history["user_id"].max() <= 2_000  # the prior is learned from known users only

def test_env_exact_expectations_and_migration(env):
    env.reset()
    m0 = env.mixture()
    np.testing.assert_allclose(env.expected_rewards(), np.minimum(1, 1.5 * m0))
    movers = np.flatnonzero(np.isfinite(env.mig_step))
    assert len(movers) > 0 and ((env.mig_step[movers] >= 7) & (env.mig_step[movers] <= 23)).all()  # 25%..75% of 30 steps
    u = movers[0]
    env.t = int(env.mig_step[u])
    np.testing.assert_allclose(env.mixture()[u], env.after[u])
    env.reset()

def test_env_click_rate_matches_expectation():
    e = BanditEnv(n_users=20_000, horizon=2, seed=5, n_history_users=500, history_events=5_000)
    a = np.random.default_rng(0).integers(0, 8, 20_000)
    o = e.step(a)
    assert abs(o["click"].mean() - o["expected"].mean()) < 4 * np.sqrt(0.25 / 20_000)
    assert (o["optimal"] >= o["expected"] - 1e-12).all()
    assert not o["buy"][~o["cart"]].any() and not o["cart"][~o["click"]].any() and (o["dwell"][~o["click"]] == 0).all()

def test_env_rewards_and_determinism():
    d = BanditEnv(n_users=100, horizon=3, reward="dwell", seed=2)
    o1 = d.step(np.zeros(100, int))
    o2 = BanditEnv(n_users=100, horizon=3, reward="dwell", seed=2).step(np.zeros(100, int))
    np.testing.assert_array_equal(o1["reward"], o2["reward"])
    np.testing.assert_allclose(o1["reward"], o1["dwell"] / 60)
    with pytest.raises(DataError, match="reward must be one of"): BanditEnv(n_users=10, reward="likes")
    with pytest.raises(DataError, match="actions must be"): d.step(np.zeros(5, int))

def test_contexts_are_snapshots(env):
    env.reset()
    c = env.contexts()
    env.step(np.zeros(env.n_users, int))
    assert c["shows"].sum() == 0  # a step must not change contexts already handed to a policy
    env.reset()

def test_ucb1_indices_known_answer():
    ctx = {"segment": np.array([0, 1])}
    u = UCB1(2, level="user", c=2.0)
    u.update(ctx, np.array([0, 1]), np.array([1.0, 0.0])).update(ctx, np.array([1, 1]), np.array([0.0, 1.0]))
    idx = u.indices(ctx)
    # user 0: arm 0 1/1, arm 1 0/1, N=2; user 1: arm 1 1/2, arm 0 untried
    np.testing.assert_allclose(idx[0], [1 + np.sqrt(2 * np.log(2)), 0 + np.sqrt(2 * np.log(2))])
    assert np.isinf(idx[1, 0]) and np.isclose(idx[1, 1], 0.5 + np.sqrt(2 * np.log(2) / 2))
    a, p = u.act(ctx)
    np.testing.assert_array_equal(a, [0, 0]); np.testing.assert_array_equal(p, [1, 1])

def test_beta_posterior_known_answer():
    ctx = {"segment": np.array([0, 0, 1])}
    t = BetaThompson(3, level="segment")
    t.update(ctx, np.array([2, 2, 0]), np.array([1.0, 1.0, 0.0]))
    a, b = t.posterior(ctx)
    np.testing.assert_array_equal(a, [[1, 1, 3], [1, 1, 3], [1, 1, 1]])
    np.testing.assert_array_equal(b, [[1, 1, 1], [1, 1, 1], [2, 1, 1]])
    # with a prior: prior_weight pseudo-trials at C/2 * prior successes
    tp = BetaThompson(2, level="user", prior=np.array([[0.8, 0.2]]), prior_weight=2.0)
    a, b = tp.posterior({"segment": np.array([0])})
    np.testing.assert_allclose(a, [[1 + 1.6, 1 + 0.4]]); np.testing.assert_allclose(b, [[1 + 0.4, 1 + 1.6]])

def test_thompson_propensity_is_a_probability():
    ctx = {"segment": np.zeros(1_000, int)}
    t = BetaThompson(2, level="segment", n_propensity_draws=400, seed=0)
    t.update({"segment": np.zeros(20, int)}, np.r_[np.zeros(10, int), np.ones(10, int)], np.r_[np.ones(7), np.zeros(3), np.ones(3), np.zeros(7)])
    a, p = t.act(ctx)
    # P(arm 0) for Beta(8, 4) vs Beta(4, 8): by Monte Carlo with many draws
    r = np.random.default_rng(1)
    p0 = (r.beta(8, 4, 200_000) > r.beta(4, 8, 200_000)).mean()
    assert abs((a == 0).mean() - p0) < 0.03 and abs(p[a == 0].mean() - p0) < 0.03

def test_linucb_ridge_against_numpy():
    rng = np.random.default_rng(0)
    n, C = 500, 3
    ctx = {"segment": rng.integers(0, 8, n), "region": rng.integers(0, 5, n), "age": rng.normal(37, 12, n),
           "clicks": rng.random((n, C)), "shows": rng.random((n, C)) * 3, "dwell": rng.random((n, C)), "last_dwell": rng.random(n)}
    acts, r = rng.integers(0, C, n), rng.random(n)
    lin = LinUCB(C, alpha=0.7, weight_decay=3.0).update(ctx, acts, r)
    X = context_features(ctx)
    for k in range(C):
        Xa = X[acts == k]
        theta = np.linalg.solve(3.0 * np.eye(X.shape[1]) + Xa.T @ Xa, Xa.T @ r[acts == k])
        np.testing.assert_allclose(lin.theta()[k], theta, rtol=1e-8, atol=1e-10)
        Ainv = np.linalg.inv(3.0 * np.eye(X.shape[1]) + Xa.T @ Xa)
        m, w = lin.scores(X[:5])
        np.testing.assert_allclose(w[:, k], np.sqrt(np.einsum("ni,ij,nj->n", X[:5], Ainv, X[:5])), rtol=1e-8)
        np.testing.assert_allclose(m[:, k], X[:5] @ theta, rtol=1e-8, atol=1e-10)

def test_linucb_structured_scores_and_decisions_equal_plain_numpy():
    "The (segment x region group, dense block) scoring path gives the plain x'A^-1 x and x'theta, and the same decisions, over a real run."
    e = BanditEnv(n_users=400, horizon=6, seed=2)
    lin, Xs, As, Rs = LinUCB(e.C, alpha=0.8, weight_decay=2.0, seed=0), [], [], []
    for _ in range(e.horizon):
        c = e.contexts()
        X = context_features(c)
        if Xs:  # plain numpy ridge of everything seen so far, every arm
            Xa, Aa, Ra = np.vstack(Xs), np.concatenate(As), np.concatenate(Rs)
            A = np.stack([2.0 * np.eye(X.shape[1]) + Xa[Aa == k].T @ Xa[Aa == k] for k in range(e.C)])
            th = np.stack([np.linalg.solve(A[k], Xa[Aa == k].T @ Ra[Aa == k]) for k in range(e.C)])
            m0 = X @ th.T
            w0 = np.sqrt(np.stack([np.einsum("ni,ij,nj->n", X, np.linalg.inv(A[k]), X) for k in range(e.C)], 1))
            m, w = lin.scores(X)  # groups found from X
            np.testing.assert_allclose(m, m0, rtol=1e-9, atol=1e-11)
            np.testing.assert_allclose(w, w0, rtol=1e-9, atol=1e-11)
            u0 = np.sort(m0 + 0.8 * w0, 1)
            clear = u0[:, -1] - u0[:, -2] > 1e-8  # decisions not within a float tie
            a, _ = lin.act(c)
            assert clear.mean() > 0.9
            np.testing.assert_array_equal(a[clear], (m0 + 0.8 * w0).argmax(1)[clear])
        else: a, _ = lin.act(c)
        r = e.step(a)["reward"]
        lin.update(c, a, r)
        Xs.append(X); As.append(a); Rs.append(r)
    Xr = np.random.default_rng(0).random((7, X.shape[1]))  # not context_features' layout: the plain path
    assert lin._groups(Xr) is None
    m, w = lin.scores(Xr)
    np.testing.assert_allclose(w[:, 3], np.sqrt(np.einsum("ni,ij,nj->n", Xr, np.linalg.inv(lin.A_[3]), Xr)), rtol=1e-9)
    np.testing.assert_allclose(m, Xr @ lin.theta().T, rtol=1e-9, atol=1e-12)

def test_epsilon_greedy_propensities():
    e = EpsilonGreedy(4, epsilon=0.2, level="user")
    ctx = {"segment": np.zeros(3, int)}
    e.update(ctx, np.array([1, 2, 3]), np.array([1.0, 1.0, 1.0]))
    p = e.probs(ctx)
    np.testing.assert_allclose(p[0], [0.05, 0.85, 0.05, 0.05])
    a, pa = e.act(ctx)
    np.testing.assert_allclose(pa, p[np.arange(3), a])

def test_ope_estimators_hand_computed():
    r = np.array([1.0, 0.0, 1.0, 1.0])
    a = np.array([0, 1, 1, 0])
    mu = np.array([0.5, 0.5, 0.25, 0.8])
    pi = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.2, 0.8]])
    q = np.array([[0.6, 0.3], [0.2, 0.4], [0.5, 0.9], [0.7, 0.1]])
    w = np.array([2.0, 2.0, 2.0, 0.25])  # pi(a|x) / mu(a|x)
    assert np.isclose(ips(r, a, mu, pi), (2 + 0 + 2 + 0.25) / 4)
    assert np.isclose(snips(r, a, mu, pi), 4.25 / 6.25)
    dm = np.array([0.6, 0.4, 0.7, 0.22])
    assert np.isclose(direct_method(pi, q), dm.mean())
    resid = np.array([1 - 0.6, 0 - 0.4, 1 - 0.9, 1 - 0.7])
    assert np.isclose(doubly_robust(r, a, mu, pi, q), (dm + w * resid).mean())
    # DR with the true reward function and IPS agree in expectation; with a perfect model DR equals DM when residuals are 0
    assert np.isclose(doubly_robust(q[np.arange(4), a], a, mu, pi, q), direct_method(pi, q))
    with pytest.raises(DataError, match="propensities"): ips(r, a, np.array([0.5, 0, 0.5, 0.5]), pi)
    with pytest.raises(DataError, match="q_hat"): doubly_robust(r, a, mu, pi, q[:, :1])

def test_policies_improve_on_random_and_regret_is_exact():
    e = BanditEnv(n_users=400, horizon=25, seed=4)
    pr = segment_prior(e)
    res = {P.name: run_policy(e, P) for P in [RandomPolicy(8, seed=0), SegmentGreedy(pr), UCB1(8, "user", pr), LinThompson(8, seed=0),
                                              DQNPolicy(8, pr, batch_size=256, seed=0)]}
    for name, df in res.items():
        assert (df["regret"] >= -1e-12).all(), name
        np.testing.assert_allclose(df["cum_regret"], np.cumsum(df["optimal"] - df["expected"]))
    for name in ("segment greedy", "UCB1", "linear Thompson", "DQN"):
        assert res[name]["cum_regret"].iloc[-1] < 0.8 * res["random"]["cum_regret"].iloc[-1], name

def test_dqn_deterministic_under_seed():
    def go():
        e = BanditEnv(n_users=100, horizon=6, seed=1)
        return run_policy(e, DQNPolicy(8, segment_prior(e), batch_size=64, seed=3))["expected"].to_numpy()
    np.testing.assert_array_equal(go(), go())

def test_ope_table_dr_bias_no_larger_than_ips():
    tab, runs = ope_table(seeds=range(6), n_users=200, horizon=10)
    assert set(tab.index) == {"IPS", "SNIPS", "DM", "DR"} and len(runs) == 24
    assert tab.loc["DR", "rmse"] <= tab.loc["IPS", "rmse"] * 1.05

def test_context_features_layout_known_answer():
    # the in-place builder against the one-hot + hstack definition it replaced
    rng = np.random.default_rng(3)
    n, C = 50, 4
    ctx = {"segment": rng.integers(0, 8, n), "region": rng.integers(0, 5, n), "age": rng.normal(37, 12, n),
           "clicks": rng.random((n, C)), "shows": rng.random((n, C)) * 3, "dwell": rng.random((n, C)), "last_dwell": rng.random(n)}
    ref = np.hstack([np.ones((n, 1)), np.eye(8)[ctx["segment"]], np.eye(5)[ctx["region"]], ((ctx["age"] - 37) / 12)[:, None],
                     (ctx["clicks"] + 0.1) / (ctx["shows"] + 1.0), ctx["dwell"], ctx["last_dwell"][:, None]])
    np.testing.assert_array_equal(context_features(ctx), ref)
    with pytest.raises(DataError, match="segment"): context_features({**ctx, "segment": np.r_[ctx["segment"][:-1], 8]})

def test_segment_fast_paths_match_the_per_user_law():
    from interest_migration.exploration import _argmax_ties_keys
    rng = np.random.default_rng(0)
    T = np.array([[1.0, 3.0, 3.0, 0.0], [2.0, 1.0, 0.0, 0.0]])
    a = _argmax_ties_keys(T, np.r_[np.zeros(20_000, int), np.ones(10, int)], rng)
    assert set(a[:20_000]) == {1, 2} and abs((a[:20_000] == 1).mean() - 0.5) < 0.02  # ties split uniformly per user
    np.testing.assert_array_equal(a[20_000:], 0)
    # UCB1 at segment level decides per segment: every user of a segment gets its segment's unique best arm
    ctx = {"segment": np.array([0, 0, 1, 1])}
    u = UCB1(3, level="segment").update(ctx, np.array([0, 1, 2, 2]), np.array([1.0, 0.0, 1.0, 1.0]))
    u.update(ctx, np.array([2, 0, 0, 1]), np.array([0.0, 1.0, 0.0, 0.0]))
    idx = u.indices(ctx)
    a, _ = u.act(ctx)
    np.testing.assert_array_equal(a, idx.argmax(1))
    with pytest.raises(DataError, match="actions"): u.update(ctx, np.array([0, 1, 3, 0]), np.ones(4))
    with pytest.raises(DataError, match="actions"): LinUCB(3).update({**ctx, "region": np.zeros(4, int), "age": np.full(4, 30.0),
                                                              "clicks": np.zeros((4, 3)), "shows": np.zeros((4, 3)), "dwell": np.zeros((4, 3)),
                                                              "last_dwell": np.zeros(4)}, np.array([0, 1, -1, 0]), np.ones(4))

def test_prepare_builds_the_features_act_and_update_use(monkeypatch):
    "prepare builds the feature matrix once (outside the timer): act and update of that step reuse it, run_policy reports CPU-time speed."
    import interest_migration.exploration as ex
    e = BanditEnv(n_users=50, horizon=2, seed=0)
    lin, c = LinUCB(e.C), e.contexts()
    lin.prepare(c)
    def boom(*a, **k): raise AssertionError("features rebuilt after prepare")
    monkeypatch.setattr(ex, "context_features", boom)
    a, _ = lin.act(c)
    lin.update(c, a, e.step(a)["reward"])
    monkeypatch.undo()
    df = run_policy(e, LinUCB(e.C))
    assert np.isfinite(df.attrs["decisions_per_cpu_s"]) and df.attrs["decisions_per_cpu_s"] > 0

class _CountingRNG:
    "A numpy Generator that counts the Beta variates it draws."
    def __init__(self, seed): self.g, self.betas = np.random.default_rng(seed), 0
    def beta(self, a, b, size=None):
        out = self.g.beta(a, b, size)
        self.betas += np.size(out)
        return out
    def random(self, size=None): return self.g.random(size)

def test_thompson_undrawn_categories_could_not_win():
    "Segment-level Thompson sampling leaves out draws that cannot win: the same decisions as computing every draw on the same stream, the same law as plain draws."
    from interest_migration.exploration import _beta_argmax, _key_groups
    A = np.array([[300., 100., 280., 2., 1.], [5., 5., 5., 5., 5.], [1000., 900., 30., 1., 2.]])
    B = np.array([[700., 900., 720., 40., 1.], [5., 5., 5., 5., 5.], [9000., 9100., 970., 60., 1.]])
    k = np.random.default_rng(0).integers(0, 3, 30_000)
    G = _key_groups(k)
    assert [s for s, _ in G] == [0, 1, 2] and all((k[i] == s).all() for s, i in G) and sum(len(i) for _, i in G) == len(k)
    r1, r2 = _CountingRNG(1), _CountingRNG(1)
    fast = _beta_argmax(A, B, G, len(k), r1)
    ref = _beta_argmax(A, B, G, len(k), r2, exact_all=True)  # every undrawn category's value by the inverse CDF of its uniform
    np.testing.assert_array_equal(fast, ref)
    assert r1.betas < 0.85 * A.shape[1] * len(k)  # draws were in fact left out (key 0: arms 1 and 3; key 2: arm 2)
    plain = np.random.default_rng(2).beta(A[k], B[k]).argmax(1)
    for s in range(3):
        f1 = np.bincount(fast[k == s], minlength=5) / (k == s).sum()
        f2 = np.bincount(plain[k == s], minlength=5) / (k == s).sum()
        np.testing.assert_allclose(f1, f2, atol=0.02)
    # on a real run's posteriors, and through BetaThompson.act: decisions equal the all-draws reference on the same stream
    e = BanditEnv(n_users=1_200, horizon=12, seed=3)  # >= 128 users a segment: the per-segment sampler
    t = BetaThompson(e.C, "segment", n_propensity_draws=0, seed=4)
    for _ in range(e.horizon):
        c = e.contexts()
        s = np.clip(t.s_, 0, t.n_) if t.s_ is not None else None
        state = t.rng.bit_generator.state
        a, _ = t.act(c)
        if s is not None:
            ref_rng = np.random.default_rng(); ref_rng.bit_generator.state = state
            np.testing.assert_array_equal(a, _beta_argmax(1 + s, 1 + t.n_ - s, _key_groups(c["segment"]), len(a), ref_rng, exact_all=True))
        t.update(c, a, e.step(a)["reward"])

def test_linucb_compiled_kernels_equal_the_numpy_reference_on_real_runs():
    "The fused numba path makes exactly the NumPy path's decisions over whole episodes (step 0 is all ties), with the same A, b, theta."
    for seed, (n, H, alpha, wd) in enumerate([(400, 12, 1.0, 1.0), (300, 8, 0.3, 2.0)]):
        runs = []
        for compiled in (False, True):
            e, pol, acts = BanditEnv(n_users=n, horizon=H, seed=seed), LinUCB(8, alpha=alpha, weight_decay=wd, seed=seed, compiled=compiled), []
            for _ in range(H):
                c = e.contexts()
                pol.prepare(c)
                a, p = pol.act(c)
                pol.update(c, a, e.step(a)["reward"])
                acts.append(a)
            runs.append((np.array(acts), pol))
        (a0, p0), (a1, p1) = runs
        np.testing.assert_array_equal(a1, a0)
        assert p1.rng.bit_generator.state == p0.rng.bit_generator.state  # the tie-break stream is where rng.random((n, C)) per step leaves it
        np.testing.assert_allclose(p1.A_, p0.A_, rtol=1e-13, atol=1e-10)
        np.testing.assert_allclose(p1.b_, p0.b_, rtol=1e-13, atol=1e-10)
        np.testing.assert_allclose(p1.theta(), p0.theta(), rtol=1e-8, atol=1e-10)
        np.testing.assert_array_equal(p1.A_[:, 1:14, 1:14], p0.A_[:, 1:14, 1:14])  # the one-hot block is a count: exact
        m0, w0 = p0.scores(*p0._features(c))
        m1, w1 = p1.scores(*p1._features(c))
        np.testing.assert_allclose(m1, m0, rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(w1, w0, rtol=1e-9, atol=1e-11)
    with pytest.raises(DataError, match="weight_decay"): LinUCB(8, weight_decay=0.0)

def test_tie_uniforms_are_the_rows_of_the_full_draw():
    "The tie-break rows drawn by PCG64.advance are exactly those rows of rng.random((n, C)), and the stream ends where that call leaves it."
    from interest_migration.exploration import _tie_uniforms
    for rows in ([], [0], [3, 17, 18, 49], list(range(20))):
        ref, rng = np.random.default_rng([5, 7]), np.random.default_rng([5, 7])
        U = ref.random((50, 8))
        np.testing.assert_array_equal(_tie_uniforms(rng, np.array(rows, int), 50, 8), U[rows])
        assert rng.bit_generator.state == ref.bit_generator.state
        assert rng.random() == ref.random()
