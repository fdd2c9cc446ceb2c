"Scale path (issue 19): the Taobao writer, read_taobao's pyarrow fast path, out-of-core profiles and the dask.distributed path."
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from interest_migration.data import BEHAVIORS
from interest_migration.profiles import (detect_migrations, interest_profile, merge_profiles, migration_matrix,
                                         migration_scores, window_edges, windowed_profiles)
from interest_migration.readers import read_taobao
from interest_migration.scale import (add_counts, detect_migrations_sparse, migration_counts, migration_scores_sparse,
                                      partition_profiles, taobao_pipeline)
from interest_migration.taobao_log import TAOBAO_START, taobao_shape, write_taobao_log

UNIT = {b: 1.0 for b in BEHAVIORS}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("tb")
    log = write_taobao_log(out, 40_000, seed=7, n_partitions=3, progress=False)
    ds = read_taobao(log.csv)
    return out, log, ds


def test_shape_and_planted_truth(small):
    out, log, ds = small
    assert taobao_shape(100_150_807) == {"events": 100_150_807, "users": 987_994, "items": 4_162_024, "categories": 9_439, "days": 9}
    assert log.shape == taobao_shape(40_000)
    raw = pd.read_csv(log.csv, header=None, names=["u", "i", "c", "b", "t"])
    assert len(raw) == 40_000 and set(raw.b) <= {"pv", "cart", "fav", "buy"}
    assert raw.t.between(TAOBAO_START, TAOBAO_START + 9 * 86_400 - 1).all()
    assert (raw.b == "pv").mean() > 0.85                         # Taobao's mix: mostly page views
    assert raw.u.nunique() <= log.shape["users"] and raw.c.nunique() <= log.shape["categories"]
    # the planted migrants' events after their migration time favour the planted target category
    m = log.migrations.assign(moved_at=log.migrations.time.astype("int64") // 10**9)
    j = raw.merge(m, left_on="u", right_on="user_id")
    after = j[j.t >= j.moved_at]
    assert (after.c == after.to_category).mean() > 0.6
    before = j[j.t < j.moved_at]
    assert (before.c == before.to_category).mean() < 0.2


def test_parquet_partitions_hold_every_event_of_their_users(small):
    out, log, ds = small
    parts = [pd.read_parquet(f) for f in sorted(log.parquet.glob("partition=*/*.parquet"))]
    assert sum(map(len, parts)) == 40_000
    users = [set(p.user_id) for p in parts]
    assert all(not (a & b) for k, a in enumerate(users) for b in users[k + 1:])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(st.integers(1, 4), st.integers(1, 3), st.integers(1, 2),
                               st.sampled_from(["pv", "buy", "cart", "fav", "click", "", "NA", "pv "]),
                               st.sampled_from(["1511544070", "1511544071", "x", "", "1511544070000", " 1511544072"])),
                     min_size=1, max_size=12),
       chunksize=st.integers(1, 5))
def test_pyarrow_fast_path_equals_pandas(rows, chunksize, tmp_path):
    p = tmp_path / "UserBehavior.csv"
    p.write_text("".join(f"{u},{i},{c},{b},{t}\n" for u, i, c, b, t in rows))
    def run(engine):
        try:
            ds = read_taobao(p, chunksize=chunksize, engine=engine)
            return ds.events, ds.items, ds.reports["events"].dropped, ds.reports["events"].n_out
        except ValueError as e:
            return str(e)
    a, b = run("auto"), run("pandas")
    if isinstance(a, str) or isinstance(b, str):
        assert a == b
    else:
        pd.testing.assert_frame_equal(a[0], b[0]); pd.testing.assert_frame_equal(a[1], b[1]); assert a[2:] == b[2:]


def test_out_of_core_profiles_equal_in_memory(small):
    out, log, ds = small
    ev, items = ds.events, ds.items
    edges = window_edges(ev.timestamp, "1D")
    ref = windowed_profiles(ev, items, edges=edges, half_life="1D")
    withcat = ev.merge(items, on="item_id")
    merged = merge_profiles([partition_profiles(withcat[withcat.user_id % 4 == k], edges, ref.categories, half_life="1D")
                             for k in range(4)])
    assert list(merged.users) == list(ref.users)
    np.testing.assert_allclose(merged.matrix.toarray(), ref.matrix.toarray(), rtol=0, atol=1e-9)
    # row chunks, users split across them: cells are summed
    chunks = np.array_split(np.arange(len(withcat)), 5)
    rowwise = merge_profiles([partition_profiles(withcat.iloc[c], edges, ref.categories, half_life="1D") for c in chunks])
    np.testing.assert_allclose(rowwise.matrix.toarray(), ref.matrix.toarray(), rtol=0, atol=1e-9)
    at = ev.timestamp.max()
    one = merge_profiles([partition_profiles(withcat[withcat.user_id % 2 == k], pd.DatetimeIndex([edges[0], at + pd.Timedelta(1, "ns")]),
                                             ref.categories, half_life="3D") for k in range(2)])
    np.testing.assert_allclose(one.window(0).to_numpy(), interest_profile(ev, items, half_life="3D").to_numpy(), rtol=0, atol=1e-9)


