"Zero-shot beyond the notebook: calibration, the item-cold split's invariants, the content map, clustering, k-shot tasks, MAML's gradients."
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from hypothesis import HealthCheck, given, settings, strategies as st
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import adjusted_rand_score

from interest_migration.data import user_cold_start_split
from interest_migration.simulate import simulate_log
from interest_migration.segments import GlobalPopularity
from interest_migration.transfer import evaluate_transfer
from interest_migration.encoders import TextEncoder
from interest_migration.tagging import evaluate_taggers
from interest_migration.zero_shot import (ColdItemRecommender, ContentToCF, SVDFactors, ZeroShotTagger, _platt,
                                          _platt_per_tag, cold_item_truth, compare_rankers, item_cold_split)
from interest_migration.cold_users import (ALGORITHMS, InterestClusters, MAMLInterest, PrototypeInterest, _MLP, _adapt,
                                           _query_loss, kshot_data, kshot_logloss)

torch.set_num_threads(1)


def _log(n_users, n_items, n_events, seed):
    r = np.random.default_rng(seed)
    return pd.DataFrame({"user_id": r.integers(1, n_users + 1, n_events), "item_id": r.integers(1, n_items + 1, n_events),
                         "timestamp": pd.to_datetime(r.integers(0, 10**6, n_events), unit="s", utc=True)})


@pytest.fixture(scope="module")
def encoder():
    return TextEncoder(num_threads=1)


@pytest.fixture(scope="module")
def sim():
    return simulate_log(n_users=300, n_items=200, n_categories=5, n_events=12_000, migrating_share=0.0, seed=1)


def test_platt_recovers_a_known_logistic_curve():
    r = np.random.default_rng(0)
    z = r.normal(size=(20_000, 2))
    a_true, b_true = np.array([2.0, -1.0]), np.array([-1.0, 0.5])
    y = (r.random(z.shape) < 1 / (1 + np.exp(-(a_true * z + b_true)))).astype(float)
    a, b = _platt(z, y, reg=0.0)
    np.testing.assert_allclose(a, a_true, atol=0.1)
    np.testing.assert_allclose(b, b_true, atol=0.1)


def test_per_tag_platt_never_flips_a_tag():
    "A tag whose labels run against its similarity would get a negative slope: it falls back to the global curve."
    r = np.random.default_rng(1)
    z = r.normal(size=(2_000, 3))
    y = np.c_[r.random(2_000) < 1 / (1 + np.exp(-2 * z[:, 0])), r.random(2_000) < 1 / (1 + np.exp(-2 * z[:, 1])),
              r.random(2_000) < 1 / (1 + np.exp(1.5 * z[:, 2]))].astype(float)      # tag 2: slope -1.5 in truth
    a_free, _ = _platt(z, y)
    assert a_free[2] < 0                                                            # the unconstrained fit would flip it
    a, b, fb = _platt_per_tag(z, y)
    assert fb.tolist() == [False, False, True] and (a >= 0).all()
    ag, bg = _platt(z.reshape(-1, 1), y.reshape(-1, 1))
    np.testing.assert_allclose([a[2], b[2]], [max(ag[0], 0), bg[0]])
    np.testing.assert_allclose(a[:2], a_free[:2])
    # every tag anti-correlated: the global slope is negative too, so the fallback slope is 0 (a constant, never a flip)
    a2, _, fb2 = _platt_per_tag(z[:, :2], 1 - y[:, :2])
    assert fb2.all() and (a2 == 0).all()


def test_zero_shot_tagger_records_fallback_tags(encoder):
    texts = ["a rocket to the moon", "a haunted house and a ghost", "the striker scored twice", "astronauts on mars",
             "zombies attack at night", "the goalkeeper saved a penalty"]
    flipped = [["horror", "football"], ["horror", "space"], ["football", "space"], ["horror", "football"],
               ["horror", "space"], ["football", "space"]]                       # "space" on exactly the non-space texts
    zs = ZeroShotTagger(encoder, calibration="per_tag", tune=None).fit(texts, flipped)
    assert "space" in zs.calibration_fallback_ and (zs.a_ >= 0).all()
    j = zs.tag_index_["space"]
    S, P = zs.similarity(texts)[:, j], zs.predict_proba(texts)[:, j]
    assert (np.diff(P[np.argsort(S)]) >= -1e-12).all()                           # the ranking by similarity is kept


