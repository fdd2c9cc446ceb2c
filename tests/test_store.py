"The event store: same suite on SQLite and PostgreSQL (see tests/pg.py for the server fixture)."
import numpy as np
import pandas as pd
import pytest

from interest_migration.data import DataError, validate_events
from interest_migration.store import open_store, SCHEMA_VERSION


def _log(n=200, seed=0, users=20, items=30):
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp("2024-01-01", tz="UTC")
    return pd.DataFrame({"user_id": rng.integers(1, users + 1, n), "item_id": rng.integers(1, items + 1, n),
                         "timestamp": t0 + pd.to_timedelta(rng.integers(0, 30 * 86400, n), unit="s"),
                         "behavior": rng.choice(["view", "cart", "buy"], n)})


@pytest.fixture(params=["sqlite"])
def store(request, tmp_path):
    s = open_store(f"sqlite:///{tmp_path}/t.db")
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
