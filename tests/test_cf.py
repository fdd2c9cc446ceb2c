"Known-answer checks of interest_migration.cf: EASE's closed form, user-KNN by hand, ALS/BPR equal to implicit called directly."
import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from interest_migration.cf import ALS, BPR, EASE, UserKNN
from interest_migration.data import DataError
from interest_migration.recommender import RECOMMENDERS, Recommender, evaluate_recommender


def log(pairs, users=None):
    u, i = zip(*pairs)
    return pd.DataFrame({"user_id": np.array(u, np.int64), "item_id": np.array(i, np.int64),
                         "timestamp": pd.to_datetime(np.arange(len(u)), unit="s", utc=True)})


@pytest.fixture(scope="module")
def random_log():
    rng = np.random.default_rng(1)
    X = rng.random((60, 25)) < 0.25
    u, i = np.nonzero(X)
    return log(list(zip(u + 100, i + 1000))), X.astype(np.float64)


def test_ease_equals_numpy_closed_form(random_log):
    ev, X = random_log
    lam = 3.0
    P = np.linalg.inv(X.T @ X + lam * np.eye(X.shape[1]))
    B = np.eye(X.shape[1]) - P / np.diag(P)          # Steck's formula B = I - P diag(1/diag P)
    m = EASE(weight_decay=lam).fit(ev)
    np.testing.assert_allclose(m.B_, B, atol=1e-5)
    np.testing.assert_allclose(m.score(ev), X @ B, atol=1e-4)


def test_ease_two_items_by_hand():
    # each column is a ridge regression on the other item: x1.x2 / (x1.x1 + lambda) = 1 / (2 + 1)
    m = EASE(weight_decay=1.0).fit(log([(1, 1), (1, 2), (2, 1), (3, 2)]))
    np.testing.assert_allclose(m.B_, [[0, 1 / 3], [1 / 3, 0]], atol=1e-7)


def test_user_knn_hand_case():
    hb = log([(1, 10), (1, 11), (2, 10), (2, 11), (2, 12), (3, 13)])
    q = log([(9, 10)])
    s2, s3 = 1 / np.sqrt(2), 1 / np.sqrt(3)
    np.testing.assert_allclose(UserKNN(k=1).fit(hb).score(q), [[s2, s2, 0, 0]], atol=1e-6)
    np.testing.assert_allclose(UserKNN(k=2).fit(hb).score(q), [[s2 + s3, s2 + s3, s3, 0]], atol=1e-6)
    # a training user is never their own neighbour
    np.testing.assert_allclose(UserKNN(k=1).fit(hb).score(hb[hb.user_id == 2]), [[2 / np.sqrt(6)] * 2 + [0, 0]], atol=1e-6)


def test_als_recommendations_equal_implicit_direct(random_log):
    from implicit.cpu.als import AlternatingLeastSquares
    ev, _ = random_log
    ours = ALS(factors=8, max_epochs=5, seed=11, weight_decay=0.1, alpha=2.0).fit(ev)
    X = ours.seen(ev).astype(np.float32).tocsr()
    with threadpool_limits(1, "blas"):
        d = AlternatingLeastSquares(factors=8, iterations=5, regularization=0.1, alpha=2.0, random_state=11, num_threads=1)
        d.fit(X, show_progress=False)
    np.testing.assert_array_equal(ours.item_factors_, d.item_factors)
    ids, _ = d.recommend(np.arange(X.shape[0]), X, N=5)
    rec = ours.recommend(ev, k=5)
    np.testing.assert_array_equal(rec.item_id.to_numpy().reshape(-1, 5), ours.item_ids_[ids])


def test_bpr_factors_equal_implicit_direct(random_log):
    from implicit.cpu.bpr import BayesianPersonalizedRanking
    ev, _ = random_log
    ours = BPR(factors=8, max_epochs=10, seed=5).fit(ev)
    X = ours.seen(ev).astype(np.float32).tocsr()
    with threadpool_limits(1, "blas"):
        d = BayesianPersonalizedRanking(factors=8, iterations=10, random_state=5, num_threads=1)
        d.fit(X, show_progress=False)
    np.testing.assert_array_equal(ours.item_factors_, d.item_factors)
    np.testing.assert_array_equal(ours.user_factors_, d.user_factors)
    # an unseen user gets the items ordered by implicit's item-bias column
    np.testing.assert_allclose(ours.score(log([(-5, 1000)]))[0], d.item_factors[:, -1], atol=1e-6)


@pytest.mark.parametrize("model", [EASE(), UserKNN(k=5), ALS(factors=4, max_epochs=3), BPR(factors=4, max_epochs=3)])
def test_save_load_round_trip_and_contract(model, random_log, tmp_path):
    ev, _ = random_log
    assert RECOMMENDERS[model.kind] is type(model)
    m = model.fit(ev)
    assert m.score(ev).shape == (60, len(m.item_ids_))
    back = Recommender.load(m.save(tmp_path / m.kind))
    pd.testing.assert_frame_equal(back.recommend(ev, k=5), m.recommend(ev, k=5))
    res = evaluate_recommender(m, ev.iloc[::2], ev.iloc[1::2], k=(5,), n_boot=20)
    assert set(res.metric) == {"hit", "ndcg", "mrr"}


def test_bad_input_is_refused():
    with pytest.raises(DataError, match="empty"):
        EASE().fit(log([(1, 1)]).iloc[:0])
    with pytest.raises(DataError, match="item_id"):
        UserKNN().fit(pd.DataFrame({"user_id": [1]}))
    with pytest.raises(DataError, match="weight_decay"):
        EASE(weight_decay=-1).fit(log([(1, 1)]))


def test_cf_in_segment_transfer_comparison():
    "CF models go through evaluate_transfer: its per-user NDCG agrees with evaluate_recommender, and no history means all-zero scores."
    from interest_migration.data import user_cold_start_split
    from interest_migration.segments import GlobalPopularity
    from interest_migration.simulate import simulate_log
    from interest_migration.transfer import evaluate_transfer
    sim = simulate_log(n_users=300, n_items=120, n_events=15_000, migrating_share=0.0, seed=2)
    train, test = user_cold_start_split(sim.events, test_frac=0.25, seed=0)
    models = {"popularity": GlobalPopularity(), "EASE": EASE(weight_decay=50.0), "user-KNN": UserKNN(k=20)}
    ev = evaluate_transfer(models, train, test, sim.users, sim.items, k_first=(0, 3), n_boot=50)
    mean = ev.per_user.groupby(["strategy", "k_first"])["ndcg@10"].mean()
    table = ev.ranking[ev.ranking.metric == "ndcg"].set_index(["strategy", "k_first"])["value"]
    np.testing.assert_allclose(mean.loc[table.index].to_numpy(), table.to_numpy(), atol=1e-9)
    assert set(ev.per_user.strategy) == set(models) and ev.per_user.js.notna().all()
    none = test.iloc[:0]
    new = sim.users[sim.users.user_id.isin(test.user_id)]
    assert np.abs(models["EASE"].score(none, new)).max() == 0 and np.abs(models["user-KNN"].score(none, new)).max() == 0
    # with three revealed events EASE personalises: its rankings differ between users
    k3 = ev.per_user[(ev.per_user.strategy == "EASE") & (ev.per_user.k_first == 3)]["ndcg@10"]
    k0 = ev.per_user[(ev.per_user.strategy == "EASE") & (ev.per_user.k_first == 0)]["ndcg@10"]
    assert not np.allclose(k3.to_numpy(), k0.to_numpy())