def test_zero_shot_tagger_contract(encoder):
    texts = ["a rocket to the moon", "a haunted house and a ghost", "the striker scored twice", "astronauts on mars",
             "zombies attack at night", "the goalkeeper saved a penalty"]
    tags = [["space"], ["horror"], ["football"], ["space"], ["horror"], ["football"]]
    zs = ZeroShotTagger(encoder, templates=("{tag}", "a story about {tag}"), calibration="per_tag")
    with pytest.raises(NotFittedError):
        zs.predict_proba(texts)
    assert clone(zs).get_params()["templates"] == ("{tag}", "a story about {tag}")
    zs.fit(texts[:3], tags[:3], texts[3:], tags[3:])            # tuned thresholds on the validation texts
    P = zs.predict_proba(texts)
    assert P.shape == (6, 3) and ((P >= 0) & (P <= 1)).all()
    assert zs.predict_tags(["a spaceship near jupiter"]) == [["space"]]
    # calibration keeps the per-tag order of the raw similarity (positive slopes here)
    S = zs.similarity(texts)
    for j in range(3):
        assert (np.argsort(S[:, j]) == np.argsort(P[:, j])).all()
    # the raw similarity is exactly the cosine of the prompt-ensemble embedding
    E = encoder.encode(texts)
    np.testing.assert_allclose(S, E @ zs.tag_embeddings_.T, atol=1e-5)
    ev = evaluate_taggers({"zero-shot": zs}, texts, tags, n_boot=20)
    assert list(ev.table.model.unique()) == ["zero-shot"]


def test_zero_shot_accepts_embeddings(encoder):
    texts = ["a rocket to the moon", "a haunted house"]
    zs = ZeroShotTagger(encoder, calibration="none").fit(texts, [["space"], ["horror"]])
    np.testing.assert_allclose(zs.predict_proba(encoder.encode(texts)), zs.predict_proba(texts), atol=1e-6)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), frac=st.floats(0.05, 0.5), by=st.sampled_from(["first_seen", "random"]))
def test_item_cold_split_invariants(seed, frac, by):
    ev = _log(30, 40, 400, seed)
    s = item_cold_split(ev, frac=frac, by=by, seed=seed)
    assert not set(s.train.item_id) & set(s.test.item_id)
    assert len(s.train) + len(s.test) + s.report["dropped_warm_events_after_cut"] == len(ev)
    assert s.report["cold_items"] == s.test.item_id.nunique()
    if by == "first_seen":
        assert s.train.timestamp.max() < s.test.timestamp.min()
        first = ev.groupby("item_id").timestamp.min()
        assert first[s.test.item_id.unique()].min() >= first[s.train.item_id.unique()].max()


def test_item_cold_split_errors():
    ev = _log(5, 5, 30, 0)
    with pytest.raises(ValueError, match="frac must be in"):
        item_cold_split(ev, frac=0)
    with pytest.raises(ValueError, match="missing column"):
        item_cold_split(ev.drop(columns="item_id"))


def test_content_map_linear_recovery_and_reproducibility():
    r = np.random.default_rng(3)
    X, W = r.normal(size=(300, 10)), r.normal(size=(10, 3))
    m = ContentToCF("ridge", alpha=1e-8).fit(X, X @ W)
    np.testing.assert_allclose(m.model_.coef_.T, W, atol=1e-5)
    a = ContentToCF("mlp", max_epochs=50, seed=7).fit(X, X @ W).predict(X[:5])
    b = ContentToCF("mlp", max_epochs=50, seed=7).fit(X, X @ W).predict(X[:5])
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="same rows"):
        ContentToCF().fit(X, X[:10] @ W)


