"Tests of interest_migration.data beyond the notebook: property tests (hypothesis), larger known-answer checks, bench."
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from interest_migration.bench import bench_simulate, report_simulate
from interest_migration.data import (BEHAVIORS, IdEncoder, ML100K_GENRES, RECBOLE_INSTALL, Split, ValidationReport,
                                     leave_last_out, load_movielens_100k, temporal_split, user_cold_start_split,
                                     validate_events, validate_items, validate_users)
from interest_migration.readers import read_grouplens, read_retailrocket, read_taobao
from interest_migration.simulate import read_simulated, simulate_log, user_partition

T0 = pd.Timestamp("2026-01-01", tz="UTC")


# ---------------------------------------------------------------- hypothesis strategies
@st.composite
def logs(draw, min_size=1, max_size=60, n_users=6, n_items=6, seconds=40):
    "Small interaction logs with many ties in time, repeated users and items."
    rows = draw(st.lists(st.tuples(st.integers(1, n_users), st.integers(1, n_items), st.integers(0, seconds),
                                   st.sampled_from(BEHAVIORS[:4])), min_size=min_size, max_size=max_size))
    u, i, t, b = zip(*rows)
    return pd.DataFrame({"user_id": np.array(u, dtype=np.int64), "item_id": np.array(i, dtype=np.int64),
                         "timestamp": T0 + pd.to_timedelta(np.array(t), unit="s"), "behavior": list(b)})


PROP = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------- validation
@PROP
@given(logs(), st.data())
def test_validate_counts_every_drop(log, data):
    "Rows in minus rows counted as dropped equals rows out; output clean and sorted."
    n = len(log)
    dup = log.iloc[data.draw(st.lists(st.integers(0, n - 1), max_size=5))]
    raw = pd.concat([log, dup], ignore_index=True)
    raw["user_id"] = raw["user_id"].astype("float64")
    holes = data.draw(st.lists(st.integers(0, len(raw) - 1), max_size=3, unique=True))
    raw.loc[holes, "user_id"] = np.nan
    if raw["user_id"].isna().all():
        with pytest.raises(ValueError, match="no rows left"):
            validate_events(raw)
        return
    clean, rep = validate_events(raw)
    assert rep.n_in == len(raw)
    assert rep.n_in - sum(rep.dropped.values()) == rep.n_out == len(clean)
    assert rep.dropped.get("missing_id", 0) == len(holes)
    assert rep.dropped.get("duplicates", 0) == raw.dropna().duplicated().sum()
    assert not clean.duplicated().any() and clean.user_id.dtype == np.int64
    key = list(zip(clean.timestamp, clean.user_id))
    assert key == sorted(key)
    assert list(clean.behavior.cat.categories) == list(BEHAVIORS)


@pytest.mark.parametrize("change, message", [
    (lambda d: d.drop(columns="timestamp"), "missing column(s) ['timestamp']"),
    (lambda d: d.iloc[:0], "empty"),
    (lambda d: d.assign(timestamp=d.timestamp.dt.tz_localize(None)), "naive"),
    (lambda d: d.assign(timestamp=d.timestamp.astype(str)), "column 'timestamp' has dtype"),
    (lambda d: d.assign(behavior=["view", "purchase"]), "unknown label(s) {'purchase': 1}"),
    (lambda d: d.assign(behavior=[1, 2]), "column 'behavior' has dtype int64"),
    (lambda d: d.assign(user_id=[True, False]), "column 'user_id' holds booleans"),
    (lambda d: d.assign(user_id=[1, "a"]), "column 'user_id' mixes types"),
    (lambda d: d.assign(item_id=[1.0, 2.5]), "column 'item_id' has non-integer"),
    (lambda d: d.assign(value=["x", 1.0]), "column 'value' has non-numeric"),
])
def test_validate_errors(change, message):
    log = pd.DataFrame({"user_id": [1, 2], "item_id": [3, 4], "timestamp": [T0, T0], "behavior": ["view", "buy"]})
    with pytest.raises(ValueError) as e:
        validate_events(change(log))
    assert message in str(e.value)


