"Metrics beyond the notebook: property tests against reference implementations, scikit-learn agreement, bad input, scale."
import math
import tracemalloc
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, HealthCheck, strategies as st
from scipy import sparse, stats
from scipy.spatial.distance import jensenshannon
import sklearn.metrics as skm

import interest_migration.metrics as M
import interest_migration.ranking as R
from interest_migration.metrics import (
    bootstrap_ci, paired_bootstrap, js_divergence,
    top_category_change, classification_metrics, per_sample_classification, classification_report_ci,
    calibration_curve, expected_calibration_error)
from interest_migration.ranking import (
    RANKING_METRICS, topk_items, ranking_metrics, evaluate, catalogue_coverage, gini_exposure, novelty,
    intra_list_diversity, average_popularity, sampled_metrics)
from interest_migration.bench import bench_metrics, reference_ranking_metrics


def _lists(m):
    m = sparse.csr_matrix(m)
    return np.split(m.indices, m.indptr[1:-1])


# ---------------------------------------------------------------- ranking vs the per-user reference
@st.composite
def ranking_case(draw):
    n_users = draw(st.integers(1, 12))
    n_items = draw(st.integers(1, 25))
    seed = draw(st.integers(0, 2**31 - 1))
    levels = draw(st.sampled_from([2, 3, 1000]))           # few levels = many ties
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, levels, (n_users, n_items)).astype(float)
    truth = [rng.choice(n_items, rng.integers(0, n_items + 1), replace=False) for _ in range(n_users)]
    exclude = [rng.choice(n_items, rng.integers(0, n_items + 1), replace=False) for _ in range(n_users)]
    ks = tuple(sorted(set(rng.integers(1, n_items + 1, draw(st.integers(1, 3))).tolist())))
    return scores, truth, exclude, ks, draw(st.integers(1, 5))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ranking_case(), st.booleans())
def test_ranking_matches_reference(case, use_exclude):
    scores, truth, exclude, ks, batch = case
    ex = exclude if use_exclude else None
    ref = reference_ranking_metrics(scores, truth, k=ks, exclude=ex)
    res = ranking_metrics(scores, truth, k=ks, exclude=ex, batch_size=batch)
    n_empty = sum(len(t) == 0 for t in truth)
    assert res.n_empty_truth == n_empty and len(res.users) == len(truth) - n_empty
    for key, v in res.per_user.items():
        np.testing.assert_allclose(v, ref[key], rtol=0, atol=1e-12, err_msg=str(key))
    # the same through top-k lists, a sparse truth, a torch tensor, a callable and an iterator of blocks
    tk = topk_items(scores, max(ks), exclude=ex, batch_size=batch)
    truth_sp = sparse.csr_matrix((np.ones(sum(map(len, truth))), (np.repeat(np.arange(len(truth)), [len(t) for t in truth]),
                                  np.concatenate(truth).astype(int))), shape=scores.shape)
    import torch
    variants = [ranking_metrics(tk, truth_sp, k=ks),
                ranking_metrics(torch.tensor(scores), truth, k=ks, exclude=ex),
                ranking_metrics(lambda rows: scores[rows], truth_sp, k=ks, exclude=ex, batch_size=batch),
                ranking_metrics((scores[i:i + 2] for i in range(0, len(scores), 2)), truth_sp, k=ks, exclude=ex)]
    for other in variants:
        for key, v in res.per_user.items():
            np.testing.assert_allclose(other.per_user[key], v, rtol=0, atol=1e-12, err_msg=str(key))


@settings(max_examples=60, deadline=None)
@given(ranking_case())
def test_topk_matches_stable_sort_with_and_without_torch(case):
    scores, _, exclude, ks, batch = case
    k = max(ks)
    got = topk_items(scores, k, exclude=exclude, batch_size=batch)
    for u in range(len(scores)):
        row = scores[u].copy()
        row[exclude[u]] = -np.inf
        o = np.argsort(-row, kind="stable")[:k]
        np.testing.assert_array_equal(got[u], np.where(row[o] > -np.inf, o, -1))
    orig = R._torch
    try:
        R._torch = lambda: None                               # the numpy fallback must agree exactly
        np.testing.assert_array_equal(topk_items(scores, k, exclude=exclude, batch_size=batch), got)
    finally:
        R._torch = orig