def test_svd_factors_and_cold_recommender():
    ev = _log(40, 30, 600, 1)
    mf = SVDFactors(n_factors=5, seed=0).fit(ev)
    X = np.zeros((40, 30)); X[ev.user_id - 1, ev.item_id - 1] = 1
    U, s, Vt = np.linalg.svd(X[np.ix_(np.isin(np.arange(1, 41), mf.users_.classes_), np.isin(np.arange(1, 31), mf.items_.classes_))])
    np.testing.assert_allclose(mf.user_factors_ @ mf.item_factors_.T, (U[:, :5] * s[:5]) @ Vt[:5], atol=5e-3)   # randomized SVD: close, not exact
    emb = pd.DataFrame(np.random.default_rng(0).normal(size=(31, 8)), index=np.arange(1, 32))   # item 31 is new
    rec = ColdItemRecommender(SVDFactors(5)).fit(ev, emb)
    assert rec.score_pairs([1, 2], [31]).shape == (2, 1)
    with pytest.raises(ValueError, match="no embedding"):
        rec.score_pairs([1], [99])
    with pytest.raises(ValueError, match="lacks"):
        ColdItemRecommender().fit(ev, emb.iloc[:5])
    truth = cold_item_truth(ev.iloc[:5], [ev.user_id.iloc[0]], [ev.item_id.iloc[0]])
    assert truth.shape == (1, 1) and truth.sum() == 1
    tab = compare_rankers({"a": np.array([[1.0, 0.0]]), "b": np.array([[0.0, 1.0]])},
                          sp.csr_matrix([[1.0, 0.0]]),
                          k=(1,), n_boot=10)
    v = tab.set_index(["model", "metric"]).value
    assert v["a", "recall"] == 1.0 and v["b", "recall"] == 0.0


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 1000))
def test_planted_clusters_recovered(seed):
    r = np.random.default_rng(seed)
    centres = r.dirichlet(np.full(6, 0.3), 4)
    while np.min([np.abs(a - b).sum() for i, a in enumerate(centres) for b in centres[i + 1:]]) < 0.8:
        centres = r.dirichlet(np.full(6, 0.3), 4)
    lab = np.repeat(np.arange(4), 60)
    P = np.vstack([r.dirichlet(500 * c + 1e-3, 60) for c in centres])
    km = InterestClusters("kmeans", k=4, seed=0).fit(P)
    assert adjusted_rand_score(lab, km.labels_) == 1.0


def test_kshot_data_errors(sim):
    with pytest.raises(ValueError, match="k_max must be"):
        kshot_data(sim.events, sim.items, sim.users, k_max=0)
    with pytest.raises(ValueError, match="no column"):
        kshot_data(sim.events, sim.items, sim.users, feature_cols=["income"])
    d = kshot_data(sim.events, sim.items, sim.users, k_max=3)
    n_ev = sim.events.user_id.value_counts()
    assert len(d) == int((n_ev > 3).sum())
    assert d.query.sum() + (d.support >= 0).sum() == n_ev[n_ev > 3].sum()


def test_adapt_with_no_events_changes_nothing():
    net = _MLP(2, 4, 3)
    p = {k: v.detach() for k, v in net.named_parameters()}
    out = _adapt(net, p, torch.ones(2), torch.zeros(3), steps=3, lr=1.0)
    for k in p:
        torch.testing.assert_close(out[k], p[k])