def test_sparse_migration_equals_dense(small):
    out, log, ds = small
    ev, items = ds.events, ds.items
    edges = window_edges(ev.timestamp, "1D")
    wp = windowed_profiles(ev, items, edges=edges)
    d, s = migration_scores(wp), migration_scores_sparse(wp)
    pd.testing.assert_frame_equal(d.drop(columns="js"), s.drop(columns="js"))
    np.testing.assert_allclose(d.js, s.js, rtol=0, atol=1e-9)
    for mw in (1.0, 5.0):
        pd.testing.assert_frame_equal(migration_scores(wp, mw).drop(columns="js"), migration_scores_sparse(wp, mw).drop(columns="js"))
    full = migration_matrix(d, normalize=False).stack()
    full = full[full > 0]
    c = add_counts([migration_counts(s[s.user_id % 3 == k]) for k in range(3)])
    assert c.pairs.tolist() == full.astype(int).tolist()
    counts = windowed_profiles(ev, items, edges=edges, behavior_weights=UNIT)
    a, b = detect_migrations(counts), detect_migrations_sparse(counts)
    assert (a.detected == b.detected).all() and (a.window != b.window).sum() <= 2
    same = (a.window == b.window).to_numpy()
    np.testing.assert_allclose(a.js[same].fillna(-1), b.js[same].fillna(-1), rtol=0, atol=1e-9)
    assert (a.from_category[same] == b.from_category[same]).all() and (a.to_category[same] == b.to_category[same]).all()


def test_pipeline_row_accounting_and_in_memory_equality(small, tmp_path):
    out, log, ds = small
    run = taobao_pipeline(log.csv, tmp_path, n_partitions=3, truth=log.migrations, sample_users=0, progress=False)
    rep, ref = run.reports["events"], ds.reports["events"]
    assert (rep.n_in, rep.n_out, rep.dropped) == (ref.n_in, ref.n_out, ref.dropped)
    assert list(run.steps.step)[-1] == "total" and (run.steps.seconds > 0).all() and (run.steps.peak_rss_gib > 0).all()
    wp = windowed_profiles(ds.events, ds.items, edges=run.edges)
    d = migration_scores(wp)
    pd.testing.assert_frame_equal(run.scores.drop(columns="js"), d.drop(columns="js"))
    np.testing.assert_allclose(run.scores.js, d.js, rtol=0, atol=1e-9)
    assert run.detection_score["recall"] > 0.5 and run.detection_score["precision"] > 0.8   # the planted migrations