def test_float32_and_constant_scores():
    s = np.zeros((3, 6), np.float32)                          # all tied: catalogue order
    np.testing.assert_array_equal(topk_items(s, 4), np.tile(np.arange(4), (3, 1)))
    s = np.random.default_rng(0).random((50, 30)).astype(np.float32)
    np.testing.assert_array_equal(topk_items(s, 5), np.argsort(-s, axis=1, kind="stable")[:, :5])


@pytest.mark.parametrize("k", [1, 5, 10])
def test_ndcg_matches_sklearn_without_ties(k):
    rng = np.random.default_rng(k)
    s, y = rng.random((80, 60)), rng.random((80, 60)) < 0.1
    y[:, 7] = True
    r = ranking_metrics(s, sparse.csr_matrix(y), k=k)
    assert abs(r.per_user["ndcg", k].mean() - skm.ndcg_score(y, s, k=k)) < 1e-12
    assert np.allclose(r.per_user["ndcg", k], [skm.ndcg_score(y[[i]], s[[i]], k=k) for i in range(80)], atol=1e-12)


def test_topk_list_input_drops_excluded_and_pads():
    res = ranking_metrics(np.array([[5, 1, 2, 3]]), [[2]], k=(1, 3), exclude=[[5, 1]], n_items=6)
    np.testing.assert_array_equal(res.topk, [[2, 3, -1]])
    assert res.per_user["hit", 1][0] == 1 and res.per_user["precision", 3][0] == 1 / 3


def test_truth_in_exclude_is_counted():
    res = ranking_metrics(np.random.default_rng(0).random((2, 5)), [[0, 1], [2]], k=2, exclude=[[1], []])
    assert res.n_truth_excluded == 1


# ---------------------------------------------------------------- bad input
S = np.random.default_rng(0).random((3, 5))
BAD = [
    (lambda: ranking_metrics(S, [[1], [2]], k=2), "truth has 2 users but the scores have 3 rows"),
    (lambda: ranking_metrics(S, sparse.csr_matrix((3, 6)), k=2), "truth has 6 columns but the catalogue has 5"),
    (lambda: ranking_metrics(S, [[1], [5], [0]], k=2), "item index 5 for user row 1, outside the catalogue of 5"),
    (lambda: ranking_metrics(S, [[1], [-2], [0]], k=2), "item index -2 for user row 1"),
    (lambda: ranking_metrics(S, [[1], [2], [0]], k=0), "k must be positive"),
    (lambda: ranking_metrics(S, [[1], [2], [0]], k=(5, 6)), "k=6 is larger than the catalogue (5 items)"),
    (lambda: ranking_metrics(S, [[1], [2], [0]], k=2.5), "k must be positive integers"),
    (lambda: ranking_metrics(np.where(S > 0.9, np.nan, S), [[1], [2], [0]], k=2), "scores contain nan at user row"),
    (lambda: ranking_metrics(-np.where(S > 0.9, np.inf, S), [[1], [2], [0]], k=2), "scores contain -inf"),
    (lambda: ranking_metrics(S, [[1], [2], [0]], k=2, exclude=[[1]]), "exclude has 1 users but the scores have 3"),
    (lambda: ranking_metrics(S[0], [[1]], k=2), "must be 2-D"),
    (lambda: ranking_metrics(np.array([[1, 1, 2]]), [[1]], k=2), "holds item 1 twice"),
    (lambda: ranking_metrics(S, [[1], [2], [0]], metrics="auc"), "unknown metric"),
    (lambda: ranking_metrics(S, [[1], [2], [0]], batch_size=0), "batch_size must be a positive integer"),
    (lambda: ranking_metrics(lambda rows: S[rows][:, :4], sparse.csr_matrix(np.eye(3, 5)), k=1), "expected (3, 5)"),
    (lambda: ranking_metrics(iter([S[:2]]), sparse.csr_matrix(np.eye(3, 5)), k=1), "score blocks gave 2 rows"),
    (lambda: evaluate(S, [[1], [2], [0]], metrics=("novelty",), k=2), "needs item_popularity"),
    (lambda: bootstrap_ci([]), "empty"),
    (lambda: bootstrap_ci([1.0, np.inf]), "drop undefined samples"),
    (lambda: paired_bootstrap([1.0, 2.0], [1.0]), "same users"),
    (lambda: js_divergence([[1, 2]], [[1, 2, 3]]), "same 1-D or 2-D shape"),
    (lambda: js_divergence([[1, np.nan]], [[1, 2]]), "finite and non-negative"),
    (lambda: classification_metrics([0, 1, 2], [0.1, 0.2, 0.3]), "0/1 labels; y_true[2] = 2"),
    (lambda: classification_metrics([0, 1], [0.1, np.nan]), "y_score[1] = nan"),
    (lambda: classification_metrics([0, 1], [0.1, 0.2, 0.3]), "y_true has shape (2,) but y_score has shape (3,)"),
    (lambda: calibration_curve([0, 1], [0.2, 0.3], n_bins=0), "n_bins must be a positive integer"),
    (lambda: intra_list_diversity(np.array([[0, 1]]), pd.Series(["a", None])), "item_category is missing for recommended item 1"),
]


