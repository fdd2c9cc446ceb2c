"Checks of interest_migration.prediction that do not belong in the notebook: properties, references, file layouts, slow planted-truth runs."
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st
from sklearn.base import clone

from interest_migration.data import BEHAVIORS, read_retailrocket, read_taobao, simulate_log, user_cold_start_split
from interest_migration.metrics import js_divergence
from interest_migration.prediction import (
    BEHAVIOR_WEIGHTS, MODELS, FrozenExtractor, LastWindowProfile, PopularityBaseline, TorchMLPClassifier,
    compare_models, detect_migrations, event_weights, interest_profile, make_model, migration_matrix,
    migration_scores, next_window_dataset, predict_scores, purchase_intent_dataset, reference_migration,
    score_detections, transition_matrix, window_edges, windowed_profiles, windowed_profiles_dask,
    windowed_profiles_parquet, WindowedProfiles, bench_profiles)

from logs import T0, make_log  # tests/logs.py

ITEMS = pd.DataFrame({"item_id": np.arange(6), "category": list("aabbcc"),
                      "genres": [["a"], ["a", "b"], ["b"], ["b", "c"], ["c"], ["a", "b", "c"]]})


logs = st.lists(st.tuples(st.integers(1, 6), st.integers(0, 5), st.floats(0, 24 * 40, allow_nan=False),
                          st.integers(0, 5)), min_size=1, max_size=60).map(make_log)


@settings(max_examples=40, deadline=None)
@given(logs, st.sampled_from(["category", "genres"]), st.sampled_from(["3D", "7D", "MS"]))
def test_total_weight_is_kept(ev, col, freq):
    "Every event's weight lands in exactly one window, split over its item's categories: nothing lost or doubled."
    wp = windowed_profiles(ev, ITEMS, freq=freq, category_col=col)
    np.testing.assert_allclose(wp.matrix.sum(), event_weights(ev).sum())
    assert wp.report["events_used"] == len(ev) and wp.report["events_outside_windows"] == 0
    s = wp.shares()
    active = wp.totals() > 0
    np.testing.assert_allclose(s.sum(-1)[active], 1.0)
    assert (s.sum(-1)[~active] == 0).all()
    back = WindowedProfiles.from_frame(wp.to_frame(), wp.edges, wp.categories, wp.users)
    np.testing.assert_allclose(back.matrix.toarray(), wp.matrix.toarray())


@settings(max_examples=30, deadline=None)
@given(logs)
def test_whole_period_profile_is_sum_of_windows(ev):
    "Without decay, the whole-period intensity is the sum of the windowed intensities."
    wp = windowed_profiles(ev, ITEMS, freq="5D")
    p = interest_profile(ev, ITEMS, half_life=None, normalize=False)
    np.testing.assert_allclose(p.to_numpy(), wp.intensity().sum(1), atol=1e-9)