def test_validate_error_shows_rows():
    log = pd.DataFrame({"user_id": [1, 2, 3], "item_id": [3, 4, 5], "timestamp": [T0] * 3,
                        "behavior": ["view", "click", "buy"]})
    with pytest.raises(ValueError) as e:
        validate_events(log)
    assert "1 offending row(s)" in str(e.value) and "click" in str(e.value).split("first 1:")[1]


def test_validate_fixes_and_keeps_input():
    log = pd.DataFrame({"user_id": ["a", "b"], "item_id": [3, 4], "value": [1, 2], "extra": ["x", "y"],
                        "timestamp": pd.to_datetime(["2026-01-01 08:00", "2026-01-01 07:00"]).tz_localize("Europe/Paris"),
                        "behavior": pd.Categorical(["buy", "view"])})
    before = log.copy()
    clean, rep = validate_events(log)
    pd.testing.assert_frame_equal(log, before)
    assert rep.fixed == {"timestamp_converted_to_utc": 2, "value_cast_to_float64": 2, "rows_reordered": 2}
    assert clean.user_id.tolist() == ["b", "a"] and clean.extra.tolist() == ["y", "x"]
    assert str(clean.timestamp.dtype) == "datetime64[ns, UTC]" and clean.value.dtype == np.float64


def test_validate_side_tables():
    u, rep = validate_users(pd.DataFrame({"user_id": [2, 1, 1], "age": [30.0, 20.0, 20.0]}))
    assert u.user_id.tolist() == [1, 2] and u.age.dtype == np.int64 and rep.dropped == {"duplicates": 1}
    with pytest.raises(ValueError, match="column 'age' has non-integer"):
        validate_users(pd.DataFrame({"user_id": [1], "age": [20.5]}))
    it, rep = validate_items(pd.DataFrame({"item_id": [1, 2], "category": ["a", None], "genres": [["x"], ["y"]]}))
    assert rep.notes == {"missing_category": 1}
    with pytest.raises(ValueError, match="item_id value\\(s\\) appear on several rows"):
        validate_items(pd.DataFrame({"item_id": [1, 1], "category": ["a", "b"]}))
    with pytest.raises(ValueError, match="expected a pandas DataFrame"):
        validate_items([1, 2])


def test_report_adds_up():
    with pytest.raises(ValueError, match="does not add up"):
        ValidationReport("events", 3, 3, {"duplicates": 1})
    assert "dropped: duplicates=1" in str(ValidationReport("events", 3, 2, {"duplicates": 1}))
    assert "| events | 3 | 2 |" in ValidationReport("events", 3, 2, {"duplicates": 1})._repr_markdown_()


# ---------------------------------------------------------------- MovieLens
def test_movielens_100k_known_counts():
    ml = load_movielens_100k()
    assert (len(ml.events), ml.events.user_id.nunique(), ml.events.item_id.nunique()) == (100_000, 943, 1_682)
    assert (len(ml.users), len(ml.items)) == (943, 1_682)
    assert {g for gs in ml.items.genres for g in gs} == set(ML100K_GENRES)
    assert ml.events.dtypes.astype(str).to_dict() == {"user_id": "int64", "item_id": "int64",
                                                      "timestamp": "datetime64[ns, UTC]", "behavior": "category",
                                                      "value": "float64"}
    assert ml.events.value.value_counts().sort_index().tolist() == [6110, 11370, 27145, 34174, 21201]
    assert ml.users.columns.tolist() == ["user_id", "age", "gender", "occupation", "zip"]
    assert ml.items.columns.tolist() == ["item_id", "title", "year", "genres", "category"]
    assert ml.events.timestamp.min() == pd.Timestamp(874724710, unit="s", tz="UTC")
    assert "recbole" not in sys.modules