@pytest.mark.parametrize("call,msg", BAD, ids=[m[:40] for _, m in BAD])
def test_bad_input_says_what(call, msg):
    with pytest.raises(ValueError) as e:
        call()
    assert msg in str(e.value), str(e.value)


# ---------------------------------------------------------------- evaluate
def test_evaluate_counts_empty_truth_and_agrees_with_means():
    rng = np.random.default_rng(0)
    s = rng.random((40, 30))
    truth = [rng.choice(30, rng.integers(0, 4), replace=False) for _ in range(40)]
    n_empty = sum(len(t) == 0 for t in truth)
    df = evaluate(s, truth, k=(5, 10), n_boot=200)
    assert list(df.columns[:6]) == ["metric", "k", "value", "ci_low", "ci_high", "n_users"]
    assert (df.n_users == 40 - n_empty).all() and (df.n_empty_truth == n_empty).all()
    ref = reference_ranking_metrics(s, truth, k=(5, 10))
    for _, row in df.iterrows():
        assert abs(row.value - ref[(row.metric, row.k)].mean()) < 1e-12
        assert row.ci_low <= row.value <= row.ci_high
    assert len(df) == len(RANKING_METRICS) * 2


def test_evaluate_beyond_accuracy_matches_functions():
    rng = np.random.default_rng(1)
    s = rng.random((25, 12))
    truth = [[i % 12] for i in range(25)]
    pop, cat = rng.integers(0, 50, 12), np.array(list("aabbccddeeff"))
    df = evaluate(s, truth, metrics=("ndcg", "coverage", "gini", "novelty", "diversity", "popularity"), k=3,
                  item_popularity=pop, item_category=cat, n_boot=100).set_index("metric")
    tk = topk_items(s, 3)
    assert abs(df.loc["coverage", "value"] - catalogue_coverage(tk, 12)) < 1e-15
    assert abs(df.loc["gini", "value"] - gini_exposure(tk, 12)) < 1e-15
    assert abs(df.loc["novelty", "value"] - novelty(tk, pop)) < 1e-12
    assert abs(df.loc["diversity", "value"] - intra_list_diversity(tk, cat)) < 1e-12
    assert abs(df.loc["popularity", "value"] - average_popularity(tk, pop)) < 1e-12
    assert np.isnan(df.loc["coverage", "ci_low"]) and df.loc["novelty", "ci_low"] <= df.loc["novelty", "value"]


def test_evaluate_readonly_broadcast_scores():
    pop = np.arange(10, dtype=float)
    s = np.broadcast_to(pop, (4, 10))
    df = evaluate(s, [[9], [8], [0], []], k=2, exclude=sparse.csr_matrix(np.eye(4, 10)), n_boot=50)
    assert df.query("metric == 'hit'").value.item() == pytest.approx(2 / 3)


