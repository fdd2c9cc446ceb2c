"Known-answer checks of interest_migration.privacy: noise scales, clipping, FedAvg by hand, the accountant against Opacus, errors."
import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from opacus.accountants import RDPAccountant
from opacus.accountants.utils import get_noise_multiplier
from scipy.stats import norm

from interest_migration.data import DataError
from interest_migration.privacy import (
    ShopClient, clip_rows, dp_fit, federated_fit, gaussian_rdp_epsilon, gaussian_sigma, interest_report, laplace_scale,
    membership_auc, numeric_features, private_segment_sums, privatize_segment_popularity, split_shops)
from interest_migration.segments import SegmentPopularity

from logs import make_log  # tests/logs.py

torch.set_num_threads(1)
warnings.filterwarnings("ignore", module="opacus")
RNG = np.random.default_rng(0)
X = RNG.random((240, 6)).astype(np.float32)
Y = (X[:, :3] + 0.3 * RNG.random((240, 3)) > 0.7).astype(np.int8)


def test_laplace_and_classic_gaussian_by_hand():
    assert laplace_scale(1.0, 0.1) == pytest.approx(10.0)
    assert laplace_scale(3.0, 1.5) == pytest.approx(2.0)
    # Dwork & Roth: sigma = sqrt(2 ln(1.25/delta)) * Delta / eps; delta=1e-5, eps=0.5: ln(125000)=11.73607, -> 9.68961
    assert gaussian_sigma(1.0, 0.5, 1e-5, "classic") == pytest.approx(9.68961, abs=1e-4)
    assert gaussian_sigma(2.0, 0.5, 1e-5, "classic") == pytest.approx(2 * 9.68961, abs=2e-4)
    with pytest.raises(ValueError, match="epsilon < 1"):
        gaussian_sigma(1.0, 1.0, 1e-5, "classic")
    with pytest.raises(ValueError, match="must be > 0"):
        laplace_scale(1.0, 0.0)


@pytest.mark.parametrize("eps,delta", [(0.5, 1e-5), (1.0, 1e-6), (3.0, 1e-3), (8.0, 1e-5)])
def test_analytic_gaussian_meets_its_defining_equation(eps, delta):
    "Balle & Wang (2018) Thm 8: delta(sigma) = Phi(D/2s - eps s/D) - e^eps Phi(-D/2s - eps s/D) equals the target, and is tight."
    s = gaussian_sigma(1.0, eps, delta)
    d = lambda s: norm.cdf(1 / (2 * s) - eps * s) - math.exp(eps) * norm.cdf(-1 / (2 * s) - eps * s)
    assert d(s) == pytest.approx(delta, rel=1e-6)
    assert d(0.99 * s) > delta                        # any smaller sigma breaks the guarantee
    if eps < 1:
        assert s < gaussian_sigma(1.0, eps, delta, "classic")


def test_clip_rows_known_answers():
    V = np.array([[3.0, -4.0], [0.1, 0.2], [0.0, 0.0]])
    np.testing.assert_allclose(clip_rows(V, 1.0, 2), [[0.6, -0.8], [0.1, 0.2], [0, 0]])
    np.testing.assert_allclose(clip_rows(V, 1.0, 1), [[3 / 7, -4 / 7], [0.1, 0.2], [0, 0]])
    np.testing.assert_allclose(np.linalg.norm(clip_rows(RNG.normal(size=(50, 4)) * 10, 2.0, 2), axis=1), 2.0)
    with pytest.raises(ValueError, match="ord"):
        clip_rows(V, 1.0, 3)


