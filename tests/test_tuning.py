"Checks of interest_migration.tuning outside the notebook: splitter properties, reproducible searches, resumable Optuna studies."
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

optuna = pytest.importorskip("optuna")

from interest_migration.simulate import simulate_log
from interest_migration.nextwindow import TorchMLPClassifier, make_model, next_window_dataset
from interest_migration.tuning import (
    SoftVote, TemporalSplit, TemporalStacking, UserStatistics, best_params, blend_scores, interest_scorer,
    leakage_gain, leakage_report, make_search, normalize_scores, optuna_search, save_best_params, search_results,
    tune_blend_weights)

optuna.logging.set_verbosity(optuna.logging.WARNING)


# ---- splitters -------------------------------------------------------------------------------------------
@st.composite
def split_cases(draw):
    n_times = draw(st.integers(2, 12))
    times = draw(st.lists(st.integers(0, n_times - 1), min_size=2, max_size=80))
    as_dates = draw(st.booleans())
    t = np.array(times)
    if as_dates:   # timestamps (with ties) instead of window indices
        t = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(t * 3.5, unit="D")
    kw = dict(n_splits=draw(st.integers(1, 4)), test_size=draw(st.one_of(st.none(), st.integers(1, 3))),
              gap=draw(st.integers(0, 2)), window=draw(st.sampled_from(["expanding", "sliding"])),
              group_disjoint=draw(st.booleans()))
    kw["train_size"] = draw(st.integers(1, 4)) if kw["window"] == "sliding" else None
    groups = np.array(draw(st.lists(st.integers(0, 5), min_size=len(times), max_size=len(times))))
    return t, kw, groups


@settings(max_examples=300, deadline=None)
@given(split_cases())
def test_no_test_row_before_a_training_row(case):
    "Property: in every fold the latest training time is strictly before the earliest test time; test folds are disjoint and move forward."
    t, kw, groups = case
    cv = TemporalSplit(t, **kw)
    X = np.zeros((len(t), 1))
    tv = pd.Series(t).rank(method="dense").to_numpy() - 1   # distinct-time codes
    try:
        folds = list(cv.split(X, groups=groups))
    except ValueError as e:   # configurations that cannot be laid out must say why
        assert any(w in str(e) for w in ("cannot hold", "no training rows")), str(e)
        return
    assert len(folds) == kw["n_splits"] == cv.get_n_splits()
    seen_test = set()
    last_min = -1
    for tr, te in folds:
        assert len(tr) and len(te)
        assert tv[tr].max() < tv[te].min()
        assert tv[te].min() - tv[tr].max() - 1 >= kw["gap"]
        assert not seen_test & set(te.tolist())
        seen_test |= set(te.tolist())
        assert tv[te].min() > last_min
        last_min = tv[te].min()
        if kw["window"] == "sliding":
            assert tv[tr].max() - tv[tr].min() < kw["train_size"]
        if kw["group_disjoint"]:
            assert not set(groups[tr]) & set(groups[te])


def test_series_times_align_on_index_of_a_subset():
    "A Series of times covering a larger frame is aligned on X's index (what searches on a subset need)."
    times = pd.Series(np.repeat(np.arange(5), 2), index=np.arange(100, 110))
    X = pd.DataFrame({"a": np.arange(10)}, index=np.arange(100, 110)).iloc[::-1]   # reversed order
    for tr, te in TemporalSplit(times, n_splits=2, test_size=1).split(X):
        assert times.loc[X.index[tr]].max() < times.loc[X.index[te]].min()
    with pytest.raises(ValueError, match="no value for 1 rows"):
        list(TemporalSplit(times, 2).split(pd.concat([X, pd.DataFrame({"a": [0]}, index=[999])])))