# ---------------------------------------------------------------- beyond accuracy vs naive loops
def test_beyond_accuracy_against_loops():
    rng = np.random.default_rng(5)
    tk = rng.integers(-1, 40, (60, 8))
    tk = np.array([list(dict.fromkeys(r)) + [-1] * (8 - len(dict.fromkeys(r))) for r in tk])  # unique per row
    cat = rng.integers(0, 5, 40)
    pop = rng.integers(0, 30, 40).astype(float)
    ild, nov, arp = [], [], []
    p = (pop + 1) / (pop.sum() + 40)
    for row in tk:
        items = [i for i in row if i >= 0]
        pairs = [(a, b) for x, a in enumerate(items) for b in items[x + 1:]]
        ild.append(np.mean([cat[a] != cat[b] for a, b in pairs]) if pairs else np.nan)
        nov.append(np.mean([-math.log2(p[i]) for i in items]) if items else np.nan)
        arp.append(np.mean([pop[i] for i in items]) if items else np.nan)
    np.testing.assert_allclose(intra_list_diversity(tk, cat, per_user=True), ild, atol=1e-12)
    np.testing.assert_allclose(novelty(tk, pop, per_user=True), nov, atol=1e-12)
    np.testing.assert_allclose(average_popularity(tk, pop, per_user=True), arp, atol=1e-12)
    counts = np.bincount(tk[tk >= 0], minlength=40)
    g = np.abs(counts[:, None] - counts[None, :]).sum() / (2 * 40 * counts.sum())   # mean-difference form
    assert abs(gini_exposure(tk, 40) - g) < 1e-12
    assert catalogue_coverage(tk, 40) == len(set(tk[tk >= 0].tolist())) / 40


# ---------------------------------------------------------------- uncertainty
def test_bootstrap_is_reproducible_and_consistent():
    rng = np.random.default_rng(0)
    V = rng.random((300, 4))
    a = bootstrap_ci(V, seed=3)
    b = bootstrap_ci(V, seed=3)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    for j in range(4):
        np.testing.assert_allclose(bootstrap_ci(V[:, j], seed=3), [a[0][j], a[1][j], a[2][j]], atol=1e-12)
    med = bootstrap_ci(V[:, 0], statistic=np.median, n_boot=300)
    assert med[1] <= np.median(V[:, 0]) <= med[2]
    v, lo, hi = bootstrap_ci(V[:, 0], n_boot=0)
    assert np.isnan(lo) and np.isnan(hi)


def test_bootstrap_coverage_of_a_known_mean():
    # 95% intervals of the mean of 200 exponential samples should cover the true mean about 95% of the time
    rng = np.random.default_rng(0)
    hits = 0
    for i in range(200):
        x = rng.exponential(1.0, 200)
        _, lo, hi = bootstrap_ci(x, n_boot=400, seed=i)
        hits += lo <= 1.0 <= hi
    assert 0.88 <= hits / 200 <= 0.99


def test_paired_bootstrap_matches_ttest_and_detects_shifts():
    rng = np.random.default_rng(0)
    a = rng.normal(size=500)
    b = a + rng.normal(0.1, 0.5, 500)
    r = paired_bootstrap(b, a)
    t = stats.ttest_rel(b, a)
    assert abs(r["t_stat"] - t.statistic) < 1e-12 and abs(r["t_p_value"] - t.pvalue) < 1e-12
    assert r["ci_low"] < r["diff"] < r["ci_high"] and r["ci_low"] > 0 and r["p_value"] < 0.01
    null = paired_bootstrap(a, a + rng.normal(0, 0.5, 500))
    assert null["p_value"] > 0.01


