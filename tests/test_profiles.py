"Checks of interest_migration.profiles that do not belong in the notebook: properties, references, file layouts, slow planted-truth runs."
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from interest_migration.data import BEHAVIORS, DataError
from interest_migration.simulate import simulate_log
from interest_migration.metrics import js_divergence
from interest_migration.profiles import (
    BEHAVIOR_WEIGHTS, WindowedProfiles, detect_migrations, event_weights, interest_profile,
    migration_matrix, migration_scores, score_detections, transition_matrix, window_edges,
    windowed_profiles, windowed_profiles_dask, windowed_profiles_parquet)
from interest_migration.bench import bench_profiles, reference_migration

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
    with pytest.raises(DataError, match="timestamp"):
        windowed_profiles(ev.assign(timestamp=ev.timestamp.dt.tz_localize(None)), ITEMS)
    with pytest.raises(DataError, match="behavior"):
        windowed_profiles(ev.drop(columns="behavior"), ITEMS)
    with pytest.raises(DataError, match="item_id"):
        windowed_profiles(ev.assign(item_id=99), ITEMS)
    with pytest.raises(DataError, match="duplicated item_id"):
        windowed_profiles(ev, pd.concat([ITEMS, ITEMS]))
    with pytest.raises(DataError, match="no weight for behavior"):
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


def test_dwell_weights_views_only_by_hand():
    "use_value='dwell': views x log1p(dwell)/log1p(30); buys (price in value) and carts (NaN value) keep their weight."
    ev = pd.DataFrame({"user_id": [1, 1, 1, 2], "item_id": [1, 1, 1, 2],
                       "timestamp": pd.to_datetime(["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-01"], utc=True),
                       "behavior": pd.Categorical(["view", "cart", "buy", "view"], categories=BEHAVIORS),
                       "value": [np.expm1(2 * np.log1p(30)), np.nan, 80.0, 0.0]})
    np.testing.assert_allclose(event_weights(ev, use_value="dwell"), [2.0, 3.0, 5.0, 0.0])
    with pytest.raises(DataError, match="view rows without a dwell"):
        event_weights(ev.assign(value=[-1.0, np.nan, 80.0, 0.0]), use_value="dwell")
    with pytest.raises(DataError, match="missing values"):   # True multiplies every value: NaN carts are an error there
        event_weights(ev, use_value=True)
    with pytest.raises(ValueError, match="'dwell'"):
        event_weights(ev, use_value="seconds")


def test_dwell_weighted_profiles_keep_the_event_weights():
    "A windowed profile with use_value='dwell' holds exactly the dwell-weighted event weights, and sees only its window."
    sim = simulate_log(n_users=100, n_items=60, n_events=8_000, seed=2)
    wp = windowed_profiles(sim.events, sim.items, freq="30D", use_value="dwell")
    assert np.isclose(wp.intensity().sum(), event_weights(sim.events, use_value="dwell").sum())
    plain = windowed_profiles(sim.events, sim.items, freq="30D")
    assert not np.allclose(wp.intensity(), plain.intensity())
