"The event store: same suite on SQLite and PostgreSQL (see tests/pg.py for the server fixture)."
import numpy as np
import pandas as pd
import pytest

from interest_migration.data import DataError, validate_events
from interest_migration.store import open_store, SCHEMA_VERSION

from pg import pg_server, pg_url  # noqa: F401  (fixtures: a real PostgreSQL server, tests/pg.py)


def _log(n=200, seed=0, users=20, items=30):
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp("2024-01-01", tz="UTC")
    return pd.DataFrame({"user_id": rng.integers(1, users + 1, n), "item_id": rng.integers(1, items + 1, n),
                         "timestamp": t0 + pd.to_timedelta(rng.integers(0, 30 * 86400, n), unit="s"),
                         "behavior": rng.choice(["view", "cart", "buy"], n)})


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    "The same suite on both backends: a fresh SQLite file or a fresh PostgreSQL database."
    return f"sqlite:///{tmp_path}/t.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")


@pytest.fixture
def store(url):
    s = open_store(url)
    yield s
    s.close()


def test_round_trip_equals_validated_log(store):
    log = _log()
    ack = store.add_events(log)
    assert ack == dict(received=200, stored=200, duplicates=0)
    pd.testing.assert_frame_equal(store.events(), validate_events(log)[0])
    assert store.n_events() == 200


def test_idempotent_on_event_id(store):
    log = _log(50).assign(event_id=[f"e{k}" for k in range(50)])
    store.add_events(log.iloc[:30])
    ack = store.add_events(log.iloc[20:])           # 10 repeated, 20 new
    assert ack == dict(received=30, stored=20, duplicates=10)
    again = store.add_events(pd.concat([log.iloc[:1], log.iloc[:1]]))   # duplicate inside one batch too
    assert again == dict(received=2, stored=0, duplicates=2)
    assert store.n_events() == 50
    # no event_id: identical events are all kept (the store does not guess)
    store.add_events(log.drop(columns="event_id").iloc[:2])
    store.add_events(log.drop(columns="event_id").iloc[:2])
    assert store.n_events() == 54


def test_ids_beyond_int64_round_trip_exactly(store):
    big = [2**64 - 1, 2**63, 12345678901234567890123]
    log = pd.DataFrame({"user_id": pd.Series(big, dtype=object), "item_id": [1, 2, 3],
                        "timestamp": pd.to_datetime([1, 2, 3], unit="s", utc=True), "behavior": "view"})
    store.add_events(log)
    back = store.events()
    assert back.user_id.tolist() == ["18446744073709551615", "9223372036854775808", "12345678901234567890123"]
    assert back.item_id.dtype == np.int64 and back.item_id.tolist() == [1, 2, 3]
    assert store.recent_events(2**64 - 1, 5).item_id.tolist() == [1]
    assert len(store.events(users=[2**63])) == 1


def test_string_ids_and_kind_mismatch(store):
    log = _log(10).assign(user_id=lambda d: "u" + d.user_id.astype(str))
    store.add_events(log)
    assert store.events().user_id.dtype == object
    with pytest.raises(DataError, match="holds integers but this store's user_ids are strings"):
        store.add_events(_log(5))
    assert store.n_events() == 10


def test_bad_rows_name_field_row_value_and_store_nothing(store):
    log = _log(5)
    bad = log.copy(); bad.loc[3, "timestamp"] = pd.NaT
    with pytest.raises(DataError, match=r"field 'timestamp' is missing .* row 3 \(value NaT\)"):
        store.add_events(bad)
    bad = log.assign(behavior=["view", "view", "clik", "view", "view"])
    with pytest.raises(DataError, match="clik"):
        store.add_events(bad)
    bad = log.assign(timestamp=log.timestamp.dt.tz_localize(None))
    with pytest.raises(DataError, match="naive"):
        store.add_events(bad)
    with pytest.raises(DataError, match="unknown column"):
        store.add_events(log.assign(colour="red"))
    bad = log.astype({"item_id": float}); bad.loc[2, "item_id"] = 2.5
    with pytest.raises(DataError, match=r"item_id.*row 2.*2\.5"):
        store.add_events(bad)
    assert store.n_events() == 0