def test_maml_meta_gradient_is_second_order():
    "torch.func's grad through the inner step equals autograd with create_graph, and differs from the first-order one."
    torch.manual_seed(0)
    net = _MLP(3, 5, 4)
    p = {k: v.detach().clone() for k, v in net.named_parameters()}
    x, c, q = torch.randn(3), torch.tensor([2.0, 0, 1, 0]), torch.tensor([5.0, 1, 3, 1])
    g_func = torch.func.grad(lambda pp: _query_loss(net, _adapt(net, pp, x, c, 1, 0.5), x, q))(p)
    leaves = {k: v.clone().requires_grad_(True) for k, v in p.items()}
    lp = torch.log_softmax(torch.func.functional_call(net, leaves, (x[None],))[0], -1)
    inner = torch.autograd.grad(-(c * lp).sum(), list(leaves.values()), create_graph=True)
    phi = {k: leaves[k] - 0.5 * g for k, g in zip(leaves, inner)}
    outer = torch.autograd.grad(_query_loss(net, phi, x, q), list(leaves.values()))
    for (k, g) in zip(leaves, outer):
        torch.testing.assert_close(g_func[k], g, rtol=1e-4, atol=1e-6)
    phi_fo = {k: v.detach() for k, v in _adapt(net, p, x, c, 1, 0.5).items()}
    g_fo = torch.func.grad(lambda pp: _query_loss(net, pp, x, q))(phi_fo)
    assert max((g_fo[k] - g_func[k]).abs().max().item() for k in p) > 1e-4


def test_kshot_logloss_known_answer():
    Q = np.array([[2.0, 0.0], [0.0, 1.0]])
    P = {0: np.full((2, 2), 0.5), 1: np.array([[1.0, 0.0], [0.0, 1.0]])}
    assert kshot_logloss(P.__getitem__, Q, [0]) == pytest.approx(np.log(2))
    assert kshot_logloss(P.__getitem__, Q, [0, 1]) == pytest.approx(np.log(2) / 2)


def test_maml_auto_inner_loop_uses_only_the_training_tasks():
    "inner_lr='auto' picks the adapting candidate, is reproducible, and validates on a seeded share of the given tasks."
    r = np.random.default_rng(0)
    n, C = 200, 4
    fav = r.integers(0, C, n)
    p = np.full((n, C), 0.15 / (C - 1)); p[np.arange(n), fav] = 0.85
    S = np.stack([r.choice(C, 5, p=pi) for pi in p]); Q = np.stack([r.multinomial(40, pi) for pi in p]).astype(float)
    X = np.ones((n, 1))
    kw = dict(hidden=8, inner_lr="auto", inner_grid=((0.0, 1), (0.3, 1)), meta_steps=60, meta_batch=32, val_frac=0.25)
    m = MAMLInterest("fomaml", **kw).fit_tasks(X, S, Q)
    assert (m.inner_lr_, m.inner_steps_) == (0.3, 1)
    assert m.tuning_report_ == {"train_tasks": 150, "val_tasks": 50}
    assert m.tuning_.val_logloss.iloc[1] < m.tuning_.val_logloss.iloc[0]
    m2 = MAMLInterest("fomaml", **kw).fit_tasks(X, S, Q)
    pd.testing.assert_frame_equal(m.tuning_, m2.tuning_)
    assert clone(m).get_params()["inner_lr"] == "auto"
    with pytest.raises(ValueError, match="val_frac"):
        MAMLInterest(inner_lr="auto", val_frac=1.0).fit_tasks(X, S, Q)
    with pytest.raises(ValueError, match="inner_grid is empty"):
        MAMLInterest(inner_lr="auto", inner_grid=()).fit_tasks(X, S, Q)
    fixed = MAMLInterest("fomaml", hidden=8, inner_lr=0.1, inner_steps=2, meta_steps=5).fit_tasks(X, S, Q)
    assert (fixed.inner_lr_, fixed.inner_steps_) == (0.1, 2) and not hasattr(fixed, "tuning_")


def test_content_map_auto_alpha():
    r = np.random.default_rng(2)
    X = r.normal(size=(200, 10)); Y = r.normal(size=(200, 3))                       # pure noise: shrink as much as allowed
    assert ContentToCF("ridge", alpha="auto", alphas=(1e-3, 1e4)).fit(X, Y).alpha_ == 1e4
    W = r.normal(size=(10, 3))
    assert ContentToCF("ridge", alpha="auto", alphas=(1e-3, 1e4)).fit(X, X @ W).alpha_ == 1e-3