@settings(max_examples=30, deadline=None)
@given(logs)
def test_decay_halves_per_half_life(ev):
    "Moving `at` one half-life later halves every intensity when no event happens in between."
    at = ev.timestamp.max()
    p1 = interest_profile(ev, ITEMS, half_life="2D", at=at, normalize=False)
    p2 = interest_profile(ev, ITEMS, half_life="2D", at=at + pd.Timedelta("2D"), normalize=False)
    np.testing.assert_allclose(p2.to_numpy(), p1.to_numpy() / 2, rtol=1e-9, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(logs)
def test_migration_scores_match_reference(ev):
    "The vectorised scores equal the straightforward groupby-apply reference of the benchmark."
    edges = window_edges(ev.timestamp, "4D")
    ours = migration_scores(windowed_profiles(ev, ITEMS, edges=edges))
    ref = reference_migration(ev, ITEMS, edges)
    assert len(ours) == len(ref)
    np.testing.assert_allclose(ours.js.to_numpy(), ref.js.to_numpy(), atol=1e-12)
    assert (ours.switched.to_numpy() == ref.switched.to_numpy()).all()


def test_migration_matrix_rows_are_shares():
    sim = simulate_log(n_users=200, n_items=100, n_events=20_000, seed=5)
    mm = migration_matrix(migration_scores(windowed_profiles(sim.events, sim.items, freq="30D")))
    nz = np.asarray(mm.attrs["row_counts"]) > 0
    np.testing.assert_allclose(mm.sum(1).to_numpy()[nz], 1.0)
    tm = transition_matrix(sim.truth.mixture_before, sim.truth.mixture_before)
    np.testing.assert_allclose(np.diag(tm)[tm.sum(1) > 0], 1.0)   # nobody moves from a profile to itself


def test_clear_errors():
    ev = make_log([(1, 0, 1, 0)])
    with pytest.raises(TypeError, match="timestamp"):
        windowed_profiles(ev.assign(timestamp=ev.timestamp.dt.tz_localize(None)), ITEMS)
    with pytest.raises(KeyError, match="behavior"):
        windowed_profiles(ev.drop(columns="behavior"), ITEMS)
    with pytest.raises(ValueError, match="item_id"):
        windowed_profiles(ev.assign(item_id=99), ITEMS)
    with pytest.raises(ValueError, match="duplicated item_id"):
        windowed_profiles(ev, pd.concat([ITEMS, ITEMS]))
    with pytest.raises(ValueError, match="no weight for behavior"):
        windowed_profiles(ev, ITEMS, behavior_weights={"buy": 1.0})
    assert set(BEHAVIOR_WEIGHTS) == set(BEHAVIORS)


def test_parquet_and_dask_equal_pandas(tmp_path):
    sim = simulate_log(n_users=150, n_items=80, n_events=15_000, seed=2, out_dir=tmp_path, n_partitions=3)
    ev = pd.concat([pd.read_parquet(f) for f in sorted((tmp_path / "events").rglob("*.parquet"))], ignore_index=True)
    edges = window_edges(ev.timestamp, "14D")
    ref = windowed_profiles(ev, sim.items, edges=edges, behavior_weights={b: 1.0 for b in BEHAVIORS})
    pq = windowed_profiles_parquet(tmp_path / "events", sim.items, edges, behavior_weights={b: 1.0 for b in BEHAVIORS})
    np.testing.assert_allclose(pq.matrix.toarray(), ref.matrix.toarray())
    dd = pytest.importorskip("dask.dataframe")
    dk = windowed_profiles_dask(dd.read_parquet(str(tmp_path / "events")), sim.items, edges,
                                behavior_weights={b: 1.0 for b in BEHAVIORS})
    assert list(dk.users) == list(ref.users)
    np.testing.assert_allclose(dk.matrix.toarray(), ref.matrix.toarray())


def test_next_window_features_never_see_the_future():
    "Changing every event at or after a window's start leaves the features of that window's rows unchanged."
    sim = simulate_log(n_users=200, n_items=100, n_events=20_000, seed=4)
    a = next_window_dataset(sim.events, sim.items, sim.users, freq="20D")
    edges = window_edges(sim.events.timestamp, "20D")
    late = sim.events.timestamp >= edges[-2]
    changed = sim.events.assign(item_id=np.where(late, (sim.events.item_id + 7) % 100 + 1, sim.events.item_id))
    b = next_window_dataset(changed, sim.items, sim.users, edges=edges)
    pd.testing.assert_frame_equal(a.part("test")[0], b.part("test")[0])
    assert not a.part("test")[1].equals(b.part("test")[1])   # the targets did change
    assert "segment" not in a.X.columns


def test_new_users_are_cold_and_predicted():
    sim = simulate_log(n_users=300, n_items=100, n_events=30_000, seed=6)
    new = user_cold_start_split(sim.events, test_frac=0.2, seed=0).test.user_id.unique()
    nw = next_window_dataset(sim.events, sim.items, sim.users, freq="20D", new_users=new)
    X, Y, meta = nw.part("test")
    assert meta.cold.any() and set(meta.user_id[meta.cold]) <= set(new)
    assert nw.report["new_user_events_dropped"] > 0
    comp = compare_models(nw, ["last_window", "popularity", "logreg"], n_boot=50)
    assert set(comp.table.part) == {"all", "warm", "cold"}
    for s in comp.scores.values():
        assert np.isfinite(s).all() and s.shape == Y.shape


@pytest.mark.parametrize("name", MODELS)
def test_estimator_contract(name):
    "clone, get_params, fit returns self, (n, n_labels) probabilities."
    sim = simulate_log(n_users=150, n_items=60, n_events=12_000, seed=7)
    nw = next_window_dataset(sim.events, sim.items, sim.users, freq="20D")
    X, Y, _ = nw.part("train", "val")
    params = {"mlp": {"max_epochs": 2, "hidden_sizes": (32, 32)}, "random_forest": {"n_estimators": 10},
              "hist_gb": {"max_iter": 10}}.get(name, {})
    est = make_model(name, X, **params)
    c = clone(est)
    assert c.get_params().keys() == est.get_params().keys()
    assert est.fit(X, Y) is est
    p = predict_scores(est, X)
    assert p.shape == Y.shape and ((p >= 0) & (p <= 1)).all()


def test_torch_mlp_set_params_and_binary_labels():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4)).astype(np.float32)
    y = np.where(X[:, 0] > 0, "buy", "skip")
    m = TorchMLPClassifier(hidden_sizes=(8,), max_epochs=3).set_params(dropout=0.2)
    assert m.get_params()["dropout"] == 0.2
    m.fit(X, y)
    assert set(m.predict(X)) <= {"buy", "skip"} and list(m.classes_) == ["buy", "skip"]
    with pytest.raises(ValueError, match="Only binary classification is supported"):
        TorchMLPClassifier(max_epochs=1).fit(X, np.arange(200) % 3)