def test_filters(store):
    log = _log(300)
    store.add_events(log)
    want = validate_events(log)[0]
    since, until = pd.Timestamp("2024-01-10", tz="UTC"), pd.Timestamp("2024-01-20", tz="UTC")
    got = store.events(users=[1, 2, 3], since=since, until=until)
    w = want[want.user_id.isin([1, 2, 3]) & (want.timestamp >= since) & (want.timestamp < until)].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, w)
    r = store.recent_events(1, n=4)
    w1 = want[want.user_id == 1].tail(4).reset_index(drop=True)
    assert r.timestamp.tolist() == w1.timestamp.tolist()


def test_migrate_idempotent_and_durable_settings(store):
    assert store.migrate() == SCHEMA_VERSION
    assert store.migrate() == SCHEMA_VERSION
    if store.dialect == "sqlite":
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == 2   # FULL


def test_users_round_trip(store):
    assert store.get_user(7) is None
    assert store.users().columns.tolist() == ["user_id"] and len(store.users()) == 0
    store.put_user(7, {"age": 31, "gender": "F", "occupation": "writer"})
    store.put_user(3, {"age": np.int64(54), "gender": "M"})
    store.put_user(7, {"age": 32, "gender": "F"})           # replaces
    assert store.get_user(7) == {"age": 32, "gender": "F"}
    u = store.users()
    assert u.user_id.tolist() == [3, 7] and u.age.tolist() == [54, 32]
    with pytest.raises(DataError, match="attribute 'tags' of user 9 is list"):
        store.put_user(9, {"tags": [1, 2]})
    with pytest.raises(DataError, match="holds strings but this store's user_ids are integers"):
        store.put_user("u9", {"age": 3})


def _impressions(n_req=3, k=4, seed=0):
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp("2024-02-01", tz="UTC")
    rows = [{"request_id": f"r{r}", "user_id": int(rng.integers(1, 5)), "timestamp": t0 + pd.Timedelta(minutes=r),
             "model_version": "m1", "item_id": int(rng.integers(1, 50)), "position": p + 1,
             "propensity": 1 / (p + 2), "policy": "eps-greedy"} for r in range(n_req) for p in range(k)]
    return pd.DataFrame(rows)


def test_impressions_round_trip_and_idempotent(store):
    imp = _impressions()
    assert store.log_impressions(imp) == dict(received=12, stored=12, duplicates=0)
    assert store.log_impressions(imp.iloc[:5]) == dict(received=5, stored=0, duplicates=5)
    back = store.impressions()
    pd.testing.assert_frame_equal(back, imp.astype({"position": np.int64}), check_dtype=True)
    det = imp.assign(request_id="d1", propensity=np.nan, policy=None).drop_duplicates("position")
    store.log_impressions(det)
    assert store.impressions().propensity.isna().sum() == 4
    bad = imp.assign(request_id="x").copy(); bad.loc[2, "propensity"] = 1.5
    with pytest.raises(DataError, match=r"propensity.*row 2 has 1.5"):
        store.log_impressions(bad)
    bad = imp.assign(request_id="y").copy(); bad.loc[1, "model_version"] = None
    with pytest.raises(DataError, match="impressions: field 'model_version' is missing .* row 1"):
        store.log_impressions(bad)
    assert len(store.impressions()) == 16


def test_tail_follows_arrivals_exactly_once(store):
    log = _log(100).assign(event_id=[f"e{k}" for k in range(100)])
    store.add_events(log.iloc[:60])
    a, last = store.tail(0)
    store.add_events(log.iloc[40:])                       # 20 repeated
    b, last2 = store.tail(last)
    c, last3 = store.tail(last2)
    assert len(a) == 60 and len(b) == 40 and len(c) == 0 and last3 == last2
    both = pd.concat([a, b], ignore_index=True)
    pd.testing.assert_frame_equal(both, log.drop(columns="event_id").astype({"behavior": both.behavior.dtype}))


