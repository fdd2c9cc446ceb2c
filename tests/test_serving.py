"The serving module: ONNX parity, the model folder, the HTTP service (FastAPI TestClient), uvicorn load and crash tests."
import json
import shutil

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from interest_migration.simulate import simulate_log  # noqa: E402
from interest_migration.nextwindow import TorchMLPClassifier  # noqa: E402
from interest_migration.profiles import interest_profile  # noqa: E402
from interest_migration.recommender import ModelFileError  # noqa: E402
from interest_migration.sequence import RunOptions, planted_log, sequence_split
from interest_migration.neural import GRU4Rec, SASRec  # noqa: E402
from interest_migration.serving import _items_table, make_app, train_serving_model
from interest_migration.request_path import rank_from_events
from interest_migration.model_export import top_k
from interest_migration.model_export import load_serving_model, mlp_to_onnx, onnx_parity, ort_session, sequence_to_onnx
from interest_migration.serve_bench import crash_test, free_port, load_test, start_server, stop_server
from interest_migration.store import open_store  # noqa: E402
from interest_migration.data import DataError  # noqa: E402
from pg import pg_server, pg_url  # noqa: E402,F401  (fixtures: a real PostgreSQL server, tests/pg.py)

TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def planted():
    return sequence_split(planted_log(n_users=120, n_items=30, length=12))


@pytest.mark.parametrize("cls", [SASRec, GRU4Rec])
def test_onnx_parity_every_length(cls, planted, tmp_path):
    "ONNX Runtime equals PyTorch to 1e-5 on 1,000 sequences of every length up to max_len."
    m = cls(embedding_size=16, max_len=8, max_epochs=1, seed=0).fit(planted, options=RunOptions(progress=False))
    par = onnx_parity(m, sequence_to_onnx(m, tmp_path / "m.onnx"), n=1000)
    assert list(par["length"]) == list(range(1, 9)) and (par["n"] == 1000).all()
    assert par["parity"].all() and par["max_abs_diff"].max() < 1e-5, par


def test_mlp_parity(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1000, 6)).astype(np.float32)
    Y = (X[:, :2] > 0).astype(int)
    clf = TorchMLPClassifier(hidden_sizes=(16,), max_epochs=2).fit(X, Y)
    got = ort_session(mlp_to_onnx(clf, tmp_path / "mlp.onnx")).run(["proba"], {"features": X})[0]
    np.testing.assert_allclose(got, clf.predict_proba(X), rtol=1e-5, atol=1e-5)


def test_top_k_known_answer():
    s = np.array([0.5, 0.9, 0.9, 0.1, 0.7])
    assert top_k(s, 3).tolist() == [2, 3, 5]                  # codes are 1-based; the tie goes to the lower code
    assert top_k(s, 3, exclude=np.array([2])).tolist() == [3, 5, 1]
    assert top_k(s, 10, exclude=np.array([1, 2, 3])).tolist() == [5, 4]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    work = tmp_path_factory.mktemp("serve")
    sim = simulate_log(n_users=200, n_items=120, n_categories=5, n_events=6_000, days=60, seed=0)
    folder = train_serving_model(sim.events, sim.items, work / "model", users=sim.users, max_epochs=2, max_len=10,
                                 embedding_size=16, seed=0)
    app = make_app(folder, f"sqlite:///{work / 'events.db'}", token=TOKEN)
    client = TestClient(app)
    hist = sim.events[sim.events.user_id.isin([1, 2, 3, 4])]
    batch = [{"user_id": int(r.user_id), "item_id": int(r.item_id), "timestamp": r.timestamp.isoformat(),
              "behavior": str(r.behavior), "event_id": f"h{i}"} for i, r in enumerate(hist.itertuples())]
    r = client.post("/events", json={"events": batch}, headers=AUTH)
    assert r.status_code == 200, r.text
    return {"sim": sim, "folder": folder, "app": app, "client": client, "hist": hist, "batch": batch, "work": work}


def test_model_folder_and_manifest(served, tmp_path):
    folder = served["folder"]
    man = json.loads((folder / "manifest.json").read_text())
    assert man["kind"] == "sequence-serving" and set(man["files"]) >= {"sequence.onnx", "catalog.json", "cold_start.npz"}
    assert "test_ndcg@10" in man["metrics"] and man["data"]["n_events"] == len(served["sim"].events)
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    (bad / "catalog.json").write_text((bad / "catalog.json").read_text().replace("1", "2", 1))
    with pytest.raises(ModelFileError):
        load_serving_model(bad)


def test_events_idempotent_and_durable(served):
    c, batch = served["client"], served["batch"]
    r = c.post("/events", json={"events": batch[:10]}, headers=AUTH).json()
    assert r == {"received": 10, "stored": 0, "duplicates": 10}
    store = open_store(served["app"].state.service.store.url)
    assert store.n_events() == len(batch)                   # visible to another connection: committed
    store.close()


@pytest.mark.parametrize("field, value, where", [("timestamp", "2026-01-01T00:00:00", "events[1].timestamp"),
                                                 ("behavior", "teleport", "events[1].behavior"),
                                                 ("user_id", "", "events[1].user_id"),
                                                 ("item_id", True, "events[1].item_id"),
                                                 ("colour", "red", "events[1].colour")])