def test_maml_reproducible_and_algorithms_differ():
    r = np.random.default_rng(0)
    X, S, Q = np.ones((50, 1)), r.integers(0, 3, (50, 4)), r.integers(0, 5, (50, 3)) + 1.0
    fits = {a: MAMLInterest(a, hidden=8, inner_lr=0.05, meta_steps=20, meta_batch=16).fit_tasks(X, S, Q) for a in ALGORITHMS}
    again = MAMLInterest("maml", hidden=8, inner_lr=0.05, meta_steps=20, meta_batch=16).fit_tasks(X, S, Q)
    for k in again.params_:
        torch.testing.assert_close(again.params_[k], fits["maml"].params_[k])
    assert not torch.allclose(fits["maml"].params_["out.weight"], fits["reptile"].params_["out.weight"])
    P = fits["fomaml"].predict_tasks(X[:5], np.eye(3)[[0, 1, 2, 0, 1]])
    np.testing.assert_allclose(P.sum(1), 1, rtol=1e-5)


def test_cold_user_strategies_through_evaluate_transfer(sim, tmp_path):
    train, test = user_cold_start_split(sim.events, test_frac=0.2, seed=0)
    strats = {"global": GlobalPopularity(), "proto": PrototypeInterest(n_prototypes=3, episodes=20),
              "maml": MAMLInterest(meta_steps=10)}
    ev = evaluate_transfer(strats, train, test, sim.users, sim.items, k_first=(0, 2), n_boot=10)
    assert set(ev.per_user.strategy) == set(strats)
    prof = strats["maml"].predict_profile(sim.users.iloc[:4])
    np.testing.assert_allclose(prof.sum(1), 1, rtol=1e-6)
    assert clone(strats["proto"]).get_params()["n_prototypes"] == 3
    for name, kind in (("proto", "prototype_interest"), ("maml", "maml_interest")):
        assert strats[name].kind == kind
        with pytest.raises(NotImplementedError, match="pickle"):
            strats[name].save(tmp_path / name)


def test_cold_item_recommender_contract(tmp_path):
    "score over the whole catalogue (known answer: user factors . mapped text), recommend without history, save/load."
    from interest_migration.recommender import Recommender
    ev = _log(40, 30, 600, 1)
    emb = pd.DataFrame(np.random.default_rng(0).normal(size=(31, 8)), index=np.arange(1, 32))   # item 31 is new
    rec = ColdItemRecommender(SVDFactors(5), ContentToCF("ridge", alpha="auto")).fit(ev, emb)
    assert list(rec.item_ids_) == list(range(1, 32)) and rec.kind == "cold_item"
    users = np.sort(ev.user_id.unique())
    S = rec.score(ev)
    assert S.shape == (len(users), 31)
    np.testing.assert_allclose(S, rec.score_pairs(users, np.arange(1, 32)), rtol=1e-6)
    np.testing.assert_allclose(S[0], rec.mf_.user_factors_[0] @ rec.mapper_.predict(emb.to_numpy()).T, rtol=1e-5, atol=1e-6)
    r = rec.recommend(ev, k=5)
    assert list(r.columns) == ["user_id", "item_id", "rank", "score"] and len(r) == 5 * len(users)
    seen = set(zip(ev.user_id, ev.item_id))
    assert not any((u, i) in seen for u, i in zip(r.user_id, r.item_id))
    back = Recommender.load(rec.save(tmp_path / "m"))
    assert type(back) is ColdItemRecommender and back.get_params()["mf"].n_factors == 5
    assert back.get_params()["mapper"].alphas == ContentToCF().alphas
    np.testing.assert_array_equal(back.score(ev), S)
    pd.testing.assert_frame_equal(back.recommend(ev, k=5), r)
    with pytest.raises(ValueError, match="not seen in training"):
        rec.score(None, users=pd.DataFrame({"user_id": [999]}))
    with pytest.raises(ValueError, match="duplicated item_id"):
        ColdItemRecommender(SVDFactors(5)).fit(ev, pd.concat([emb, emb.iloc[:1]]))