def test_export_parquet_partitions_by_user_atomically(store, tmp_path):
    from interest_migration.simulate import user_partition
    log = _log(500)
    store.add_events(log)
    store.put_user(1, {"age": 20})
    store.log_impressions(_impressions())
    out = store.export_parquet(tmp_path / "exp", n_partitions=4)
    parts = [pd.read_parquet(p) for p in sorted(out.glob("events/partition=*/part-0.parquet"))]
    assert len(parts) == 4
    for k, p in enumerate(sorted(out.glob("events/partition=*"))):
        df = pd.read_parquet(p)
        assert (user_partition(df.user_id.to_numpy(), 4) == int(p.name.split("=")[1])).all()
    allp = pd.concat(parts).sort_values(["timestamp", "user_id"], kind="stable").reset_index(drop=True)
    allp["behavior"] = pd.Categorical(allp.behavior.astype(object), categories=store.events().behavior.cat.categories)
    pd.testing.assert_frame_equal(allp, store.events())
    assert len(pd.read_parquet(out / "impressions.parquet")) == 12
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".exp")]   # no temporary left behind
    store.export_parquet(tmp_path / "exp", n_partitions=2)                    # replaced whole
    assert len(list(out.glob("events/partition=*"))) == 2


def test_upgrade_from_v1_database(url):
    s = open_store(url, migrate=False)
    assert s.migrate(to=1) == 1
    s.add_events(_log(20))
    with pytest.raises(Exception):
        s.put_user(1, {"age": 3})          # no users table in v1
    s.close()
    s = open_store(url)                    # upgrades
    assert s.schema_version() == SCHEMA_VERSION == 2
    assert s.n_events() == 20
    s.put_user(1, {"age": 3})
    assert s.get_user(1) == {"age": 3}
    versions = [r[0] for r in s._all("SELECT version FROM schema_version ORDER BY version")]
    assert versions == [1, 2]
    s.close()


# ---- IncrementalProfiles: incremental equals batch -------------------------------------------------------------------
from hypothesis import given, settings, strategies as st, HealthCheck  # noqa: E402

from interest_migration.profiles import interest_profile, windowed_profiles, migration_scores  # noqa: E402
from interest_migration.incremental import IncrementalProfiles  # noqa: E402


def _profile_log(seed, n=400, users=15, multi=False):
    rng = np.random.default_rng(seed)
    items = pd.DataFrame({"item_id": np.arange(1, 41), "category": rng.choice(list("abcde"), 40)})
    if multi:
        items["category"] = [list(rng.choice(list("abcde"), rng.integers(1, 3), replace=False)) for _ in range(40)]
    t0 = pd.Timestamp("2024-01-03 05:00", tz="UTC")
    ev = pd.DataFrame({"user_id": rng.integers(1, users + 1, n), "item_id": rng.integers(1, 41, n),
                       "timestamp": t0 + pd.to_timedelta(rng.integers(0, 100 * 86400 * 10**3, n), unit="ms"),
                       "behavior": pd.Categorical(rng.choice(["view", "cart", "buy", "fav"], n),
                                                  categories=["view", "cart", "fav", "buy", "search", "rate"])})
    return ev, items