def test_distributed_equals_single_process(small, tmp_path):
    distributed = pytest.importorskip("distributed")
    out, log, ds = small
    single = taobao_pipeline(log.csv, tmp_path / "a", n_partitions=3, sample_users=0, progress=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        multi = taobao_pipeline(log.csv, tmp_path / "b", n_partitions=3, client=client, sample_users=0, progress=False)
        by_address = taobao_pipeline(log.csv, tmp_path / "c", n_partitions=3, client=cluster.scheduler_address,
                                     sample_users=0, progress=False)
    for other in (multi, by_address):
        assert other.info["mode"].startswith("dask.distributed (2 workers")
        pd.testing.assert_frame_equal(other.scores, single.scores)
        pd.testing.assert_frame_equal(other.detections, single.detections)
        pd.testing.assert_frame_equal(other.matrix, single.matrix)


def _partitions(run):
    "Every validated partition, rows in a canonical order (the DuckDB path orders ties at one second by item, behaviour, category)."
    key = ["timestamp", "user_id", "item_id", "behavior", "category"]
    return {f.parent.name: pd.read_parquet(f).sort_values(key, kind="stable").reset_index(drop=True) for f in run.partitions}


def _messy_log(log, path):
    "The small log plus duplicated rows, implausible times and items with a second category, in file order."
    raw = pd.read_csv(log.csv, header=None, names=["u", "i", "c", "b", "t"])
    rng = np.random.default_rng(3)
    dups = raw.iloc[np.sort(rng.choice(len(raw), 700, replace=False))]
    bad_t = raw.iloc[rng.choice(len(raw), 6, replace=False)].assign(t=[5, 17, 2_000_000_000_000, 99, 4_102_444_800, 1])
    other = raw.iloc[rng.choice(len(raw), 4, replace=False)].assign(c=raw.c.iloc[:4].to_numpy())   # later rows: the first category stays
    messy = pd.concat([raw.iloc[:20_000], dups, bad_t, raw.iloc[20_000:], other], ignore_index=True)
    messy.to_csv(path, header=False, index=False)
    return messy


def test_duckdb_path_equals_chunked(small, tmp_path):
    out, log, ds = small
    csv = tmp_path / "UserBehavior.csv"
    messy = _messy_log(log, csv)
    fast = taobao_pipeline(csv, tmp_path / "fast", n_partitions=3, sample_users=0, progress=False)
    slow = taobao_pipeline(csv, tmp_path / "slow", n_partitions=3, sample_users=0, progress=False, engine="chunked")
    assert fast.steps.step[0] == "read CSV + hash users (pyarrow -> DuckDB)" and slow.steps.step[0] == "read CSV + hash users (chunked)"
    a, b = fast.reports["events"], slow.reports["events"]
    assert (a.n_in, a.n_out, a.dropped, a.fixed) == (b.n_in, b.n_out, b.dropped, b.fixed)
    assert a.fixed["rows_reordered"] > 0   # the file is in user order, the partitions in time order
    assert a.n_in == len(messy) and a.dropped["implausible_timestamp"] == 6 and a.dropped["duplicates"] >= 700
    assert str(fast.reports["items"]) == str(slow.reports["items"]) and "items_with_several_categories_first_kept" in fast.reports["items"].notes
    pf, ps = _partitions(fast), _partitions(slow)
    assert list(pf) == list(ps)
    for k in pf: pd.testing.assert_frame_equal(pf[k], ps[k])
    pd.testing.assert_frame_equal(fast.scores, slow.scores)
    pd.testing.assert_frame_equal(fast.detections, slow.detections)
    pd.testing.assert_frame_equal(fast.matrix, slow.matrix)
    assert list(fast.edges) == list(slow.edges)


def test_duckdb_path_rows_reordered_in_time_ordered_file(small, tmp_path):
    "A file already in (timestamp, user) order moves no row: neither path reports rows_reordered."
    out, log, ds = small
    raw = pd.read_csv(log.csv, header=None, names=["u", "i", "c", "b", "t"])
    csv = tmp_path / "UserBehavior.csv"
    raw.sort_values(["t", "u"], kind="stable").to_csv(csv, header=False, index=False)
    runs = [taobao_pipeline(csv, tmp_path / e, n_partitions=3, sample_users=0, progress=False, engine=e) for e in ("auto", "chunked")]
    assert runs[0].steps.step[0].endswith("(pyarrow -> DuckDB)")
    assert runs[0].reports["events"].fixed == runs[1].reports["events"].fixed == {}


def test_rows_moved_equals_validate_events():
    "_rows_moved (DuckDB path) counts the rows validate_events' stable (timestamp, user) sort moves, ties and file order included."
    from interest_migration.data import validate_events
    from interest_migration.scale import _rows_moved
    rng = np.random.default_rng(0)
    for n in (1, 2, 5, 50, 400):
        ev = pd.DataFrame({"user_id": rng.integers(0, 4, n), "item_id": np.arange(n),   # distinct items: no duplicates
                           "timestamp": pd.to_datetime(rng.integers(0, 6, n), unit="s", utc=True),
                           "behavior": rng.choice(list(BEHAVIORS), n)})
        _, rep = validate_events(ev)
        key = ["timestamp", "user_id", "item_id"]
        s = ev.assign(row=np.arange(n) * 3 + 7).sort_values(key)   # DuckDB's order; file rows need not be consecutive
        got = _rows_moved(s.timestamp.array.asi8, s.user_id.to_numpy(), s.row.to_numpy())
        assert got == rep.fixed.get("rows_reordered", 0)
    # by hand: file rows 0, 1, 2 hold (t=1, u=5), (t=2, u=5), (t=1, u=5); the stable sort gives rows 0, 2, 1: two rows move,
    # whatever order the tied rows 0 and 2 arrive in
    assert _rows_moved(np.array([1, 1, 2]), np.array([5, 5, 5]), np.array([0, 2, 1])) == 2
    assert _rows_moved(np.array([1, 1, 2]), np.array([5, 5, 5]), np.array([2, 0, 1])) == 2
    assert _rows_moved(np.array([1, 1, 2]), np.array([5, 6, 5]), np.array([1, 0, 2])) == 2   # users break the tie: 1, 0, 2


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(st.integers(1, 4), st.integers(1, 3), st.integers(1, 2), st.sampled_from(["pv", "buy", "cart", "fav"]),
                               st.sampled_from(["1511544070", "1511630471", "1511716872", "1511803273", "5"])), min_size=2, max_size=14),
       bad=st.one_of(st.none(), st.tuples(st.integers(0, 13), st.integers(0, 4),
                                          st.sampled_from(["x", "", "NA", "click", "pv ", " 1511544072", "007", "+3", "1.0"]))),
       chunksize=st.integers(1, 6))