def test_segment_sums_noise_scales_and_clipping():
    Z, lab = np.zeros((3000, 40)), np.arange(3000)
    lap = private_segment_sums(Z, lab, epsilon=0.25, clip=1.0, seed=2)
    assert lap.attrs["scale"] == pytest.approx(4.0)
    assert lap.to_numpy().std() == pytest.approx(4.0 * math.sqrt(2), rel=0.02)        # Laplace(b): std = b sqrt 2
    assert np.median(np.abs(lap.to_numpy())) == pytest.approx(4.0 * math.log(2), rel=0.03)
    gau = private_segment_sums(Z, lab, epsilon=1.0, mechanism="gaussian", clip=2.0, delta=1e-5, seed=2)
    assert gau.attrs["scale"] == pytest.approx(gaussian_sigma(2.0, 1.0, 1e-5))
    assert gau.to_numpy().std() == pytest.approx(gau.attrs["scale"], rel=0.02)
    # a single user's huge contribution is bounded by the clip before it enters the sum
    out = private_segment_sums(np.array([[50.0, 0], [0.2, 0.3], [1, 1]]), ["a", "a", "b"], epsilon=1e12, clip=1.0)
    np.testing.assert_allclose(out.loc["a"], [1.2, 0.3], atol=1e-9)
    np.testing.assert_allclose(out.loc["b"], [0.5, 0.5], atol=1e-9)
    with pytest.raises(DataError, match="3 rows but 2 labels"):
        private_segment_sums(np.ones((3, 2)), ["a", "b"], 1.0)


def test_rdp_accountant_matches_opacus():
    for sigma, steps, delta in [(1.0, 10, 1e-5), (4.0, 50, 1e-5), (0.8, 3, 1e-3)]:
        acc = RDPAccountant()
        for _ in range(steps):
            acc.step(noise_multiplier=sigma, sample_rate=1.0)
        assert gaussian_rdp_epsilon(sigma, steps, delta) == pytest.approx(acc.get_epsilon(delta), rel=1e-9)