def test_splitter_errors_name_the_problem():
    t = np.arange(6)
    with pytest.raises(ValueError, match="needs times="):
        list(TemporalSplit().split(t))
    with pytest.raises(ValueError, match="names no column"):
        list(TemporalSplit("when").split(pd.DataFrame({"t": t})))
    with pytest.raises(ValueError, match="missing values"):
        list(TemporalSplit(np.array([1.0, np.nan, 2, 3, 4, 5])).split(t))
    with pytest.raises(ValueError, match="needs groups="):
        list(TemporalSplit(t, 2, group_disjoint=True).split(t))
    with pytest.raises(ValueError, match="window must be"):
        list(TemporalSplit(t, 2, window="rolling").split(t))
    # a column of X works as the time source
    X = pd.DataFrame({"t": t, "f": 0})
    assert [te.tolist() for _, te in TemporalSplit("t", 2, 1).split(X)] == [[4], [5]]


# ---- searches --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def nw():
    sim = simulate_log(n_users=150, n_items=80, n_categories=4, n_events=8_000, seed=3)
    return next_window_dataset(sim.events, sim.items, sim.users, freq="15D")


def _fit(search, X, Y):
    return search_results(search.fit(X, Y)).drop(columns="mean_fit_time")


@pytest.mark.parametrize("method", ["grid", "random", "halving"])
def test_searches_are_reproducible_under_a_seed(nw, method):
    X, Y, _ = nw.part("train")
    times = nw.meta["k"]
    from scipy.stats import loguniform
    params = ({"model__min_samples_leaf": [1, 10], "model__max_features": ["sqrt", 0.5]} if method == "grid"
              else {"model__min_samples_leaf": list(range(1, 30)), "model__max_features": [0.2, 0.4, 0.6, 0.8]})
    make = lambda seed: make_search(make_model("random_forest", X, n_estimators=10, n_jobs=1), params,
                                    TemporalSplit(times, 2), method, n_iter=4, seed=seed,
                                    **({"min_resources": 100} if method == "halving" else {}))
    a, b = _fit(make(0), X, Y), _fit(make(0), X, Y)
    pd.testing.assert_frame_equal(a, b)
    if method != "grid":   # another seed draws other candidates
        c = _fit(make(1), X, Y)
        assert not a[["model__min_samples_leaf", "model__max_features"]].equals(c[["model__min_samples_leaf", "model__max_features"]])


def test_search_best_params_saved_as_json(nw, tmp_path):
    X, Y, _ = nw.part("train")
    s = make_search(make_model("logreg", X), {"model__estimator__C": [0.1, 1.0]}, TemporalSplit(nw.meta["k"], 2)).fit(X, Y)
    out = save_best_params(s, tmp_path / "a" / "best.json")
    import json
    assert json.loads((tmp_path / "a" / "best.json").read_text()) == out
    assert out["params"] == s.best_params_ and out["n_candidates"] == 2


def _rf_space(trial):
    return {"model__min_samples_leaf": trial.suggest_int("min_samples_leaf", 1, 30, log=True),
            "model__max_features": trial.suggest_float("max_features", 0.1, 0.9)}


def test_optuna_is_reproducible_under_a_seed(nw):
    X, Y, _ = nw.part("train")
    est = make_model("random_forest", X, n_estimators=10, n_jobs=1)
    run = lambda seed: optuna_search(est, _rf_space, X, Y, TemporalSplit(nw.meta["k"], 2), n_trials=6, seed=seed,
                                     study_name=f"s{seed}")
    a, b, c = run(0), run(0), run(1)
    cols = ["number", "value", "state", "params_min_samples_leaf", "params_max_features"]
    pd.testing.assert_frame_equal(a.trials_dataframe()[cols], b.trials_dataframe()[cols])
    assert not a.trials_dataframe()[cols].equals(c.trials_dataframe()[cols])
    assert best_params(a)["params"] == a.best_params


