"Churn and reactivation: window matrices, labels, leakage-free split, bootstrap AUC/AP, planted churn recovered, simulator unchanged by default."
import hashlib

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from interest_migration.churn import auc_ci, churn_dataset, churn_split, churn_table, weighted_auc_ap, window_counts
from interest_migration.data import DataError
from interest_migration.simulate import simulate_log


def _toy():
    return pd.DataFrame({"user_id": [1, 1, 1, 2, 2, 3, 3, 3],
                         "timestamp": pd.to_datetime(["2026-01-02", "2026-01-03", "2026-01-09", "2026-01-04", "2026-01-16",
                                                      "2026-01-10", "2026-01-17", "2026-01-25"], utc=True),
                         "behavior": pd.Categorical(["view", "buy", "view", "view", "view", "view", "view", "view"]),
                         "value": [30.0, 12.0, 10.0, 20.0, 40.0, 5.0, 5.0, 5.0]})


def test_window_counts_and_labels_known_answer():
    wc = window_counts(_toy(), "7D", start="2026-01-01", n_windows=4)
    np.testing.assert_array_equal(wc["events"], [[2, 1, 0, 0], [1, 0, 1, 0], [0, 1, 1, 1]])
    np.testing.assert_array_equal(wc["dwell_sum"][0], [30, 10, 0, 0])
    assert window_counts(_toy(), "7D", start="2026-01-01")["events"].shape[1] == 3  # partial last window left out
    ds = churn_dataset(wc).set_index(["user_id", "cut"])
    assert ds.loc[(1, 1), "label"] == 1 and ds.loc[(1, 1), "state"] == "active"  # leaves after window 1
    assert ds.loc[(1, 2), "state"] == "inactive" and ds.loc[(1, 2), "label"] == 0  # does not come back in window 3
    assert ds.loc[(2, 1), "state"] == "inactive" and ds.loc[(2, 1), "label"] == 1  # returns in window 2
    assert (3, 0) not in ds.index  # user 3 is not a candidate before its first event
    assert ds.loc[(1, 2), "recency_days"] == 21 - 8 and ds.loc[(2, 2), "tenure_days"] == 21
    with pytest.raises(DataError, match="before start"): window_counts(_toy(), "7D", start="2026-01-05")
    with pytest.raises(DataError, match="at least 3 windows"): churn_dataset(window_counts(_toy(), "7D", start="2026-01-01", n_windows=2))


def test_split_has_no_future_labels():
    sim = simulate_log(n_users=300, n_events=20_000, churn=True, seed=2)
    ds = churn_dataset(window_counts(sim.events, "14D", start="2026-01-01"))
    for cut in (4, int(ds["cut"].max())):
        tr, te = churn_split(ds, cut)
        assert (te["cut"] == cut).all() and (tr["cut"] + 1 <= cut).all()  # every training label window ends by the test cut
        assert tr["cut_end"].max() <= te["cut_end"].min()


def test_weighted_auc_ap_matches_sklearn():
    rng = np.random.default_rng(1)
    y, s = rng.integers(0, 2, 400), np.round(rng.normal(size=400), 1)
    w = rng.integers(0, 4, (3, 400))
    a, p = weighted_auc_ap(y, s, w)
    for k in range(3):
        assert np.isclose(a[k], roc_auc_score(y, s, sample_weight=w[k])) and np.isclose(p[k], average_precision_score(y, s, sample_weight=w[k]))
    t = auc_ci(y, {"s": s, "-s": -s}, n_boot=200)
    assert np.isclose(t.loc["s", "AUC"] + t.loc["-s", "AUC"], 1.0) and t.loc["s", "AUC_low"] <= t.loc["s", "AUC"] <= t.loc["s", "AUC_high"]
    with pytest.raises(DataError, match="both classes"): auc_ci(np.zeros(5), {"s": np.arange(5)})


def _h(sim):
    m = hashlib.sha256()
    for df in (sim.events, sim.users, sim.items, sim.truth.mixture_before, sim.truth.migrations):
        m.update(pd.util.hash_pandas_object(df, index=True).to_numpy().tobytes())
    return m.hexdigest()


def test_churn_is_opt_in_and_a_subset():
    kw = dict(n_users=300, n_events=30_000, seed=5, chunk_events=7_000)
    base = simulate_log(**kw)
    assert _h(simulate_log(**kw, churn=None)) == _h(base) == _h(simulate_log(**kw, churn=False))
    assert base.truth.churn_states is None and "churn" not in base.truth.params
    c = simulate_log(**kw, churn=True)
    k = lambda e: pd.MultiIndex.from_frame(e[["user_id", "item_id", "timestamp"]])
    assert k(c.events).isin(k(base.events)).all() and len(c.events) < len(base.events)
    with pytest.raises(ValueError, match="only planted in memory"): simulate_log(**kw, churn=True, out_dir="/tmp/never")
    with pytest.raises(ValueError, match="base_hazard"): simulate_log(**kw, churn={"base_hazard": 1.5})


def test_planted_churn_recovered():
    sim = simulate_log(n_users=3_000, n_events=300_000, churn=True, seed=0)
    tab, sc = churn_table(churn_dataset(window_counts(sim.events, "14D", start="2026-01-01")), n_boot=100)
    states, rates = sim.truth.churn_states.to_numpy(), sim.truth.churn_rates
    for task, col in (("churn", "hazard"), ("return", "reactivation")):
        te, s = sc[task]
        planted = states[te["user_id"].to_numpy() - 1, te["cut"].iloc[0] + 1]
        planted = (~planted if task == "churn" else planted).astype(int)
        assert (planted == te["label"]).mean() >= 0.93, task
        prob = rates.loc[te["user_id"], col].to_numpy()
        q = pd.DataFrame({"p": prob, "pred": s["logistic regression"], "q": pd.qcut(prob, 5, labels=False)}).groupby("q").mean()
        assert (q["pred"] - q["p"]).abs().max() <= 0.05, (task, q)  # planted probabilities recovered within 0.05 per quintile
        assert tab.loc[(task, "logistic regression"), "AUC_low"] > 0.55