def test_dp_fit_accountant_against_opacus_for_a_fixed_run():
    n, bs, epochs = len(X), 40, 3
    m = dp_fit(X, Y, epsilon=3.0, epochs=epochs, batch_size=bs, seed=1)
    p = m.privacy_
    assert p["delta"] == pytest.approx(1 / n)
    assert p["sample_rate"] == pytest.approx(bs / n)
    # the noise multiplier is Opacus' own calibration for this run, and the spent epsilon is its RDP accountant's
    assert p["noise_multiplier"] == pytest.approx(get_noise_multiplier(target_epsilon=3.0, target_delta=1 / n, sample_rate=bs / n,
                                                                        epochs=epochs, accountant="rdp"))
    acc = RDPAccountant()
    acc.history = [(p["noise_multiplier"], p["sample_rate"], epochs * (n // bs))]
    assert p["steps"] == epochs * (n // bs)
    assert p["epsilon"] == pytest.approx(acc.get_epsilon(1 / n), rel=1e-9)
    assert p["epsilon"] <= 3.0 + 1e-6 and p["epsilon"] > 2.9
    assert m.predict_proba(X).shape == (n, 3)
    free = dp_fit(X, Y, epsilon=None, epochs=1)
    assert math.isinf(free.privacy_["epsilon"])
    with pytest.raises(DataError, match="240 rows but Y has 10"):
        dp_fit(X, Y[:10])


def test_fedavg_is_the_row_weighted_mean_of_flower_fitres():
    parts = [(X[:60], Y[:60]), (X[60:], Y[60:])]
    g = federated_fit(parts, rounds=1, seed=3)
    init = [v.detach().numpy() for v in federated_fit(parts, rounds=0, seed=3).module_.state_dict().values()]
    ws = [ShopClient(x, y, seed=3 + 1000 * (i + 1)).fit(init, {"server_round": 1})[0] for i, (x, y) in enumerate(parts)]
    for got, a, b in zip(g.module_.state_dict().values(), *ws):
        np.testing.assert_allclose(got.numpy(), (60 * a + 180 * b) / 240, rtol=1e-5, atol=1e-7)
    seen = []
    federated_fit(parts, rounds=2, on_round=lambda r, m: seen.append(r))
    assert seen == [1, 2]
    with pytest.raises(DataError, match="feature widths"):
        federated_fit([(X, Y), (X[:, :3], Y)], rounds=1)


def test_split_shops_non_iid_and_errors():
    seg = pd.Series(np.repeat(["a", "b", "c"], 3000))
    iid = pd.crosstab(split_shops(seg, 3, 1e6, seed=1), seg, normalize="columns")
    assert (iid - 1 / 3).abs().max().max() < 0.03
    skew = pd.crosstab(split_shops(seg, 3, 0.1, seed=1), seg, normalize="columns")
    assert skew.max().min() > 0.6                       # each segment mostly lives in one shop
    assert split_shops(seg, 3, 0.1, seed=1).equals(split_shops(seg, 3, 0.1, seed=1))
    with pytest.raises(DataError, match="no segment"):
        split_shops(pd.Series(["a", None]), 2)


def test_numeric_features_and_report():
    np.testing.assert_array_equal(numeric_features(pd.DataFrame({"a": [np.nan, 2.0]})), [[0.0], [2.0]])
    with pytest.raises(DataError, match="infinite value in column 'a'"):
        numeric_features(pd.DataFrame({"a": [np.inf, 2.0]}))

    class Oracle:
        def predict_proba(self, X): return np.asarray(X, float)
    Yt = np.array([[1, 0, 1], [0, 1, 0]])
    r = interest_report(Oracle(), Yt * 0.9 + 0.05, Yt, k=1, n_boot=20).set_index("metric")
    assert r.loc["f1_micro", "value"] == 1.0
    assert r.loc["recall@1", "value"] == pytest.approx((0.5 + 1) / 2)


def test_membership_auc_known_answers():
    class Fixed:
        def predict_proba(self, X): return np.asarray(X)
    Y1 = np.ones((40, 2))
    assert membership_auc(Fixed(), np.full((40, 2), 0.9), Y1, np.full((40, 2), 0.3), Y1, n_boot=10)["auc"] == 1.0
    assert membership_auc(Fixed(), np.full((40, 2), 0.3), Y1, np.full((40, 2), 0.9), Y1, n_boot=10)["auc"] == 0.0
    assert membership_auc(Fixed(), np.full((40, 2), 0.5), Y1, np.full((80, 2), 0.5), np.ones((80, 2)), n_boot=10)["n"] == 40
    with pytest.raises(DataError, match="X_out has 80 rows but Y_out has 40"):
        membership_auc(Fixed(), np.full((40, 2), 0.5), Y1, np.full((80, 2), 0.5), Y1)


def test_private_segment_popularity_is_post_processing_of_the_release():
    items = pd.DataFrame({"item_id": np.arange(6), "category": list("aabbcc")})
    users = pd.DataFrame({"user_id": np.arange(1, 5), "age": [20, 22, 60, 61], "gender": list("FFMM")})
    train = make_log([(1, 0, 1, 0), (1, 1, 2, 0), (2, 0, 3, 0), (3, 4, 1, 0), (3, 5, 2, 0), (4, 5, 3, 0), (4, 2, 5, 0)])
    base = SegmentPopularity(shrinkage=0.0, prior_strength=None).fit(train, users, items)
    before = base.segment_profiles_.copy()
    exact = privatize_segment_popularity(base, 1e9, seed=0)                  # no noise to speak of: the exact shares
    np.testing.assert_allclose(exact.segment_profiles_.to_numpy(), base.segment_profiles_.to_numpy(), atol=1e-6)
    np.testing.assert_allclose(exact.segment_items_, base.segment_items_, atol=1e-6)
    noisy = privatize_segment_popularity(base, 0.5, seed=0)
    assert noisy.release_.attrs["scale"] == pytest.approx(2 / 0.5)           # L1 sensitivity 2 (two share vectors)
    rel = noisy.release_.reindex(noisy.segments_).to_numpy().clip(0)
    np.testing.assert_allclose(noisy.segment_profiles_.sum(1), 1.0)
    ok = rel[:, :3].sum(1) > 0
    np.testing.assert_allclose(noisy.segment_profiles_.to_numpy()[ok], rel[ok, :3] / rel[ok, :3].sum(1, keepdims=True))
    pd.testing.assert_frame_equal(base.segment_profiles_, before)             # the fitted strategy is not modified
    with pytest.raises(ValueError, match="shrinkage=0"):
        privatize_segment_popularity(SegmentPopularity(shrinkage="auto", prior_strength=None).fit(train, users, items), 1.0)