def test_resumed_optuna_study_continues_from_stored_trials(nw, tmp_path):
    "An interrupted study in SQLite is resumed: stored trials are kept and only the missing ones run."
    X, Y, _ = nw.part("train")
    est = make_model("random_forest", X, n_estimators=10, n_jobs=1)
    db = f"sqlite:///{tmp_path}/study.db"
    calls = []

    def interrupting_space(trial):
        calls.append(trial.number)
        if len(calls) == 4:
            raise KeyboardInterrupt   # the "crash" during the 4th trial
        return _rf_space(trial)

    cv = TemporalSplit(nw.meta["k"], 2)
    with pytest.raises(KeyboardInterrupt):
        optuna_search(est, interrupting_space, X, Y, cv, n_trials=6, storage=db, study_name="resume", prune=False)
    stored = optuna.load_study(study_name="resume", storage=db)
    done = [t for t in stored.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 3
    before = {t.number: (t.params, t.value) for t in done}
    resumed = optuna_search(est, _rf_space, X, Y, cv, n_trials=6, storage=db, study_name="resume", prune=False)
    complete = [t for t in resumed.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 6
    assert {t.number: (t.params, t.value) for t in complete if t.number in before} == before
    assert min(t.number for t in complete if t.number not in before) > max(before)
    # calling again with the same budget runs nothing
    again = optuna_search(est, _rf_space, X, Y, cv, n_trials=6, storage=db, study_name="resume", prune=False)
    assert len(again.trials) == len(resumed.trials)


def test_mlp_epochs_are_reported_and_pruned(nw):
    "Each MLP epoch reports an intermediate value at step fold * max_epochs + epoch; hopeless trials get pruned."
    import torch
    torch.set_num_threads(1)
    X, Y, _ = nw.part("train")
    pipe = Pipeline([("prep", make_model("logreg", X).steps[0][1]),
                     ("model", TorchMLPClassifier((16,), max_epochs=4, patience=4, batch_size=64))])
    lrs = iter([1e-2, 1e-2, 1e-2, 1e-7, 1e-7, 1e-7])

    def space(trial):
        return {"model__learning_rate": trial.suggest_float("learning_rate", next(lrs), 1e-2)}

    study = optuna_search(pipe, space, X, Y, TemporalSplit(nw.meta["k"], 2), n_trials=6, seed=0, n_startup_trials=3)
    first = study.trials[0]
    assert first.state == optuna.trial.TrialState.COMPLETE
    assert sorted(first.intermediate_values) == list(range(8))   # 2 folds x 4 epochs
    assert any(t.state == optuna.trial.TrialState.PRUNED for t in study.trials[3:])
    assert pipe.get_params()["model__epoch_callback"] is None   # the pruning callback goes on each trial's clone only


# ---- fusion and blending ---------------------------------------------------------------------------------
class Spy(ClassifierMixin, BaseEstimator):
    "Records the time column of the rows it is fitted on and scores; predicts a constant."
    log = []

    def fit(self, X, Y):
        Spy.log.append(("fit", X["t"].to_numpy().copy()))
        self.n_labels_ = np.asarray(Y).shape[1]
        return self

    def predict_proba(self, X):
        Spy.log.append(("score", X["t"].to_numpy().copy()))
        return np.full((len(X), self.n_labels_), 0.3)


def test_stacking_meta_learner_sees_only_temporal_out_of_fold_scores():
    rng = np.random.default_rng(0)
    t = np.repeat(np.arange(6), 20)
    X = pd.DataFrame({"t": t, "f": rng.normal(size=len(t))})
    Y = rng.integers(0, 2, (len(t), 3))
    Spy.log = []
    st_ = TemporalStacking([("spy", Spy())], TemporalSplit("t", n_splits=3)).fit(X, Y)
    fold_events = Spy.log[:6]
    for (kind_a, fit_t), (kind_b, score_t) in zip(fold_events[::2], fold_events[1::2]):
        assert kind_a == "fit" and kind_b == "score" and fit_t.max() < score_t.min()
    assert set(t[st_.meta_rows_]) == {3, 4, 5}
    assert Spy.log[6][0] == "fit" and len(Spy.log[6][1]) == len(t)   # final refit on all rows
    assert st_.predict_proba(X).shape == (len(t), 3)


def test_soft_vote_is_the_weighted_mean():
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(60, 3)), rng.integers(0, 2, (60, 2))
    X = pd.DataFrame(X, columns=list("abc"))
    m1, m2 = make_model("logreg", X), make_model("popularity", X)
    v = SoftVote([("a", m1), ("b", m2)], weights=[3, 1]).fit(X, Y)
    p1, p2 = v.estimators_[0][1].predict_proba(X), v.estimators_[1][1].predict_proba(X)
    np.testing.assert_allclose(v.predict_proba(X), (3 * p1 + p2) / 4)


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 6), st.integers(2, 30), st.integers(0, 10_000))
def test_normalisations(n_users, n_items, seed):
    s = np.random.default_rng(seed).normal(size=(n_users, n_items)) * 100
    mm = normalize_scores(s)
    assert mm.min() >= 0 and mm.max() <= 1
    r = normalize_scores(s, "rank")
    np.testing.assert_array_equal(r, normalize_scores(np.exp(s / 100), "rank"))   # monotone transforms do not matter
    np.testing.assert_allclose(normalize_scores(s, "zscore").mean(1), 0, atol=1e-9)