def test_frozen_extractor_survives_clone_and_refit():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 5)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    src = TorchMLPClassifier(hidden_sizes=(16,), max_epochs=3).fit(X, y)
    fe = FrozenExtractor(src)
    before = fe.transform(X).copy()
    clone(fe).fit(X, 1 - y)
    np.testing.assert_array_equal(fe.transform(X), before)


def test_purchase_intent_on_taobao_layout(tmp_path):
    "A UserBehavior.csv written in Taobao's own layout goes through the data reader into purchase intent rows."
    rows = []
    for u in range(1, 21):
        for k in range(10):
            t = 1_511_500_000 + u * 1000 + k * 7200
            item = 100 + (u + k) % 7
            rows.append(f"{u},{item},{item % 3},pv,{t}")
            if k % 4 == 0:
                rows.append(f"{u},{item},{item % 3},buy,{t + 600}")
    f = tmp_path / "UserBehavior.csv"
    f.write_text("\n".join(rows) + "\n")
    ds = read_taobao(f)
    d = purchase_intent_dataset(ds.events, ds.items, horizon="1h", test_frac=0.3)
    assert set(d.meta.split) == {"train", "test"}
    assert d.y.sum() > 0 and d.X["user_views"].notna().all()
    assert d.report["dropped_censored_at_log_end"] >= 1


def test_purchase_intent_on_retailrocket_layout(tmp_path):
    ev = ["timestamp,visitorid,event,itemid,transactionid"]
    for v in range(1, 11):
        for k in range(6):
            t = 1_433_221_332_000 + v * 100_000 + k * 3_600_000
            ev.append(f"{t},{v},view,{k % 4},")
            if k % 3 == 0:
                ev.append(f"{t + 60_000},{v},transaction,{k % 4},{v * 10 + k}")
    (tmp_path / "events.csv").write_text("\n".join(ev) + "\n")
    props = ["timestamp,itemid,property,value"] + [f"1433221332000,{i},categoryid,{i % 2}" for i in range(4)]
    (tmp_path / "item_properties_part1.csv").write_text("\n".join(props) + "\n")
    ds = read_retailrocket(tmp_path / "events.csv", properties=tmp_path / "item_properties_part1.csv")
    d = purchase_intent_dataset(ds.events, ds.items, horizon="10min", test_frac=0.3)
    assert len(d.X) > 0 and d.y.isin([0, 1]).all()


def test_bench_profiles_small():
    b = bench_profiles(n_events=50_000, ref_events=10_000, verbose=False)
    assert b["agree_on_slice"] and b["ours_events_per_s"] > 0 and b["ref_events_per_s"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_planted_migrations_recovered(seed):
    "Other seeds than the notebook's: change points within 14 days, precision >= 0.85 and recall >= 0.75."
    sim = simulate_log(n_events=1_000_000, seed=seed)
    wp = windowed_profiles(sim.events, sim.items, freq="14D", behavior_weights={b: 1.0 for b in BEHAVIORS})
    s = score_detections(detect_migrations(wp), sim.truth.migrations, "14D")
    assert s["precision"] >= 0.85 and s["recall"] >= 0.75, s
    first = windowed_profiles(sim.events, sim.items, freq="30D", categories=list(sim.truth.mixture_before.columns))
    est = transition_matrix(first.window(0), first.window(first.n_windows - 1))
    planted = transition_matrix(sim.truth.mixture_before, sim.truth.mixture_after)
    assert np.abs(est - planted).to_numpy().mean() < 0.08


@pytest.mark.slow
def test_bench_profiles_million():
    b = bench_profiles(n_events=1_000_000, ref_events=200_000)
    assert b["agree_on_slice"] and b["speedup"] > 1


@pytest.mark.slow
def test_sklearn_check_estimator():
    "scikit-learn's own estimator checks: all pass for the MLP; the constant baseline cannot fit its training set."
    from sklearn.utils.estimator_checks import check_estimator
    res = check_estimator(TorchMLPClassifier(hidden_sizes=(32,), max_epochs=30, dropout=0.0, learning_rate=1e-2),
                          on_fail=None)
    assert [r["check_name"] for r in res if r["status"] == "failed"] == []
    res = check_estimator(PopularityBaseline(), on_fail=None)
    assert {r["check_name"] for r in res if r["status"] == "failed"} <= {"check_classifiers_train"}