def test_duckdb_path_same_result_or_message(rows, bad, chunksize, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hyp")
    p = tmp / "UserBehavior.csv"
    rows = [list(map(str, r)) for r in rows]
    if bad: rows[bad[0] % len(rows)][bad[1]] = bad[2]   # at most one odd cell: a missing, text, padded or unknown value
    p.write_text("".join(",".join(r) + "\n" for r in rows))
    def run(engine):
        try:
            r = taobao_pipeline(p, tmp / engine, n_partitions=2, sample_users=0, progress=False, chunksize=chunksize, engine=engine)
            rep = r.reports["events"]
            event(r.steps.step[0])   # how often each path runs to the end: --hypothesis-show-statistics
            return (rep.n_in, rep.n_out, rep.dropped, rep.fixed), _partitions(r), r.scores
        except ValueError as e:
            event(f"error: {str(e).split(': ')[-1][:40]}")
            return str(e)
    a, b = run("auto"), run("chunked")
    if isinstance(a, str) or isinstance(b, str):
        assert a == b
    else:
        assert a[0] == b[0] and list(a[1]) == list(b[1])
        for k in a[1]: pd.testing.assert_frame_equal(a[1][k], b[1][k])
        pd.testing.assert_frame_equal(a[2], b[2])


def test_duckdb_connection_under_a_jupyter_kernel(tmp_path):
    "Under a Jupyter kernel (JupyterLab, the docs build) DuckDB refuses to touch its progress bar without ipywidgets; ours opens."
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "from pathlib import Path\nfrom interest_migration.scale import _duckdb\n"
        f"con = _duckdb('1GB', 1, Path({str(tmp_path)!r}) / 'tmp')\n"
        "print(con.execute(\"SELECT current_setting('enable_progress_bar'), current_setting('threads')\").fetchone())")]
    NotebookClient(nb, kernel_name="python3", timeout=120).execute()
    assert nb.cells[0].outputs[0]["text"].strip() == "(False, 1)"


def test_logreg_newton_equals_liblinear(small):
    "The scale path's logreg (liblinear's objective by Newton-Cholesky) gives liblinear's fit to solver tolerance."
    from interest_migration.nextwindow import make_model, next_window_dataset, predict_scores
    from interest_migration.scale import _logreg_newton
    out, log, ds = small
    ev, it = ds.events, ds.items
    top = ev[["item_id"]].merge(it, on="item_id")["category"].value_counts().index[:6]
    it = pd.DataFrame({"item_id": it.item_id.to_numpy(), "category": np.where(it.category.isin(top), it.category.astype(str), "other")})
    data = next_window_dataset(ev, it, edges=window_edges(ev.timestamp, "1D"), half_life="2D")
    (Xtr, Ytr, _), (Xte, _, _) = data.part("train"), data.part("test")
    ref = make_model("logreg", Xtr).fit(Xtr, Ytr)
    new = _logreg_newton(Xtr).fit(Xtr, Ytr)
    a, b = predict_scores(ref, Xte), predict_scores(new, Xte)
    assert a.shape == b.shape == (len(Xte), Ytr.shape[1]) and Ytr.shape[1] == 7
    np.testing.assert_allclose(b, a, rtol=0, atol=5e-3)   # liblinear stops at a relative gradient norm of 1e-4
    # the same objective: liblinear's intercept is the last weight of the constant feature (penalised like the others)
    lib = ref.steps[-1][1].estimators_[0]
    nw = new.steps[-1][1].estimators_[0]
    np.testing.assert_allclose(nw.coef_[0, 1:], lib.coef_[0], atol=5e-3)
    np.testing.assert_allclose(nw.coef_[0, 0], lib.intercept_[0], atol=5e-3)