def test_blend_tuning_finds_the_known_mixture():
    A, B = np.array([[1.0, 0, 0.2], [1, 0.9, 0]]), np.array([[0, 0, 1.0], [0, 1.0, 0]])
    w, table = tune_blend_weights({"a": A, "b": B}, [np.array([0]), np.array([1])], metric="hit", k=1, step=0.25)
    assert w == {"a": 0.75, "b": 0.25} and table["hit@1"].max() == 1.0
    np.testing.assert_allclose(blend_scores({"a": A, "b": B}, w), 0.75 * normalize_scores(A) + 0.25 * normalize_scores(B))
    with pytest.raises(ValueError, match="step must divide 1"):
        tune_blend_weights({"a": A}, [np.array([0]), np.array([1])], step=0.3)
    with pytest.raises(ValueError, match="differ in shape"):
        blend_scores({"a": A, "b": B[:1]}, {"a": 1})


def test_leakage_report_shapes_and_pairing(nw):
    X, Y, _ = nw.part("train", "val")
    Xt, Yt, _ = nw.part("test")
    rep = leakage_report(make_model("logreg", X), X, Y, nw.meta["k"], n_splits=3, X_test=Xt, Y_test=Yt, n_boot=100)
    assert len(rep) == 4 and rep.rows.iloc[1] == rep.rows.iloc[2]
    assert rep.attrs["paired"]["n"] == rep.rows.iloc[2]
    assert ((rep["recall@3"] >= rep.ci_low - 1e-12) & (rep["recall@3"] <= rep.ci_high + 1e-12)).all()


def test_interest_scorer_in_a_search(nw):
    X, Y, _ = nw.part("train")
    s = make_search(make_model("logreg", X), {"model__estimator__C": [1.0]}, TemporalSplit(nw.meta["k"], 2),
                    scoring=interest_scorer("roc_auc")).fit(X, Y)
    assert 0.5 < s.best_score_ <= 1