def _arrivals(ev, seed, n_batches, jitter_days):
    "Split into batches in a nearly sorted arrival order (each event up to `jitter_days` late)."
    rng = np.random.default_rng(seed)
    key = ev.timestamp + pd.to_timedelta(rng.uniform(0, jitter_days * 86400, len(ev)), unit="s")
    arr = ev.iloc[np.argsort(key.to_numpy(), kind="stable")].reset_index(drop=True)
    cuts = np.sort(rng.choice(np.arange(1, len(arr)), n_batches - 1, replace=False)) if n_batches > 1 else []
    bounds = [0, *cuts, len(arr)]
    return [arr.iloc[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def _chunks(df, n):
    bounds = np.linspace(0, len(df), n + 1).astype(int)
    return [df.iloc[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def _check_equal(prof, ev, items, whl=None):
    inc = prof.profile()
    bat = interest_profile(ev, items, half_life="14D")
    assert inc.index.tolist() == bat.index.tolist()
    np.testing.assert_allclose(inc.to_numpy(), bat.to_numpy(), atol=1e-9, rtol=0)
    raw_i, raw_b = prof.profile(normalize=False), interest_profile(ev, items, half_life="14D", normalize=False)
    np.testing.assert_allclose(raw_i.to_numpy(), raw_b.to_numpy(), rtol=1e-9, atol=1e-12)
    later = ev.timestamp.max() + pd.Timedelta("3D")
    np.testing.assert_allclose(prof.profile(at=later, normalize=False).to_numpy(),
                               interest_profile(ev, items, half_life="14D", at=later, normalize=False).to_numpy(),
                               rtol=1e-9, atol=1e-12)
    edges = prof.edges()
    ms = migration_scores(windowed_profiles(ev, items, edges=edges, half_life=whl))
    want = ms[ms.window == edges[-2]].reset_index(drop=True)
    got = prof.migration()
    got = got.sort_values("user_id").reset_index(drop=True)
    assert got.user_id.tolist() == want.user_id.tolist() and len(got) > 0
    np.testing.assert_allclose(got.js.to_numpy(), want.js.to_numpy(), atol=1e-9, rtol=0)
    assert (got.switched.to_numpy() == want.switched.to_numpy()).all()
    assert (got.window == want.window).all()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), n_batches=st.integers(1, 25), jitter=st.sampled_from([0, 1, 10, 45]),
       multi=st.booleans(), whl=st.sampled_from([None, "5D"]))
def test_incremental_profiles_equal_batch(seed, n_batches, jitter, multi, whl):
    ev, items = _profile_log(seed, multi=multi)
    prof = IncrementalProfiles(items, half_life="14D", freq="30D", window_half_life=whl)
    for b in _arrivals(ev, seed + 1, n_batches, jitter):
        prof.update(b)
    _check_equal(prof, ev, items, whl)


def test_incremental_profiles_far_apart_rebase_and_refusals():
    ev, items = _profile_log(3)
    far = ev.assign(timestamp=ev.timestamp + pd.Timedelta(days=30 * 365))     # ~780 half-lives later: rebases
    both = pd.concat([ev, far], ignore_index=True)
    prof = IncrementalProfiles(items, half_life="14D")
    for b in _chunks(both, 7):
        prof.update(b)
    assert prof.report["rebases"] >= 1
    _check_equal(prof, both, items)
    with pytest.raises(DataError, match="before the latest event absorbed"):
        prof.profile(at=both.timestamp.max() - pd.Timedelta("1D"))
    with pytest.raises(DataError, match="no row in items"):
        prof.update(ev.head(3).assign(item_id=999))
    assert prof.report["events"] == len(both)                                 # the refused batch changed nothing
    with pytest.raises(DataError, match="fixed length"):
        IncrementalProfiles(items, freq="MS")


def test_incremental_profiles_follow_the_store(store):
    ev, items = _profile_log(5)
    prof = IncrementalProfiles(items)
    for k, b in enumerate(_chunks(ev.assign(event_id=np.arange(len(ev))), 6)):
        store.add_events(b)
        store.add_events(b)                                 # a retry: stored nothing, so the profile sees nothing twice
        prof.sync(store)
    _check_equal(prof, ev, items)
    np.testing.assert_allclose(prof.profile(users=[2, 999]).to_numpy()[1], 0)


# ---- crash safety -----------------------------------------------------------------------------------------------------
CRASH_CHILD = """
import sys, numpy as np, pandas as pd
from interest_migration.store import open_store
store = open_store(sys.argv[1])
rng, n, t0 = np.random.default_rng(0), int(sys.argv[2]), pd.Timestamp('2024-01-01', tz='UTC')
for k in range(100_000):
    b = pd.DataFrame({'user_id': rng.integers(1, 500, n), 'item_id': rng.integers(1, 900, n),
                      'timestamp': t0 + pd.to_timedelta(rng.integers(0, 10**9, n), unit='s'), 'behavior': 'view',
                      'event_id': [f'{k}-{i}' for i in range(n)]})
    ack = store.add_events(b)
    assert ack['stored'] == n
    sys.stdout.write(' '.join(b.event_id) + '\\n'); sys.stdout.flush()     # the acknowledged event ids
"""


@pytest.mark.parametrize("kill_after", [5])
def test_sigkill_mid_ingestion_keeps_acknowledged_batches_whole(url, kill_after):
    import signal
    import subprocess
    import sys
    import time
    batch = 2_000
    open_store(url).close()                     # schema in place before the child starts
    child = subprocess.Popen([sys.executable, "-c", CRASH_CHILD, url, str(batch)], stdout=subprocess.PIPE, text=True)
    acked = []
    for line in child.stdout:
        acked.append(line.split())
        if len(acked) >= kill_after:
            time.sleep(0.005 * kill_after)      # land the kill somewhere inside the next batch
            child.send_signal(signal.SIGKILL)
            break
    acked += [line.split() for line in child.stdout]   # acknowledgements already written before the kill
    assert child.wait() == -signal.SIGKILL
    s = open_store(url)
    stored = pd.Series([r[0] for r in s._all("SELECT event_id FROM events")])
    assert not stored.duplicated().any()
    ids = set(stored)
    for ack in acked:
        assert len(ack) == batch and all(e in ids for e in ack), "an acknowledged batch is missing"
    per_batch = stored.str.split("-").str[0].astype(int).value_counts()
    assert (per_batch == batch).all(), f"partial batch: {per_batch[per_batch != batch].to_dict()}"
    assert len(acked) <= len(per_batch) <= len(acked) + 1
    assert s.n_events() == len(stored)
    s.close()


# ---- off-policy evaluation from the store -----------------------------------------------------------------------------
from interest_migration.logged_ope import ope_from_store, logged_decisions  # noqa: E402


def _hand_store(store):
    T = pd.Timestamp("2024-05-01", tz="UTC")
    store.log_impressions(pd.DataFrame({
        "request_id": ["a", "b", "c", "d", "e"], "user_id": [1, 2, 3, 4, 5], "timestamp": [T] * 5, "model_version": "m0",
        "item_id": [10, 20, 10, 20, 10], "position": 1, "propensity": [0.5, 0.25, 0.5, 0.8, np.nan], "policy": "eps"}))
    store.add_events(pd.DataFrame({
        "user_id": [1, 3, 4, 2, 1, 5], "item_id": [10, 10, 20, 20, 20, 10], "behavior": ["buy", "cart", "buy", "view", "buy", "buy"],
        "timestamp": [T + pd.Timedelta("1h"), T + pd.Timedelta("3h"), T + pd.Timedelta("2D"), T + pd.Timedelta("1h"),
                      T + pd.Timedelta("1h"), T + pd.Timedelta("1h")]}))
    return T


def test_ope_from_store_known_answers(store):
    _hand_store(store)
    d, actions, counts = logged_decisions(store)
    assert counts["no_propensity"] == 1 and len(d) == 4                   # the deterministic impression is left out, counted
    assert actions.tolist() == [10, 20] and d.reward.tolist() == [1, 0, 1, 0]   # user 1's buy of item 20 is not a reward for 10
    uniform = np.full((4, 2), 0.5)
    tab = ope_from_store(store, uniform, n_boot=0)
    # by hand: w = pi/mu = [1, 2, 1, 0.625]; r = [1, 0, 1, 0]
    assert tab.loc["IPS", "estimate"] == pytest.approx((1 + 0 + 1 + 0) / 4)
    assert tab.loc["SNIPS", "estimate"] == pytest.approx(2 / (1 + 2 + 1 + 0.625))
    assert tab.loc["DM", "estimate"] == pytest.approx(0.5 * 1 + 0.5 * 0)   # per-item means: q10 = 1, q20 = 0
    assert tab.loc["DR", "estimate"] == pytest.approx(0.5)                   # residuals all zero
    assert tab.attrs["logged_value"] == pytest.approx(0.5) and tab.attrs["no_propensity"] == 1
    # a reward per behaviour and a longer horizon change the rewards: view = 0.2, and user 4's buy at +2 days counts
    d2, _, _ = logged_decisions(store, reward={"view": 0.2, "buy": 1.0}, horizon="3D")
    assert d2.reward.tolist() == [1, 0.2, 0, 1]                             # user 3's cart is worth 0 under this reward
    q = np.array([[0.9, 0.1]] * 4)
    tab = ope_from_store(store, uniform, q_hat=q, reward={"view": 0.2, "buy": 1.0}, horizon="3D", n_boot=0)
    r, w = np.array([1, 0.2, 0, 1]), np.array([1, 2, 1, 0.625])
    qa = np.array([0.9, 0.1, 0.9, 0.1])
    assert tab.loc["IPS", "estimate"] == pytest.approx((w * r).mean())
    assert tab.loc["DR", "estimate"] == pytest.approx((0.5 + w * (r - qa)).mean())
    with pytest.raises(DataError, match="target_probs must be 4 rows x 2 actions"):
        ope_from_store(store, np.full((3, 2), 0.5))
    with pytest.raises(DataError, match="not in `actions`"):
        ope_from_store(store, uniform, actions=[10])


def test_concurrent_writers_store_each_event_once(url):
    "Four writers on their own connections (as uvicorn workers would be), overlapping event ids: each event stored once."
    from concurrent.futures import ThreadPoolExecutor
    open_store(url).close()
    log = _log(4000, seed=1).assign(event_id=[f"c{k}" for k in range(4000)])

    def writer(w):
        s = open_store(url)
        acks = [s.add_events(log.iloc[a:a + 250]) for a in range(w * 500, min(4000, w * 500 + 2000), 250)]
        s.close()
        return acks

    with ThreadPoolExecutor(4) as ex:
        acks = [a for r in ex.map(writer, range(4)) for a in r]
    s = open_store(url)
    assert s.n_events() == 3500                      # writers cover c0..c3499, with overlaps
    assert sum(a["stored"] for a in acks) == 3500
    assert sum(a["duplicates"] for a in acks) == sum(a["received"] for a in acks) - 3500
    back, _ = s.tail(0)
    assert len(back) == 3500
    s.close()


def test_one_store_shared_by_threads(store):
    from concurrent.futures import ThreadPoolExecutor
    log = _log(2000, seed=2).assign(event_id=[f"t{k}" for k in range(2000)])
    with ThreadPoolExecutor(4) as ex:
        acks = list(ex.map(lambda a: store.add_events(log.iloc[a:a + 400]), [0, 200, 400, 800, 1200, 1600, 1600]))
    assert store.n_events() == 2000 and sum(a["stored"] for a in acks) == 2000
    assert len(store.events(users=[1, 2])) == int(log.user_id.isin([1, 2]).sum())


def test_bench_store_counts_what_it_stored(url):
    from interest_migration.serve_bench import bench_store
    out = bench_store(url, n_events=2_000, batch_sizes=(500, 2_000))
    assert out.n_events.tolist() == [2_000, 2_000] and out.batches.tolist() == [4, 1]
    assert (out.events_per_s > 0).all() and (out.backend == url.split(":")[0]).all()
    s = open_store(url)
    assert s.n_events() == 4_000          # fresh event ids per run: the second run is not swallowed as duplicates
    s.close()


# ---- PostgreSQL: a lost connection ----------------------------------------------------------------------------------
def _terminate(url, store):
    "End the store's backend from another connection, as an administrator would (pg_terminate_backend)."
    import psycopg
    with psycopg.connect(url, autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (store.conn.info.backend_pid,)).fetchone()[0]


def test_pg_reconnects_after_terminated_backend(pg_url):
    "A read and a write after pg_terminate_backend succeed on a new connection; no acknowledged event is lost or doubled."
    s = open_store(pg_url)
    ev = _log(300).assign(event_id=[f"r{i}" for i in range(300)])
    assert s.add_events(ev.iloc[:100])["stored"] == 100
    pid = s.conn.info.backend_pid
    _terminate(pg_url, s)
    assert s.n_events() == 100 and s.conn.info.backend_pid != pid           # the read reconnected
    _terminate(pg_url, s)
    assert s.add_events(ev.iloc[100:])["stored"] == 200                     # the write reconnected before its transaction
    _terminate(pg_url, s)
    assert s.add_events(ev.iloc[50:150]) == {"received": 100, "stored": 0, "duplicates": 100}
    other = open_store(pg_url)
    back = s.events()
    assert len(back) == 300 and back.equals(other.events())
    s.close(); other.close()