# ---------------------------------------------------------------- classification vs scikit-learn
@pytest.mark.parametrize("seed", range(6))
def test_classification_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    n, L = rng.integers(30, 400), rng.integers(2, 9)
    P = rng.random((n, L))
    P[: n // 5] = np.round(P[: n // 5], 1)                     # ties, and values on bin edges
    P[0, 0], P[1, 0] = 0.0, 1.0
    Y = (rng.random((n, L)) < 0.1 + 0.8 * P).astype(int)
    Y[0], Y[1] = 1, 0                                          # every label has both classes
    thr = float(rng.choice([0.3, 0.5, 0.7]))
    cm = classification_metrics(Y, P, threshold=thr)
    pred = (P >= thr).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = {"accuracy": skm.accuracy_score(Y, pred), "hamming_loss": skm.hamming_loss(Y, pred),
               "log_loss": np.mean([skm.log_loss(Y[:, j], P[:, j]) for j in range(L)]),
               "brier": np.mean([skm.brier_score_loss(Y[:, j], P[:, j]) for j in range(L)])}
        for a in ("micro", "macro", "samples"):
            ref[f"precision_{a}"] = skm.precision_score(Y, pred, average=a, zero_division=0)
            ref[f"recall_{a}"] = skm.recall_score(Y, pred, average=a, zero_division=0)
            ref[f"f1_{a}"] = skm.f1_score(Y, pred, average=a, zero_division=0)
        for a in ("micro", "macro"):
            ref[f"roc_auc_{a}"] = skm.roc_auc_score(Y, P, average=a)
            ref[f"pr_auc_{a}"] = skm.average_precision_score(Y, P, average=a)
        ok = (Y.sum(1) > 0) & (Y.sum(1) < L)
        cs = classification_metrics(Y[ok], P[ok], threshold=thr)
        assert abs(cs["roc_auc_samples"] - skm.roc_auc_score(Y[ok], P[ok], average="samples")) < 1e-12
        assert abs(cs["pr_auc_samples"] - skm.average_precision_score(Y[ok], P[ok], average="samples")) < 1e-12
        np.testing.assert_allclose(cm["f1_per_label"], skm.f1_score(Y, pred, average=None, zero_division=0), atol=1e-12)
        np.testing.assert_allclose(cm["pr_auc_per_label"], skm.average_precision_score(Y, P, average=None), atol=1e-12)
        # binary: the first label
        y, p = Y[:, 0], P[:, 0]
        cb = classification_metrics(y, p, threshold=thr)
        pb = (p >= thr).astype(int)
        bref = {"accuracy": skm.accuracy_score(y, pb), "precision": skm.precision_score(y, pb, zero_division=0),
                "recall": skm.recall_score(y, pb, zero_division=0), "f1": skm.f1_score(y, pb, zero_division=0),
                "roc_auc": skm.roc_auc_score(y, p), "pr_auc": skm.average_precision_score(y, p),
                "log_loss": skm.log_loss(y, p), "brier": skm.brier_score_loss(y, p),
                "f1_macro": skm.f1_score(y, pb, average="macro", zero_division=0),
                "f1_micro": skm.f1_score(y, pb, average="micro", zero_division=0),
                "precision_macro": skm.precision_score(y, pb, average="macro", zero_division=0),
                "recall_macro": skm.recall_score(y, pb, average="macro", zero_division=0)}
    for key, v in ref.items():
        assert abs(cm[key] - v) < 1e-12, (key, cm[key], v)
    for key, v in bref.items():
        assert abs(cb[key] - v) < 1e-12, (key, cb[key], v)


def test_calibration_matches_sklearn_and_ece():
    from sklearn.calibration import calibration_curve as skcc
    rng = np.random.default_rng(0)
    p = np.concatenate([rng.random(3000), np.linspace(0, 1, 11)])
    y = (rng.random(p.size) < p).astype(int)
    for n_bins in (3, 10, 17):
        c = calibration_curve(y, p, n_bins)
        t, m = skcc(y, p, n_bins=n_bins)
        np.testing.assert_allclose(c.dropna().fraction_positive, t, atol=1e-12)
        np.testing.assert_allclose(c.dropna().mean_predicted, m, atol=1e-12)
        assert c.n.sum() == p.size
    assert expected_calibration_error(y, p) < 0.05                 # calibrated by construction
    assert expected_calibration_error(y, p ** 3) > 0.1


def test_per_sample_means_are_the_metrics():
    rng = np.random.default_rng(2)
    P = rng.random((200, 5)); Y = (rng.random((200, 5)) < P).astype(int)
    ps, cm = per_sample_classification(Y, P), classification_metrics(Y, P)
    for col, key in (("exact_match", "accuracy"), ("f1", "f1_samples"), ("precision", "precision_samples"),
                     ("recall", "recall_samples"), ("log_loss", "log_loss"), ("brier", "brier")):
        assert abs(ps[col].mean() - cm[key]) < 1e-12
    assert abs(1 - ps.hamming_accuracy.mean() - cm["hamming_loss"]) < 1e-12


def test_report_ci_resamples_recompute_the_aggregates():
    "Each bootstrap replicate equals scikit-learn on the explicitly resampled rows."
    rng = np.random.default_rng(4)
    P = rng.random((120, 4)); Y = (rng.random((120, 4)) < P).astype(int)
    pred = (P >= 0.5).astype(int)
    W = next(M._resample_weights(len(Y), 5, seed=0))
    tp, fp, fn = (Y & pred).astype(float), ((1 - Y) & pred).astype(float), (Y & (1 - pred)).astype(float)
    for w in W:
        rows = np.repeat(np.arange(len(Y)), w)
        TP, FP, FN = w @ tp, w @ fp, w @ fn
        assert abs(M._prf(TP.sum(), FP.sum(), FN.sum())[2] - skm.f1_score(Y[rows], pred[rows], average="micro")) < 1e-12
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert abs(M._prf(TP, FP, FN)[2].mean() - skm.f1_score(Y[rows], pred[rows], average="macro", zero_division=0)) < 1e-12
        auc = M._weighted_auc(Y[:, 0], P[:, 0], w[None].astype(float))[0]
        assert abs(auc - skm.roc_auc_score(Y[rows, 0], P[rows, 0])) < 1e-12
    rep = classification_report_ci(Y, P, n_boot=300).set_index("metric")
    assert (rep.ci_low <= rep.value).all() and (rep.value <= rep.ci_high).all()
    repb = classification_report_ci(Y[:, 0], P[:, 0], n_boot=300).set_index("metric")
    assert abs(repb.loc["roc_auc", "value"] - skm.roc_auc_score(Y[:, 0], P[:, 0])) < 1e-12


# ---------------------------------------------------------------- migration
def test_js_divergence_against_scipy_and_dataframes():
    rng = np.random.default_rng(0)
    P, Q = rng.random((100, 6)) * (rng.random((100, 6)) < 0.6), rng.random((100, 6))
    P[:, 0] += 0.01
    ref = np.array([jensenshannon(p, q, base=2) ** 2 for p, q in zip(P, Q)])
    np.testing.assert_allclose(js_divergence(P, Q), ref, atol=1e-12)
    assert float(js_divergence(P[0], Q[0])) == pytest.approx(ref[0], abs=1e-12)
    a = pd.DataFrame({"x": [1, 0], "y": [0, 1]})
    b = pd.DataFrame({"y": [1, 0], "z": [0, 1]})                 # columns aligned by name: x, y, z
    np.testing.assert_allclose(js_divergence(a, b), [1.0, 1.0])
    np.testing.assert_array_equal(top_category_change(a, b), [True, True])
    with pytest.raises(ValueError, match="different indexes"):
        js_divergence(a, b.set_axis([5, 6]))


# ---------------------------------------------------------------- sampled metrics
def test_sampled_metrics_random_scorer_expectation():
    rng = np.random.default_rng(0)
    s = rng.random((3000, 400))
    truth = [[i % 400] for i in range(3000)]
    r = sampled_metrics(s, truth, n_negatives=99, k=(10,), seed=1)
    assert abs(r.per_user["hit", 10].mean() - 10 / 100) < 0.02       # uniform rank among 100 candidates
    assert r.label == "sampled: 1 positive vs 99 negatives"


# ---------------------------------------------------------------- bench and scale
def test_bench_small_agrees():
    b = bench_metrics(n_users=300, n_items=500, repeat=1, verbose=False)
    assert b["max_abs_diff"] <= 1e-12 and b["ratio"] > 0 and b["metrics"] == 12


@pytest.mark.slow
def test_bench_full_size_agrees():
    b = bench_metrics()
    assert b["max_abs_diff"] <= 1e-12


@pytest.mark.slow
def test_100k_users_50k_items_in_bounded_memory():
    "100,000 x 50,000 scores (40 GB as float64) ranked from a callable in blocks; the traced peak stays near one block."
    n_users, n_items, batch = 100_000, 50_000, 1024
    rng = np.random.default_rng(0)
    item_score = rng.random(n_items)
    bias = rng.random(n_users)
    truth = rng.integers(0, n_items, n_users)
    truth_sp = sparse.csr_matrix((np.ones(n_users), (np.arange(n_users), truth)), shape=(n_users, n_items))
    tracemalloc.start()
    res = ranking_metrics(lambda rows: np.add.outer(bias[rows], item_score), truth_sp, k=(10, 100), batch_size=batch)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    block = batch * n_items * 8
    assert peak < 3 * block, peak / 2**20
    top = np.argsort(-item_score, kind="stable")[:100]               # every user gets the same list
    np.testing.assert_array_equal(res.topk[0], top)
    for k in (10, 100):
        np.testing.assert_array_equal(res.per_user["hit", k], np.isin(truth, top[:k]).astype(float))


def test_inputs_are_never_modified():
    import torch
    rng = np.random.default_rng(0)
    s = rng.random((6, 8))
    t = torch.tensor(s)
    ex = [[0, 1]] * 6
    for scores in (s, t, s[:, :], t[:, :]):
        as_np = lambda x: x.numpy() if isinstance(x, torch.Tensor) else x
        before = as_np(scores).copy()
        ranking_metrics(scores, [[2]] * 6, k=3, exclude=ex, batch_size=4)
        ranking_metrics(scores, [[2]] * 5 + [[]], k=3, exclude=ex, batch_size=4)   # a non-contiguous row set
        np.testing.assert_array_equal(as_np(scores), before)
    view = lambda rows: s[rows[0]:rows[-1] + 1]                 # a callable returning views of its own array
    ranking_metrics(view, [[2]] * 6, k=3, exclude=ex, batch_size=4)
    assert np.isfinite(s).all()


def test_no_warnings_when_nothing_is_predicted():
    y = np.array([[1, 0], [0, 1], [0, 0]])
    s = np.array([[0.1, 0.2], [0.3, 0.1], [0.2, 0.2]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cm = classification_metrics(y, s, 0.5, average="micro")
        assert cm["f1_micro"] == 0.0 and cm["precision_micro"] == 0.0
        rep = classification_report_ci(y, s, 0.5, n_boot=50)
        assert rep.set_index("metric").loc["f1_micro", "ci_high"] == 0.0
        cb = classification_metrics(np.zeros(3, int), np.array([0.1, 0.2, 0.3]))
        assert np.isnan(cb["roc_auc"]) and cb["f1"] == 0.0


def test_readonly_contiguous_scores_raise_no_warning():
    s = np.random.default_rng(0).random((5, 9))
    s.setflags(write=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = ranking_metrics(s, [[1]] * 5, k=3)
    assert len(r.users) == 5
    assert isinstance(js_divergence([1, 0], [1, 1]), float)


def test_weighted_average_precision_matches_sklearn_under_bootstrap_weights():
    "The PR-AUC of each bootstrap resample equals sklearn's average_precision_score with those counts as weights."
    from sklearn.metrics import average_precision_score
    from interest_migration.metrics import _weighted_ap, classification_report_ci
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 400)
    s = np.clip(np.round(rng.random(400) * 0.8 + 0.2 * y, 2), 0, 1)     # rounded: many ties
    W = rng.integers(0, 3, (5, 400))
    ref = [average_precision_score(y, s, sample_weight=w) for w in W]
    np.testing.assert_allclose(_weighted_ap(y, s, W), ref, rtol=0, atol=1e-12)
    rep = classification_report_ci(y, s, n_boot=300).set_index("metric")
    assert abs(rep.loc["pr_auc", "value"] - average_precision_score(y, s)) < 1e-12
    assert rep.loc["pr_auc", "ci_low"] < rep.loc["pr_auc", "value"] < rep.loc["pr_auc", "ci_high"]


# --- graded-relevance NDCG (gains="raw" / "exp"); binary stays the default ---

def _graded_ndcg_loop(scores, G, k, exclude=None):
    "Reference: one user at a time, stable sort, gains from the dense matrix, ideal from the sorted gains."
    out = []
    for u in range(G.shape[0]):
        g = G[u]
        if not (g > 0).any():
            continue
        s = scores[u].astype(float).copy()
        if exclude is not None:
            s[exclude[u] > 0] = -np.inf
        order = [i for i in np.argsort(-s, kind="stable") if np.isfinite(s[i])][:k]
        disc = 1 / np.log2(np.arange(2, k + 2))
        dcg = sum(g[i] * disc[j] for j, i in enumerate(order))
        ideal = np.sort(g[g > 0])[::-1][:k]
        out.append(dcg / (ideal * disc[:len(ideal)]).sum())
    return np.array(out)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("gains", ["raw", "exp"])
def test_graded_ndcg_matches_per_user_loop(seed, gains):
    rng = np.random.default_rng(seed)
    scores = rng.random((40, 30))
    G = np.where(rng.random((40, 30)) < 0.15, rng.integers(1, 6, (40, 30)), 0).astype(float)
    ex = (rng.random((40, 30)) < 0.1) & (G == 0)
    gains_mat = G if gains == "raw" else np.where(G > 0, 2.0 ** G - 1, 0)
    for k in (1, 5, 10):
        r = ranking_metrics(scores, sparse.csr_matrix(G), k=k, exclude=sparse.csr_matrix(ex), gains=gains)
        np.testing.assert_allclose(r.per_user["ndcg", k], _graded_ndcg_loop(scores, gains_mat, k, ex), atol=1e-12)


def test_graded_ndcg_hand_case_and_sklearn():
    # truth gains {1: 3, 4: 1, 6: 2}; list [4, 2, 1, 7, 6]
    lists = np.array([[4, 2, 1, 7, 6]])
    G = sparse.csr_matrix(([3, 1, 2], ([0, 0, 0], [1, 4, 6])), shape=(1, 8))
    raw = ranking_metrics(lists, G, k=5, gains="raw").per_user["ndcg", 5][0]
    assert abs(raw - (1 + 3 / 2 + 2 / math.log2(6)) / (3 + 2 / math.log2(3) + 1 / 2)) < 1e-12
    exp = ranking_metrics(lists, G, k=5, gains="exp").per_user["ndcg", 5][0]
    assert abs(exp - (1 + 7 / 2 + 3 / math.log2(6)) / (7 + 3 / math.log2(3) + 1 / 2)) < 1e-12
    # scikit-learn's ndcg_score uses y_true as linear gains: the reference for "raw"
    rng = np.random.default_rng(5)
    s, y = rng.random((30, 25)), np.where(rng.random((30, 25)) < 0.2, rng.integers(1, 6, (30, 25)), 0)
    y[:, 0] = np.maximum(y[:, 0], 1)
    r = ranking_metrics(s, sparse.csr_matrix(y), k=7, gains="raw")
    assert abs(r.per_user["ndcg", 7].mean() - skm.ndcg_score(y, s, k=7)) < 1e-12


def test_graded_ndcg_default_unchanged_and_only_ndcg_graded():
    rng = np.random.default_rng(3)
    s, G = rng.random((20, 15)), sparse.csr_matrix(np.where(rng.random((20, 15)) < 0.3, rng.integers(1, 6, (20, 15)), 0))
    b = ranking_metrics(s, G, k=5)                   # values ignored: nonzero = relevant
    b1 = ranking_metrics(s, (G > 0).astype(np.int8), k=5)
    g = ranking_metrics(s, G, k=5, gains="raw")
    for key in b.per_user:
        np.testing.assert_array_equal(b.per_user[key], b1.per_user[key])
        if key[0] != "ndcg":
            np.testing.assert_array_equal(g.per_user[key], b.per_user[key])
    assert not np.allclose(g.per_user["ndcg", 5], b.per_user["ndcg", 5])
    ones = ranking_metrics(s, (G > 0).astype(float), k=5, gains="raw")
    np.testing.assert_allclose(ones.per_user["ndcg", 5], b.per_user["ndcg", 5], atol=1e-12)
    t = evaluate(s, G, metrics="ndcg", k=5, n_boot=50, gains="raw")
    assert abs(t.value.item() - g.per_user["ndcg", 5].mean()) < 1e-12 and t.attrs["gains"] == "raw"


def test_graded_ndcg_bad_input():
    G = sparse.csr_matrix(([3, -1], ([0, 1], [1, 2])), shape=(2, 4))
    with pytest.raises(ValueError, match="negative gain -1 at user row 1, item 2"):
        ranking_metrics(np.random.default_rng(0).random((2, 4)), G, k=2, gains="raw")
    with pytest.raises(ValueError, match="needs truth as a sparse"):
        ranking_metrics(np.zeros((2, 4)), [[1], [2]], k=2, gains="exp")
    with pytest.raises(ValueError, match="unknown gains"):
        evaluate(np.zeros((2, 4)), abs(G), k=2, gains="log2")