# ---- leakage through global user statistics --------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1])
def test_global_user_statistics_leak_under_random_kfold_only(seed):
    """Per-user means fitted on the training rows: random K-fold overstates them, temporal CV tracks the future.

    Observed (seeds 0, 1, 2): random - temporal on the same rows +0.071/+0.072/+0.056 (CI low >= 0.03); gain of the
    statistics over plain logreg: random K-fold (all rows) +0.076/+0.065/+0.056, temporal -0.022/-0.045/-0.013,
    future test window -0.050/-0.026/-0.034 (|temporal - future| <= 0.028)."""
    sim = simulate_log(n_users=200, n_items=200, n_events=12_000, seed=seed)
    nw = next_window_dataset(sim.events, sim.items, sim.users, freq="15D")
    X, Y, m = nw.part("train", "val")
    Xt, Yt, mt = nw.part("test")
    Xu, Xut = X.assign(user_id=m.user_id.to_numpy()), Xt.assign(user_id=mt.user_id.to_numpy())
    leaky = Pipeline([("user_stats", UserStatistics()),
                      ("model", make_model("logreg", UserStatistics().fit(Xu).transform(Xu)))])
    kw = dict(n_splits=3, n_boot=300, seed=0)
    ref = leakage_report(make_model("logreg", X), X, Y, nw.meta["k"], X_test=Xt, Y_test=Yt, **kw)
    rep = leakage_report(leaky, Xu, Y, nw.meta["k"], X_test=Xut, Y_test=Yt, **kw)
    est = rep.set_index("protocol")["recall@3"]
    assert est["random K-fold (rows temporal CV tests)"] > est["temporal expanding window"] + 0.03, est
    assert rep.attrs["paired"]["ci_low"] > 0, rep.attrs["paired"]
    g = leakage_gain(rep, ref, n_boot=300).set_index("protocol")
    assert g.gain["random K-fold (all rows)"] > 0.03 and g.ci_low["random K-fold (all rows)"] > 0, g
    assert g.gain["temporal expanding window"] < 0.01, g
    assert abs(g.gain["temporal expanding window"] - g.gain["future test window (truth)"]) < 0.05, g
    assert g.gain["random K-fold (all rows)"] - g.gain["future test window (truth)"] > 0.05, g


def test_user_statistics_fit_only_on_training_rows_and_gain_checks():
    X = pd.DataFrame({"user_id": [1, 1, 2], "last_share__a": [0.0, 1.0, 0.25]})
    us = UserStatistics().fit(X.iloc[:2])
    out = us.transform(X)
    np.testing.assert_array_equal(out["user_mean__last_share__a"].to_numpy(), [0.5, 0.5, np.nan])
    assert "user_id" not in out.columns
    with pytest.raises(ValueError, match="starts with 'x_'"):
        UserStatistics(prefix="x_").fit(X)
    a = pd.DataFrame({"protocol": ["p"], "rows": [2]})
    a.attrs["per_row"] = {"p": [0.5, 1.0]}
    b = pd.DataFrame({"protocol": ["p"], "rows": [3]})
    b.attrs["per_row"] = {"p": [0.0, 0.5, 1.0]}
    with pytest.raises(ValueError, match="2 rows in the model's report, 3 in the reference's"):
        leakage_gain(a, b)
    b.attrs["per_row"] = {"p": [0.0, float("nan")]}
    g = leakage_gain(a, b, n_boot=50)
    assert g.rows.tolist() == [1] and g.gain.tolist() == [0.5]


# ---- the scikit-learn contract of the ensembles ----------------------------------------------------------
from sklearn.model_selection import TimeSeriesSplit
from sklearn.tree import DecisionTreeClassifier
from sklearn.utils.estimator_checks import parametrize_with_checks

_ONE_CLASS_FOLD = ("the check's target is sorted by class, so the first temporal fold trains a logistic base model "
                   "on one class, which LogisticRegression refuses")


def _expected_failures(est) -> dict:
    "Checks that cannot pass, with the reason: only stacking over members that cannot fit a one-class fold."
    members = [type(e).__name__ for _, e in est.estimators]
    if isinstance(est, TemporalStacking) and "LogisticRegression" in members:
        return {"check_estimators_nan_inf": _ONE_CLASS_FOLD, "check_positive_only_tag_during_fit": _ONE_CLASS_FOLD}
    return {}


def _tree(depth):
    return DecisionTreeClassifier(max_depth=depth, random_state=0)


@parametrize_with_checks([SoftVote([("tree", _tree(3)), ("stump", _tree(1))]),
                          TemporalStacking([("tree", _tree(3)), ("stump", _tree(1))], cv=TimeSeriesSplit(2)),
                          TemporalStacking([("logreg", LogisticRegression(max_iter=100))], cv=TimeSeriesSplit(2))],
                         expected_failed_checks=_expected_failures)
def test_ensembles_pass_sklearn_checks(estimator, check):
    check(estimator)