def test_422_names_field_and_index(served, field, value, where):
    c, batch = served["client"], served["batch"]
    r = c.post("/events", json={"events": [batch[0], {**batch[1], field: value}]}, headers=AUTH)
    assert r.status_code == 422 and where in r.json()["detail"], r.text


def test_bad_requests_right_4xx_and_still_serving(served):
    c, batch = served["client"], served["batch"]
    r = c.post("/events", content=b'{"events": [', headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 400 and "malformed JSON" in r.json()["detail"]
    assert c.post("/events", json={"events": batch[:1]}).status_code == 401
    assert c.post("/events", json={"events": batch[:1]}, headers={"Authorization": "Bearer nope"}).status_code == 403
    assert c.put("/users/5", json={"age": 30}).status_code == 401
    assert c.post("/admin/reload").status_code == 401
    r = c.post("/events", content=b"x" * (9 * 2**20), headers=AUTH)
    assert r.status_code == 413 and "exceeds" in r.json()["detail"]
    assert c.post("/events", json={"events": []}, headers=AUTH).status_code == 422
    assert c.get("/users/1/recommendations", params={"k": 0}).status_code == 422
    assert c.get("/users/99999/interests").status_code == 404
    assert c.get("/users/99999/recommendations").status_code == 404
    assert c.get("/items/1/tags").status_code == 404 and "no item tags" in c.get("/items/1/tags").json()["detail"]
    assert c.get("/health").json()["status"] == "ok"


def test_recommendations_warm_cold_and_impressions(served):
    c, hist, app = served["client"], served["hist"], served["app"]
    svc = app.state.service
    svc.flush()
    before = len(svc.store.impressions())
    r = c.get("/users/1/recommendations", params={"k": 7}).json()
    assert r["policy"] == "sequence" and len(r["items"]) == 7
    seen = set(hist[hist.user_id == 1].item_id)
    ids = [i["item_id"] for i in r["items"]]
    assert not set(ids) & seen
    assert ids == rank_from_events(svc.model, hist[hist.user_id == 1], k=7)["item_id"].tolist()
    assert c.put("/users/7001", json={"age": 22, "gender": "M"}, headers=AUTH).status_code == 200
    cold = c.get("/users/7001/recommendations", params={"k": 5}).json()
    assert cold["policy"] == "segment" and all(i["propensity"] == 1.0 for i in cold["items"])
    svc.flush()                                  # impressions are written off the request path
    imp = svc.store.impressions()
    assert len(imp) == before + 12 and set(imp["model_version"]) == {svc.model.version}
    assert sorted(imp[imp["request_id"] == r["request_id"]]["position"].tolist()) == list(range(1, 8))


def test_thompson_cold_start_logs_propensities(served):
    app = make_app(served["folder"], served["app"].state.service.store.url, token=TOKEN, policy="thompson", seed=3)
    c = TestClient(app)
    c.put("/users/7002", json={"age": 40, "gender": "F"}, headers=AUTH)
    r = c.get("/users/7002/recommendations", params={"k": 6}).json()
    p = [i["propensity"] for i in r["items"]]
    assert r["policy"] == "thompson" and len(p) == 6 and all(0 < x <= 1 for x in p)
    app.state.service.flush()
    imp = app.state.service.store.impressions()
    np.testing.assert_allclose(imp[imp["request_id"] == r["request_id"]].sort_values("position")["propensity"], p)


def test_thompson_learns_from_the_store_across_workers(served, tmp_path):
    "Two apps (two workers) on one database: Beta counts equal hand counts from the store; the clicked category is chosen more."
    db = f"sqlite:///{tmp_path / 'bandit.db'}"
    a1, a2 = (make_app(served["folder"], db, token=TOKEN, policy="thompson", seed=s, bandit_refresh_s=0) for s in (1, 2))
    c1, c2 = TestClient(a1), TestClient(a2)
    for u in (8001, 8002):
        assert c1.put(f"/users/{u}", json={"age": 30, "gender": "F"}, headers=AUTH).status_code == 200
    cat = served["sim"].items.set_index("item_id")["category"]
    first = [c1.get("/users/8001/recommendations", params={"k": 10}).json() for _ in range(30)]
    assert all(r["policy"] == "thompson" for r in first)
    a1.state.service.flush()
    st = open_store(db)
    imp = st.impressions()
    assert len(imp) == 300 and imp["propensity"].between(0, 1, inclusive="right").all()   # propensities logged
    shares = cat.loc[imp["item_id"]].value_counts(normalize=True)
    A = shares.index[-1]                                     # the category the prior showed least
    clicked = imp.loc[cat.loc[imp["item_id"]].to_numpy() == A, "item_id"].unique()
    now = pd.Timestamp.now(tz="UTC") + pd.Timedelta("1min")
    ev = [{"user_id": 8001, "item_id": int(i), "timestamp": now.isoformat(), "behavior": "view"} for i in clicked]
    assert c1.post("/events", json={"events": ev}, headers=AUTH).json()["stored"] == len(clicked)
    second = [c2.get("/users/8002/recommendations", params={"k": 10}).json() for _ in range(30)]
    from interest_migration.coldstart import ColdStartBandit, segment_of
    a1.state.service.flush(); a2.state.service.flush()
    b1, b2 = a1.state.service.bandit, a2.state.service.bandit
    for b in (b1, b2): b.sync(st)                            # each worker reads what the other wrote
    b3 = ColdStartBandit(b1.sm); b3.sync(st)                 # a fresh worker: one sync from scratch
    # hand counts: every impression is a trial of its item's category; 8001's impressions of a clicked item are successes
    imp = st.impressions()
    cats = list(b1.sm.cold["categories"])
    ic = cat.loc[imp["item_id"]].to_numpy()
    n_hand = pd.Series(ic).value_counts().reindex(cats, fill_value=0).to_numpy(float)
    won = (imp["user_id"] == 8001).to_numpy() & imp["item_id"].isin(clicked).to_numpy()
    s_hand = pd.Series(ic[won]).value_counts().reindex(cats, fill_value=0).to_numpy(float)
    assert len(imp) == 600 and s_hand.sum() > 0
    s = segment_of(b1.sm, {"age": 30, "gender": "F"})
    assert s >= 0
    for b in (b1, b2, b3):
        np.testing.assert_array_equal(b.n_[s], n_hand); np.testing.assert_array_equal(b.s_[s], s_hand)
        assert b.n_.sum() == n_hand.sum()                    # nothing counted in another segment
    pol, ctx = b3.policy(s, k=1)
    alpha, beta = pol.posterior(ctx)
    prior = 2.0 * np.asarray(b1.sm.cold["segment_profiles"][s]) * len(cats) * 0.5
    np.testing.assert_allclose(alpha[0], 1 + np.clip(b3.s_[s] + prior, 0, b3.n_[s] + 2), rtol=1e-12)
    np.testing.assert_allclose(alpha[0] + beta[0], 2 + b3.n_[s] + 2.0, rtol=1e-12)
    share = lambda rs: np.mean([cat.loc[i["item_id"]] == A for r in rs for i in r["items"]])
    assert share(second) > share(first) + 0.3, (share(first), share(second))
    st.close()


def test_request_cpu_measures_served_requests(served):
    from interest_migration.serve_bench import request_cpu
    r = request_cpu(served["folder"], served["app"].state.service.store.url, n=40, users=[1, 2, 3, 4])
    assert r["statuses"] == {200: 40} and r["n"] == 40 and 0 < r["cpu_ms"] < 1e3 and r["wall_ms"] > 0


def test_interests_equal_batch_profile(served):
    c, hist, svc = served["client"], served["hist"], served["app"].state.service
    got = c.get("/users/2/interests").json()
    ref = interest_profile(hist[hist.user_id == 2], _items_table(svc.model), half_life="14D").iloc[0]
    np.testing.assert_allclose(pd.Series(got["profile"]).reindex(ref.index, fill_value=0.0), ref, atol=1e-9, rtol=0)


def test_reload_swaps_and_refuses_corrupt(served, tmp_path):
    c, svc = served["client"], served["app"].state.service
    old = svc.model
    new_folder = tmp_path / "m2"
    shutil.copytree(served["folder"], new_folder)
    man = json.loads((new_folder / "manifest.json").read_text())
    man["metrics"]["note"] = "copy"
    (new_folder / "manifest.json").write_text(json.dumps(man))
    r = c.post("/admin/reload", json={"folder": str(new_folder)}, headers=AUTH).json()
    assert r["previous"] == old.version and r["model_version"] != old.version
    assert rank_from_events(old, served["hist"][served["hist"].user_id == 1], k=3).shape == (3, 3)  # in-flight: old still works
    (new_folder / "sequence.onnx").write_bytes(b"broken")
    r = c.post("/admin/reload", headers=AUTH)
    assert r.status_code == 409 and "still serving" in r.json()["detail"]
    assert c.get("/health").json()["model_version"] == svc.model.version != old.version
    c.post("/admin/reload", json={"folder": str(served["folder"])}, headers=AUTH)


def test_metrics_prometheus(served):
    c = served["client"]
    c.get("/health")
    text = c.get("/metrics").text
    assert 'im_requests_total{method="GET",route="/health",status="200"}' in text
    assert "im_request_seconds_bucket" in text and "im_events_stored" in text and "im_model_info{version=" in text


def _short_load(served, seconds, clients=8):
    work = served["work"]
    db = f"sqlite:///{work / 'load.db'}"
    st = open_store(db); st.add_events(served["sim"].events); n0 = st.n_events(); st.close()
    port = free_port()
    proc = start_server(served["folder"], db, port, workers=2)
    try:
        users, items = served["sim"].users["user_id"].to_numpy(), served["sim"].items["item_id"].to_numpy()
        tab, raw, acked = load_test(f"http://127.0.0.1:{port}", users, items, clients=clients, seconds=seconds, batch=50)
        import httpx
        scrapes = [httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text for _ in range(6)]
    finally:
        stop_server(proc)
    st = open_store(db); stored = st.n_events() - n0; st.close()
    return tab, raw, acked, stored, scrapes


def _metric_sum(text: str, name: str, **labels) -> float:
    "Sum of the samples `name` whose labels include `labels`, in a Prometheus text scrape."
    from prometheus_client.parser import text_string_to_metric_families
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def test_load_short_no_5xx_exactly_once(served):
    "A few seconds of 8 clients against uvicorn --workers 2: no 5xx, every acknowledged event stored exactly once."
    tab, raw, acked, stored, scrapes = _short_load(served, seconds=3)
    assert (raw["status"] >= 500).sum() == 0 and (raw["status"] < 0).sum() == 0, tab
    assert acked > 0 and stored == acked, (acked, stored)
    # /metrics sums both workers (prometheus multiprocess mode): every scrape, whichever worker answers, counts every request
    n_recs = int((raw["route"] == "/users/{user}/recommendations").sum())
    for text in scrapes:
        assert _metric_sum(text, "im_requests_total", route="/users/{user_id}/recommendations") == n_recs, text[:2000]
        assert _metric_sum(text, "im_request_seconds_count", route="/users/{user_id}/recommendations") == n_recs
        assert _metric_sum(text, "im_events_ingested_total") == acked
    assert len({_metric_sum(t, "im_requests_total", route="/metrics") for t in scrapes}) == len(scrapes)   # scrapes counted too


def test_crash_kill9_every_acknowledged_event_once(served):
    sim = served["sim"]
    res = crash_test(served["folder"], f"sqlite:///{served['work'] / 'crash.db'}", sim.users["user_id"].to_numpy(),
                     sim.items["item_id"].to_numpy(), seconds_before_kill=1.5, clients=3, batch=100)
    assert res["events_acknowledged"] > 0, res
    assert res["acknowledged_present_once"] and not res["partial_batch"] and res["exactly_once_after_retries"], res


@pytest.mark.slow
def test_bench_serve_full():
    from interest_migration.serve_bench import bench_serve
    res = bench_serve(quick=False)
    assert res["no_5xx"] and res["exactly_once"] and res["crash"]["acknowledged_present_once"]


def test_retrain_from_store(served, tmp_path):
    "retrain: the store's events (about the served catalogue) train a new folder that loads and reloads."
    from interest_migration.serving import retrain_from_store
    db = f"sqlite:///{tmp_path / 'r.db'}"
    st = open_store(db)
    st.add_events(served["sim"].events)
    st.put_users(served["sim"].users)
    st.close()
    out = retrain_from_store(db, served["folder"], out=tmp_path / "new", max_epochs=1, embedding_size=16)
    sm = load_serving_model(out)
    assert sm.manifest["data"]["n_events"] == len(served["sim"].events)
    assert sm.catalog.n_items == load_serving_model(served["folder"]).catalog.n_items
    r = served["client"].post("/admin/reload", json={"folder": str(out)}, headers=AUTH).json()
    assert r["model_version"] == sm.version
    served["client"].post("/admin/reload", json={"folder": str(served["folder"])}, headers=AUTH)


def test_event_cache_follows_the_store_across_processes(served, tmp_path):
    "A worker's cached events see what another worker (another connection) stored since: rankings never go stale."
    sim, folder = served["sim"], served["folder"]
    db = f"sqlite:///{tmp_path / 'cache.db'}"
    a, b = make_app(folder, db, token=TOKEN), make_app(folder, db, token=TOKEN)   # two 'workers' on one store
    ca, cb = TestClient(a), TestClient(b)
    u = sim.events[sim.events.user_id == 5].reset_index(drop=True)
    first, rest = u.iloc[:5], u.iloc[5:]
    def body(df, tag):
        return {"events": [{"user_id": int(r.user_id), "item_id": int(r.item_id), "timestamp": r.timestamp.isoformat(),
                            "behavior": str(r.behavior), "event_id": f"{tag}{i}"} for i, r in enumerate(df.itertuples())]}
    assert cb.post("/events", json=body(first, "a"), headers=AUTH).status_code == 200
    r1 = ca.get("/users/5/recommendations", params={"k": 5}).json()
    sm = a.state.service.model
    assert [i["item_id"] for i in r1["items"]] == rank_from_events(sm, first, k=5)["item_id"].tolist()
    assert cb.post("/events", json=body(rest, "b"), headers=AUTH).status_code == 200   # through the OTHER worker
    r2 = ca.get("/users/5/recommendations", params={"k": 5}).json()
    assert [i["item_id"] for i in r2["items"]] == rank_from_events(sm, u, k=5)["item_id"].tolist()
    assert not {i["item_id"] for i in r2["items"]} & set(u.item_id)
    assert a.state.service.cache.hits >= 1


def test_impressions_written_off_path_and_on_shutdown(served, tmp_path):
    "Impressions reach the store within the flush interval, and a clean shutdown writes every queued one."
    db = f"sqlite:///{tmp_path / 'imp.db'}"
    st = open_store(db); st.add_events(served["hist"]); st.close()
    import time
    app = make_app(served["folder"], db, impression_flush_s=0.02)
    r = TestClient(app).get("/users/1/recommendations", params={"k": 4}).json()
    st = open_store(db)
    t0 = time.time()
    while len(st.impressions()) < 4 and time.time() - t0 < 10:
        time.sleep(0.05)
    assert sorted(st.impressions().query("request_id == @r['request_id']")["position"]) == [1, 2, 3, 4]
    with TestClient(make_app(served["folder"], db, impression_flush_s=3600)) as c:    # lifespan: shutdown flushes
        ids = [c.get(f"/users/{u}/recommendations", params={"k": 3}).json()["request_id"] for u in (1, 2, 3)]
        assert not st.impressions()["request_id"].isin(ids).any()                     # still queued
    got = st.impressions()
    assert got["request_id"].isin(ids).sum() == 9
    st.close()


def test_impression_writer_keeps_rows_when_a_write_fails(tmp_path):
    "A failed write (connection lost) puts its rows back and the next flush writes them once; a wrong id kind is dropped and counted."
    import sqlite3
    from interest_migration.data import DataError
    from interest_migration.request_path import ImpressionWriter
    db = f"sqlite:///{tmp_path / 'w.db'}"
    open_store(db).close()
    w = ImpressionWriter(db, flush_s=3600)
    rows = lambda rid, n: [(rid, "1", 10**18 + p, "v1", str(p), p, 1.0, "sequence") for p in range(1, n + 1)]
    kinds = {"user_id": "int", "item_id": "int"}
    w.put(rows("a", 3), kinds); w.put(rows("b", 2), kinds)
    w.store = open_store(db, migrate=False)
    real, calls = w.store._write_impressions, []
    def flaky(data):
        calls.append(len(data["ts"]))
        if len(calls) == 1: raise sqlite3.OperationalError("disk I/O error")
        return real(data)
    w.store._write_impressions = flaky
    with pytest.raises(sqlite3.OperationalError):
        w.flush()
    assert (w.n_pending, w.written, w.dropped) == (5, 0, 0)          # nothing lost, nothing counted as written
    assert w.flush() == 5 and (w.n_pending, w.written) == (0, 5)
    w.put(rows("a", 3), kinds)                                       # a retry of rows already logged: not stored twice
    assert w.flush() == 3
    st = open_store(db)
    got = st.impressions()
    assert len(got) == 5 and sorted(got.request_id + got.position.astype(str)) == ["a1", "a2", "a3", "b1", "b2"]
    w.put(rows("c", 2), {"user_id": "str", "item_id": "int"})        # the store keeps integer user ids
    with pytest.raises(DataError, match="user_id"):
        w.flush()
    assert (w.n_pending, w.dropped) == (0, 2) and len(st.impressions()) == 5
    st.close(); w.close()


def test_service_survives_terminated_pg_backends(served, pg_url):
    "pg_terminate_backend on every connection of the service: the next requests succeed; no acknowledged event is lost."
    import psycopg
    app = make_app(served["folder"], pg_url, token=TOKEN)
    c, batch = TestClient(app), served["batch"]
    acked = c.post("/events", json={"events": batch[:40]}, headers=AUTH).json()["stored"]
    assert c.get("/users/1/recommendations").status_code == 200
    app.state.service.flush()
    def terminate_all(at_least=1):
        with psycopg.connect(pg_url, autocommit=True) as admin:
            n = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                              "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchone()[0]
        assert n >= at_least                     # connections not used since the last kill are already gone
    terminate_all(at_least=4)                    # the write, read, recommendations and impression connections
    r = c.get("/users/1/recommendations")
    assert r.status_code == 200 and len(r.json()["items"]) == 10
    assert c.get("/users/1/interests").status_code == 200
    terminate_all()
    r = c.post("/events", json={"events": batch[40:]}, headers=AUTH)
    assert r.status_code == 200, r.text
    acked += r.json()["stored"]
    terminate_all()
    assert app.state.service.flush() >= 0                  # the impression writer reconnects too
    st = open_store(pg_url)
    assert acked == len(batch) and st.n_events() == len(batch) and len(st.impressions()) == 20
    st.close(); app.state.service.close()


def test_app_from_env_min_events(served, monkeypatch):
    from interest_migration.serving import ENV_DB, ENV_MIN_EVENTS, ENV_MODELS, ENV_POLICY, app_from_env
    from interest_migration.data import DataError
    monkeypatch.setenv(ENV_MODELS, str(served["folder"])); monkeypatch.setenv(ENV_DB, served["app"].state.service.store.url)
    monkeypatch.setenv(ENV_POLICY, "thompson"); monkeypatch.setenv(ENV_MIN_EVENTS, "100000")
    app = app_from_env(tune_worker=False)
    assert app.state.service.min_events == 100000
    r = TestClient(app).get("/users/1/recommendations").json()      # user 1 has history, but below 100,000 events: cold policy
    assert r["policy"] == "thompson" and all(0 < i["propensity"] <= 1 for i in r["items"])
    app.state.service.close()
    monkeypatch.setenv(ENV_MIN_EVENTS, "three")
    with pytest.raises(DataError, match="MIN_EVENTS"):
        app_from_env(tune_worker=False)


def test_events_frame_exact_timestamps_and_ids():
    "events_frame: offsets converted to UTC to the microsecond (also before 1970), ids beyond int64 kept exactly, a mixed-kind batch refused."
    from interest_migration.serving import EventBatch, events_frame
    ev = [{"user_id": 2**70, "item_id": "a", "timestamp": "2026-01-01T10:00:00.123456+05:30", "behavior": "view"},
          {"user_id": 3, "item_id": "b", "timestamp": "1969-12-31T23:59:59.999999Z", "behavior": "buy", "value": 2.5, "event_id": "e"}]
    df = events_frame(EventBatch.model_validate({"events": ev}).events)
    assert df["user_id"].tolist() == [2**70, 3] and df["user_id"].dtype == object
    assert df["timestamp"].tolist() == [pd.Timestamp("2026-01-01T04:30:00.123456Z"), pd.Timestamp("1969-12-31T23:59:59.999999Z")]
    assert str(df["timestamp"].dtype) == "datetime64[ns, UTC]" and df["value"].isna().tolist() == [True, False]
    assert df["event_id"].tolist() == [None, "e"] and df["behavior"].tolist() == ["view", "buy"]
    df = events_frame(EventBatch.model_validate({"events": [dict(e, user_id=i) for i, e in enumerate(ev)]}).events)
    assert df["user_id"].dtype == np.int64
    with pytest.raises(DataError, match=r"events\[1\]\.item_id"):
        events_frame(EventBatch.model_validate({"events": [ev[0], dict(ev[1], item_id=5)]}).events)


def test_cli_serve_min_events_flag(served, monkeypatch, tmp_path):
    "`serve --min-events N` reaches every worker through $INTEREST_MIGRATION_MIN_EVENTS (the flag wins over the variable); a bad value is refused naming the flag."
    import os
    import uvicorn
    from interest_migration.cli import main
    from interest_migration.serving import ENV_MIN_EVENTS, app_from_env
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    seen = {}
    def fake_run(*a, **kw):                       # what a worker would do: build the app from the environment
        seen["env"] = os.environ.get(ENV_MIN_EVENTS)
        app = app_from_env(tune_worker=False); seen["min_events"] = app.state.service.min_events; app.state.service.close()
    monkeypatch.setattr(uvicorn, "run", fake_run)
    for k in ("INTEREST_MIGRATION_MODELS", "INTEREST_MIGRATION_DB", "INTEREST_MIGRATION_POLICY", ENV_MIN_EVENTS):
        monkeypatch.setenv(k, "x"); monkeypatch.delenv(k)           # restored (absent) after the test
    monkeypatch.setenv(ENV_MIN_EVENTS, "7")
    assert main(["serve", "--models", str(served["folder"]), "--db", db, "--min-events", "25"]) == 0
    assert seen == {"env": "25", "min_events": 25}
    monkeypatch.setenv(ENV_MIN_EVENTS, "7")                          # no flag: the variable
    assert main(["serve", "--models", str(served["folder"]), "--db", db]) == 0
    assert seen == {"env": "7", "min_events": 7}
    monkeypatch.delenv(ENV_MIN_EVENTS)                               # neither: the default
    assert main(["serve", "--models", str(served["folder"]), "--db", db]) == 0
    assert seen == {"env": None, "min_events": 3}
    for bad in ("0", "three"):
        with pytest.raises(SystemExit) as e:
            main(["serve", "--models", str(served["folder"]), "--db", db, "--min-events", bad])
        assert e.value.code == 2


def test_tune_worker_sets_switch_interval_and_freezes():
    "_tune_worker (what app_from_env does in a uvicorn worker): 0.5 ms GIL switch interval, startup objects frozen; undone here."
    import gc, sys
    from interest_migration.serving import WORKER_SWITCH_INTERVAL_S, _tune_worker
    old = sys.getswitchinterval()
    try:
        _tune_worker()
        assert sys.getswitchinterval() == pytest.approx(WORKER_SWITCH_INTERVAL_S) and WORKER_SWITCH_INTERVAL_S < old
        assert gc.get_freeze_count() > 0
    finally:
        sys.setswitchinterval(old); gc.unfreeze()


def test_bandit_segment_fixed_when_first_counted(served, tmp_path):
    "A user's segment changes after their impression was counted: the later click is a success of the segment the trial was in (s <= n everywhere); a fresh bandit uses the attributes as they are now."
    from interest_migration.coldstart import ColdStartBandit, segment_of
    sm = load_serving_model(served["folder"])
    st = open_store(f"sqlite:///{tmp_path / 'seg.db'}")
    a, b = {"age": 25, "gender": "F"}, {"age": 60, "gender": "M"}
    sa, sb = segment_of(sm, a), segment_of(sm, b)
    assert sa >= 0 and sb >= 0 and sa != sb
    st.put_user(9001, a)
    item = int(sm.catalog.item_id[0])
    now = pd.Timestamp("2026-01-01", tz="UTC")
    st.log_impressions(pd.DataFrame({"request_id": ["r"], "user_id": [9001], "timestamp": [now], "model_version": ["v"],
                                     "item_id": [item], "position": [1], "propensity": [0.5], "policy": ["thompson"]}))
    bandit = ColdStartBandit(sm)
    assert bandit.sync(st) == 1
    cat = bandit.item_cat[0]
    assert bandit.n_[sa, cat] == 1 and bandit.n_.sum() == 1 and bandit.s_.sum() == 0
    st.put_user(9001, b)                                               # the user's segment changes
    st.add_events(pd.DataFrame({"user_id": [9001], "item_id": [item], "timestamp": [now + pd.Timedelta("1h")], "behavior": ["buy"]}))
    bandit.sync(st)
    assert bandit.s_[sa, cat] == 1 and bandit.s_.sum() == 1 and (bandit.s_ <= bandit.n_).all()
    fresh = ColdStartBandit(sm); fresh.sync(st)                        # a new worker: today's attributes
    assert fresh.n_[sb, cat] == 1 and fresh.s_[sb, cat] == 1 and fresh.n_.sum() == 1
    st.close()


def _toy_log(rows, t0=pd.Timestamp("2026-01-01", tz="UTC")):
    "A hand-built log: (item_id, behavior, hours after t0) rows of one user."
    from interest_migration.data import BEHAVIORS
    item, beh, hours = zip(*rows)
    return pd.DataFrame({"user_id": 7, "item_id": list(item), "timestamp": t0 + pd.to_timedelta(list(hours), "h"),
                         "behavior": pd.Categorical(list(beh), categories=list(BEHAVIORS))})


def test_explain_profile_known_answers():
    from interest_migration.serving import explain_profile
    items = pd.DataFrame({"item_id": [10, 20, 30], "category": ["x", "y", "x"]})
    log = _toy_log([(10, "view", 0), (10, "view", 1), (20, "buy", 2)])        # 2 views of A, 1 buy of B
    ex = explain_profile(log, items, at=log.timestamp.max(), half_life=None)
    assert ex["total"] == 7.0
    assert {c: v["score"] for c, v in ex["categories"].items()} == {"x": 2.0, "y": 5.0}
    assert ex["categories"]["x"]["share"] == 2 / 7 and ex["categories"]["y"]["share"] == 5 / 7
    assert ex["categories"]["x"]["by_behavior"] == {"view": 2.0} and ex["categories"]["y"]["by_behavior"] == {"buy": 5.0}
    assert [(i["item_id"], i["behavior"], i["weight"]) for i in ex["categories"]["x"]["top_items"]] == [(10, "view", 1.0)] * 2
    # custom weights are the profile's: view 0.5, buy 2 -> x 1, y 2
    ex = explain_profile(log, items, at=log.timestamp.max(), half_life=None, behavior_weights={"view": 0.5, "buy": 2.0})
    assert {c: v["score"] for c, v in ex["categories"].items()} == {"x": 1.0, "y": 2.0}
    # decay: the profile's 2^(-(at + 1ns - t)/half_life); one half-life back (to the nanosecond) weighs exactly half
    log = _toy_log([(10, "view", 0), (30, "cart", 24)])
    ex = explain_profile(log, items, at=log.timestamp.max(), half_life="1D")
    d = 2.0 ** (-1 / 86_400e9)                                               # the 1 ns past the last event
    np.testing.assert_allclose(ex["categories"]["x"]["by_behavior"]["view"], 0.5 * d, rtol=1e-12)
    np.testing.assert_allclose(ex["categories"]["x"]["by_behavior"]["cart"], 3.0 * d, rtol=1e-12)
    assert [i["item_id"] for i in ex["categories"]["x"]["top_items"]] == [30, 10]
    # an item in two categories gives half of its weight to each, as the profile does
    multi = pd.DataFrame({"item_id": [10, 20], "category": [["x", "y"], ["y"]]})
    log = _toy_log([(10, "cart", 0), (20, "view", 1)])
    ex = explain_profile(log, multi, at=log.timestamp.max(), half_life=None)
    assert {c: v["score"] for c, v in ex["categories"].items()} == {"x": 1.5, "y": 2.5}
    assert ex["categories"]["y"]["by_behavior"] == {"cart": 1.5, "view": 1.0}


def test_explain_profile_sums_to_interest_profile():
    from interest_migration.serving import explain_profile
    sim = simulate_log(n_users=20, n_items=60, n_categories=5, n_events=1_500, days=40, seed=3)
    u = sim.events[sim.events.user_id == sim.events.user_id.iloc[0]]
    at = u.timestamp.max() + pd.Timedelta("2D")
    ref = interest_profile(u, sim.items, half_life="7D", at=at, normalize=False).iloc[0]
    ex = explain_profile(u, sim.items, at=at, half_life="7D")
    for c, v in ex["categories"].items():
        np.testing.assert_allclose(sum(v["by_behavior"].values()), v["score"], rtol=1e-12)   # additive, per category
        np.testing.assert_allclose(v["score"], ref[c], rtol=1e-12)                          # ... to the profile's score
        np.testing.assert_allclose(v["share"], ref[c] / ref.sum(), rtol=1e-12)
        w = [i["weight"] for i in v["top_items"]]
        assert w == sorted(w, reverse=True) and len(w) == min(5, int((u.item_id.map(
            sim.items.set_index("item_id")["category"]).astype(str) == c).sum()))
    assert set(ex["categories"]) == {c for c, s in ref.items() if s > 0}


def test_interests_explain_route(served):
    c, svc = served["client"], served["app"].state.service
    plain = c.get("/users/2/interests")
    assert plain.status_code == 200 and "explanation" not in plain.json()
    assert c.get("/users/2/interests", params={"explain": "false"}).content == plain.content   # unchanged without explain
    r = c.get("/users/2/interests", params={"explain": "true"})
    assert r.status_code == 200
    got = r.json()
    e = got.pop("explanation")
    assert got == plain.json()
    with svc.profiles_lock:
        raw = svc.profiles.profile(users=[2], normalize=False).iloc[0]      # the route's unnormalised scores
    assert set(e["categories"]) == set(got["profile"])
    for cat, v in e["categories"].items():
        np.testing.assert_allclose(sum(v["by_behavior"].values()), v["score"], rtol=1e-12)
        np.testing.assert_allclose(v["score"], raw[cat], rtol=1e-9)
        np.testing.assert_allclose(v["share"], got["profile"][cat], rtol=0, atol=1e-9)
    assert e["half_life"] == str(pd.Timedelta("14D")) and e["behavior_weights"]["buy"] == 5.0
    bad = c.get("/users/2/interests", params={"explain": "maybe"})
    assert bad.status_code == 422 and "explain" in bad.json()["detail"], bad.text
    assert c.get("/users/2/interests").content == plain.content                               # and it keeps serving


def test_interests_explain_known_answer_over_http(served, tmp_path):
    from interest_migration.serving import _items_table
    app = make_app(served["folder"], f"sqlite:///{tmp_path / 'explain.db'}", token=TOKEN)
    c = TestClient(app)
    items = _items_table(app.state.service.model)
    a = items.iloc[0]
    b = items[items.category != a.category].iloc[0]
    t = "2026-03-01T12:00:00+00:00"
    ev = [{"user_id": 5, "item_id": int(a.item_id), "timestamp": t, "behavior": "view", "event_id": "v1"},
          {"user_id": 5, "item_id": int(a.item_id), "timestamp": t, "behavior": "view", "event_id": "v2"},
          {"user_id": 5, "item_id": int(b.item_id), "timestamp": t, "behavior": "buy", "event_id": "b1"}]
    assert c.post("/events", json={"events": ev}, headers=AUTH).json()["stored"] == 3
    e = c.get("/users/5/interests", params={"explain": "1"}).json()["explanation"]
    d = 2.0 ** (-1 / pd.Timedelta("14D").value)                                  # 1 ns of decay: as-of is the last event + 1 ns
    x, y = e["categories"][str(a.category)], e["categories"][str(b.category)]
    np.testing.assert_allclose([x["score"], y["score"], e["total"]], [2 * d, 5 * d, 7 * d], rtol=1e-12)
    np.testing.assert_allclose([x["share"], y["share"]], [2 / 7, 5 / 7], rtol=1e-12)
    assert list(x["by_behavior"]) == ["view"] and list(y["by_behavior"]) == ["buy"]
    assert [(i["item_id"], i["behavior"]) for i in y["top_items"]] == [(int(b.item_id), "buy")]
    assert len(x["top_items"]) == 2 and x["top_items"][0]["timestamp"] == "2026-03-01T12:00:00+00:00"
    app.state.service.close()


def test_recommendations_fast_path_equals_fastapi_route(served, monkeypatch):
    "The plain GET (no query, or k only) is answered by the middleware's fast path; the same request through FastAPI's route answers the same."
    import interest_migration.serving as S
    c, svc = served["client"], served["app"].state.service
    calls = []
    real = S._recommendations_responses
    monkeypatch.setattr(S, "_recommendations_responses", lambda svc, reqs: calls.append(list(reqs)) or real(svc, reqs))
    fast = c.get("/users/2/recommendations", params={"k": 5}).json()
    assert calls == [[(2, 5)]]
    monkeypatch.setattr(S, "_fast_recommendations", lambda *a: _false())   # everything through FastAPI
    slow = c.get("/users/2/recommendations", params={"k": 5}).json()
    assert calls == [[(2, 5)], [(2, 5)]]
    assert fast["request_id"] != slow["request_id"]
    assert {**fast, "request_id": 0} == {**slow, "request_id": 0} and len(fast["items"]) == 5
    monkeypatch.undo()
    r = c.get("/users/99999/recommendations")                          # 404 from the fast path, as FastAPI's handler answers it
    assert r.status_code == 404 and "unknown user" in r.json()["detail"]
    assert c.get("/users/2/recommendations", params={"k": 0}).status_code == 422   # FastAPI validates what the fast path leaves
    assert c.get("/users/2/recommendations", params={"k": 3, "x": 1}).json()["items"].__len__() == 3
    text = c.get("/metrics").text
    assert 'im_requests_total{method="GET",route="/users/{user_id}/recommendations",status="404"}' in text


async def _false():
    return False


def test_concurrent_recommendations_share_one_batch(served, monkeypatch):
    "Requests that reach a worker in one turn of its event loop are ranked in one ONNX call and answer what each gets alone."
    import asyncio
    import interest_migration.serving as S
    from interest_migration.serve_bench import _asgi_get
    app, svc = served["app"], served["app"].state.service
    sizes = []
    real = S.rank_many
    monkeypatch.setattr(S, "rank_many", lambda sm, codes, *a, **kw: sizes.append(len(codes)) or real(sm, codes, *a, **kw))
    reqs = [(1, b"k=5"), (2, b"k=3"), (99999, b""), (3, b""), (4, b"k=7")]   # 99999: unknown, a 404 inside the batch

    async def together():
        return await asyncio.gather(*(_asgi_get(app, f"/users/{u}/recommendations", q) for u, q in reqs))
    batched = asyncio.run(together())
    assert sizes == [4]                                                     # four warm users, one ONNX call
    alone = [asyncio.run(_asgi_get(app, f"/users/{u}/recommendations", q)) for u, q in reqs]
    assert sizes == [4, 1, 1, 1, 1]
    assert [s for s, _ in batched] == [s for s, _ in alone] == [200, 200, 404, 200, 200]
    for (_, b), (_, a) in zip(batched, alone):
        b, a = json.loads(b), json.loads(a)
        if "items" not in b:
            assert b == a and "unknown user" in b["detail"]
            continue
        assert [i["item_id"] for i in b["items"]] == [i["item_id"] for i in a["items"]]
        np.testing.assert_allclose([i["score"] for i in b["items"]], [i["score"] for i in a["items"]], rtol=1e-6)
        assert b["request_id"] != a["request_id"] and b["model_version"] == a["model_version"]
    assert [len(json.loads(b)["items"]) for s, b in batched if s == 200] == [5, 3, 10, 7]
    svc.flush()