def test_movielens_missing_recbole_says_how_to_install(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(FileNotFoundError) as e:
        load_movielens_100k()
    assert RECBOLE_INSTALL in str(e.value)


def _write_ml100k(folder):
    folder.mkdir()
    (folder / "u.data").write_text("1\t10\t4\t881250949\n2\t10\t5\t881250950\n2\t11\t1\t881250948\n")
    (folder / "u.user").write_text("1|24|M|technician|85711\n2|53|F|other|94043\n")
    flags = lambda *on: "|".join("1" if g in on else "0" for g in ML100K_GENRES)
    (folder / "u.item").write_bytes(
        (f"10|Amélie (2001)|01-Jan-2001||http://x|{flags('Comedy', 'Romance')}\n"
         f"11|unknown||||{flags('unknown')}\n").encode("latin-1"))


def test_read_grouplens_ml100k(tmp_path):
    _write_ml100k(tmp_path / "ml")
    d = read_grouplens(tmp_path / "ml")
    assert d.events.item_id.tolist() == [11, 10, 10]
    it = d.items.set_index("item_id")
    assert it.loc[10, "title"] == "Amélie" and it.loc[10, "year"] == 2001 and it.loc[10, "genres"] == ["Comedy", "Romance"]
    assert pd.isna(it.loc[11, "year"]) and it.loc[11, "category"] == "unknown"
    assert d.reports["items"].notes == {"year_missing": 1}


def test_read_grouplens_ml1m(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m/ratings.dat").write_text("1::1193::5::978300760\n2::1193::4::978298413\n")
    (tmp_path / "m/users.dat").write_text("1::F::1::10::48067\n2::M::56::20::70072\n")
    (tmp_path / "m/movies.dat").write_bytes("1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n".encode("latin-1"))
    d = read_grouplens(tmp_path / "m")
    assert d.users.occupation.tolist() == ["K-12 student", "writer"]
    assert d.items.loc[0, ["title", "year", "category"]].tolist() == ["One Flew Over the Cuckoo's Nest", 1975, "Drama"]
    (tmp_path / "m/users.dat").write_text("1::F::1::99::48067\n")
    with pytest.raises(ValueError, match="column 'occupation'"):
        read_grouplens(tmp_path / "m")


# ---------------------------------------------------------------- e-commerce readers
TAOBAO = ("1,2268318,2520377,pv,1511544070\n1,2333346,2520771,pv,1511561733\n1,2576651,149192,fav,1511572885\n"
          "7,2268318,2520377,cart,1511544071\n7,2268318,2520377,buy,1511544090\n7,2268318,2520377,buy,1511544090\n"
          "9,5,2520771,pv,1511500000\n")


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chunksize=st.integers(1, 8))
def test_read_taobao_independent_of_chunksize(tmp_path, chunksize):
    (tmp_path / "UserBehavior.csv").write_text(TAOBAO)
    d = read_taobao(tmp_path / "UserBehavior.csv", chunksize=chunksize)
    assert len(d.events) == 6 and d.reports["events"].dropped == {"duplicates": 1}
    assert d.events.behavior.astype(str).tolist() == ["view", "view", "cart", "buy", "view", "fav"]
    assert d.events.user_id.tolist() == [9, 1, 7, 7, 1, 1]
    assert d.items.set_index("item_id").category.to_dict() == {5: 2520771, 2268318: 2520377, 2333346: 2520771,
                                                              2576651: 149192}


def test_read_taobao_errors(tmp_path):
    (tmp_path / "a.csv").write_text("1,2,3,pv,x\n")
    with pytest.raises(ValueError, match="does not parse as Taobao"):
        read_taobao(tmp_path / "a.csv")
    (tmp_path / "b.csv").write_text("1,2,3,pv,1511544070\n1,2,3,click,1511544071\n")
    with pytest.raises(ValueError, match=r"unknown label\(s\) \['click'\]"):
        read_taobao(tmp_path / "b.csv", chunksize=1)


def test_read_retailrocket(tmp_path):
    (tmp_path / "events.csv").write_text(
        "timestamp,visitorid,event,itemid,transactionid\n1433221332117,257597,view,355908,\n"
        "1433224214164,992329,view,248676,\n1433221999827,111016,addtocart,10572,\n"
        "1433222276276,111016,transaction,10572,4000\n")
    for cs in (1, 3, 10):
        d = read_retailrocket(tmp_path / "events.csv", chunksize=cs)
        assert d.events.behavior.astype(str).tolist() == ["view", "cart", "buy", "view"]
        assert d.events.transaction_id.isna().tolist() == [True, True, False, True]
        assert d.items is None and d.users is None
    assert len(read_retailrocket(tmp_path / "events.csv", nrows=2).events) == 2


# ---------------------------------------------------------------- simulator
@settings(max_examples=20, deadline=None)
@given(n_users=st.integers(1, 60), n_events=st.integers(1, 3_000), n_categories=st.integers(2, 20),
       chunk_events=st.integers(50, 5_000), share=st.floats(0, 1), seed=st.integers(0, 2**31))
def test_simulate_exact_and_deterministic(n_users, n_events, n_categories, chunk_events, share, seed):
    kw = dict(n_users=n_users, n_items=max(n_categories, 30), n_categories=n_categories, n_events=n_events, days=10,
              migrating_share=share, seed=seed, chunk_events=chunk_events)
    a, b = simulate_log(**kw), simulate_log(**kw)
    pd.testing.assert_frame_equal(a.events, b.events)
    assert len(a.events) == n_events and a.reports["events"].dropped == {}
    assert len(a.truth.migrations) == round(share * n_users)
    assert a.events.timestamp.min() >= T0 and a.events.timestamp.max() < T0 + pd.Timedelta(days=10)
    assert set(a.events.item_id) <= set(a.items.item_id) and set(a.events.user_id) <= set(a.users.user_id)
    m = a.truth.migrations.set_index("user_id")
    assert (a.truth.mixture_after.loc[m.index].idxmax(1) == m.to_category).all()


def test_simulate_user_partition_is_stable():
    def splitmix(x):
        m = 2**64 - 1
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & m
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & m
        return x ^ (x >> 31)
    ids = [1, 2, 3, 10**12]
    assert user_partition(ids, 7).tolist() == [splitmix(i) % 7 for i in ids]


def test_simulate_parquet_roundtrip(tmp_path):
    mem = simulate_log(n_users=300, n_events=30_000, seed=5, chunk_events=7_000)
    disk = simulate_log(n_users=300, n_events=30_000, seed=5, chunk_events=7_000, out_dir=tmp_path / "s", n_partitions=3)
    assert disk.events is None and disk.path == str(tmp_path / "s")
    back = read_simulated(tmp_path / "s")
    pd.testing.assert_frame_equal(back.events, mem.events)
    pd.testing.assert_frame_equal(back.truth.mixture_after, mem.truth.mixture_after)
    parts = [read_simulated(tmp_path / "s", partitions=p).events for p in range(3)]
    assert sum(map(len, parts)) == 30_000
    assert all(set(p.user_id).isdisjoint(q.user_id) for k, p in enumerate(parts) for q in parts[k + 1:])
    with pytest.raises(ValueError, match="outside 0..2"):
        read_simulated(tmp_path / "s", partitions=[3])


def test_simulate_bad_arguments():
    with pytest.raises(ValueError, match="n_items"):
        simulate_log(n_items=3, n_categories=8)
    with pytest.raises(ValueError, match="migrating_share"):
        simulate_log(migrating_share=1.5)


@pytest.mark.slow
def test_simulate_planted_truth_recovered_per_user():
    "Every migrating user's observed view shares sit within 5 binomial standard errors of the planted mixture."
    sim = simulate_log(n_users=200, n_items=2_000, n_events=1_000_000, seed=11)
    v = sim.events[sim.events.behavior == "view"].merge(sim.items[["item_id", "category"]], on="item_id")
    v = v.merge(sim.truth.migrations[["user_id", "time"]], on="user_id")
    v["after"] = v.timestamp >= v.time
    n = v.groupby(["after", "user_id", "category"]).size().unstack(fill_value=0)
    n = n.reindex(columns=sim.truth.mixture_before.columns, fill_value=0)
    shares = n.div(n.sum(1), axis=0)
    for after, planted in ((False, sim.truth.mixture_before), (True, sim.truth.mixture_after)):
        s, views = shares.loc[after], n.sum(1).loc[after]
        p = planted.loc[s.index]
        se = np.sqrt(p * (1 - p)).div(np.sqrt(views), axis=0)
        assert ((s - p).abs() <= 5 * se + 1e-9).all().all()
        heavy = views >= 1_000
        assert heavy.sum() > 20
        assert (s - p)[heavy].abs().to_numpy().mean() < 0.01


# ---------------------------------------------------------------- splits
@PROP
@given(logs(min_size=2), st.floats(0.05, 0.95))
def test_temporal_split_leak_free(log, frac):
    ev, _ = validate_events(log)
    if ev.timestamp.nunique() < 2:
        return
    try:
        s = temporal_split(ev, test_frac=frac)
    except ValueError as e:  # every event at the cut-off second: all would be test
        assert "leaves 0 train" in str(e)
        return
    assert len(s.train) + len(s.test) == len(ev) and not set(s.train.index) & set(s.test.index)
    assert s.train.timestamp.max() < s.test.timestamp.min() == s.report["cutoff"]
    assert len(s.test) >= max(1, round(len(ev) * frac)) or (s.test.timestamp == s.report["cutoff"]).all()


@PROP
@given(logs(min_size=1), st.integers(1, 3))
def test_leave_last_out_leak_free(log, n):
    ev, _ = validate_events(log)
    counts = ev.user_id.value_counts()
    if (counts <= n).all():
        with pytest.raises(ValueError, match="nothing to test"):
            leave_last_out(ev, n)
        return
    s = leave_last_out(ev, n)
    assert len(s.train) + len(s.test) == len(ev) and not set(s.train.index) & set(s.test.index)
    tc = s.test.user_id.value_counts()
    assert tc.to_dict() == {u: n for u in counts[counts > n].index}
    both = s.train.groupby("user_id").timestamp.max().to_frame("train").join(
        s.test.groupby("user_id").timestamp.min().rename("test"), how="inner")
    assert (both.train <= both.test).all()
    assert s.report["users_only_in_train"] == int((counts <= n).sum())


@PROP
@given(logs(min_size=1, n_users=12), st.floats(0.05, 0.95), st.integers(0, 10))
def test_user_cold_start_split_disjoint(log, frac, seed):
    ev, _ = validate_events(log)
    if ev.user_id.nunique() < 2:
        with pytest.raises(ValueError, match="at least 2 users"):
            user_cold_start_split(ev, frac, seed)
        return
    s = user_cold_start_split(ev, frac, seed)
    assert set(s.train.user_id).isdisjoint(s.test.user_id)
    assert len(s.train) + len(s.test) == len(ev)
    assert s.report["test_users"] == s.test.user_id.nunique() >= 1 and len(s.train) > 0
    again = user_cold_start_split(ev, frac, seed)
    assert set(again.test.user_id) == set(s.test.user_id)


def test_split_unpacks_and_reports():
    ev, _ = validate_events(pd.DataFrame({"user_id": [1, 2, 3], "item_id": [1, 2, 3],
                                          "timestamp": T0 + pd.to_timedelta([0, 1, 2], unit="D"), "behavior": "view"}))
    train, test = temporal_split(ev, test_start="2026-01-02")
    assert (len(train), len(test)) == (1, 2)
    assert isinstance(temporal_split(ev), Split) and "cutoff" in str(temporal_split(ev))
    with pytest.raises(ValueError, match="run validate_events first"):
        temporal_split(ev.assign(timestamp=ev.timestamp.dt.tz_localize(None)))


# ---------------------------------------------------------------- ids
@PROP
@given(st.lists(st.integers(-10**12, 10**12), min_size=1, max_size=50))
def test_id_encoder_roundtrip(values):
    enc = IdEncoder().fit(values)
    codes = enc.transform(values)
    assert codes.dtype == np.int64 and enc.n_ == len(set(values))
    assert sorted(set(codes.tolist())) == list(range(enc.n_))
    assert enc.inverse_transform(codes).tolist() == values
    assert (np.diff(enc.transform(sorted(set(values)))) == 1).all()


def test_id_encoder_errors():
    enc = IdEncoder().fit(["a", "b"])
    with pytest.raises(ValueError, match="never seen in fit, e.g. \\['c'\\]"):
        enc.transform(["a", "c"])
    with pytest.raises(ValueError, match="missing id"):
        IdEncoder().fit([1.0, np.nan])


# ---------------------------------------------------------------- bench
def test_bench_simulate_small():
    res = bench_simulate(n_events=50_000, naive_events=2_000)
    assert res["n_events"] == 50_000 and res["naive_events"] == 2_000
    assert {"seconds", "events_per_s", "naive_events_per_s", "speedup", "peak_rss_gib"} <= set(res)
    assert "per-event Python loop" in report_simulate(res)


def test_retarget_imports_tool():
    "tools/retarget_imports.py: names move to their defining module, aliases and unknown names kept, idempotent."
    import importlib.util
    spec = importlib.util.spec_from_file_location("retarget_imports", Path(__file__).resolve().parents[1] / "tools" / "retarget_imports.py")
    rt = importlib.util.module_from_spec(spec); spec.loader.exec_module(rt)
    defs = {"read_taobao": ["readers"], "simulate_log": ["simulate"], "DataError": ["data"], "IdEncoder": ["data"], "dup": ["a", "b"]}
    src = ("import x\n"
           "from interest_migration.data import (DataError, read_taobao as rt,\n"
           "                                     mystery, simulate_log)  # note\n"
           "def f():\n"
           "    from .data import read_taobao\n"
           "    from interest_migration.data import IdEncoder, dup\n"
           "    return 1\n")
    new, changes, _ = rt.retarget_source(src, defs)
    assert new == ("import x\n"
                   "from interest_migration.data import DataError, mystery\n"
                   "from interest_migration.readers import read_taobao as rt\n"
                   "from interest_migration.simulate import simulate_log  # note\n"
                   "def f():\n"
                   "    from .readers import read_taobao\n"
                   "    from interest_migration.data import IdEncoder, dup\n"
                   "    return 1\n"), new
    assert len(changes) == 3
    again, changes2, _ = rt.retarget_source(new, defs)
    assert again == new and changes2 == []
    # a notebook's own module: the name it now defines is dropped from the import
    new3, ch3, _ = rt.retarget_source("from interest_migration.data import DataError, simulate_log\n", defs, own="simulate")
    assert new3 == "from interest_migration.data import DataError\n" and "dropped" in ch3[0]
    # the real package: every name the tool maps is defined where it says
    real = rt.definitions()
    assert real["read_contract"] == ["readers"] and real["simulate_log"] == ["simulate"] and real["DataError"] == ["data"]


def test_simulate_log_unchanged_by_searches():
    "The default simulator output stays byte-identical (CSV SHA-256 of simulate_log(seed=3)) after add_searches was added."
    import hashlib
    from interest_migration.simulate import add_searches
    s = simulate_log(seed=3)
    got = {n: hashlib.sha256(getattr(s, n).to_csv(index=False).encode()).hexdigest()[:16] for n in ("events", "users", "items")}
    assert got == {"events": "e30f65fc02a52b1f", "users": "2e79f689a70e6fa5", "items": "dafdc6c49be535cc"}
    w = add_searches(s, rate=0.05, seed=1)
    assert hashlib.sha256(s.events.to_csv(index=False).encode()).hexdigest()[:16] == got["events"]   # input untouched
    assert (w.events.behavior == "search").sum() == round(0.05 * len(s.events))


def test_public_column_checks_raise_data_error():
    "The column checks that validate_events is built from raise the library's DataError, naming table, column and row."
    from interest_migration.data import DataError, check_behavior_column, check_numeric_column, check_timestamp_column
    df = pd.DataFrame({"timestamp": pd.to_datetime(["2026-01-01"]), "behavior": ["look"], "value": ["x"]})
    with pytest.raises(DataError, match="events: column 'timestamp' holds naive datetimes"):
        check_timestamp_column(df["timestamp"], "events", df)
    with pytest.raises(DataError, match=r"events: column 'behavior' has unknown label\(s\) \{'look': 1\}"):
        check_behavior_column(df["behavior"].astype("category"), BEHAVIORS, "events", df)
    with pytest.raises(DataError, match="events: column 'value' has non-numeric values"):
        check_numeric_column(df["value"], "events", "value", df)
