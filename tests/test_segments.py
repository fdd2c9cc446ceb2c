"Checks of interest_migration.segments that do not belong in the notebook: properties, hand-computed answers, error paths, reproducibility."
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from interest_migration.data import BEHAVIORS, user_cold_start_split
from interest_migration.simulate import simulate_log
from interest_migration.segments import (FoldInSVD, GlobalPopularity, HierarchicalShrinkage, OracleSegmentProfile,
                                         SegmentForest, SegmentPopularity)
from interest_migration.segmenters import KMeansSegmenter, RuleSegmenter, age_band, first_events
from interest_migration.transfer import category_metrics, evaluate_transfer, gap_recovered, warmup_split

from logs import T0, make_log  # tests/logs.py

ITEMS = pd.DataFrame({"item_id": np.arange(6), "category": list("aabbcc")})
USERS = pd.DataFrame({"user_id": np.arange(1, 9), "age": [20, 22, 60, 61, 21, 23, 62, 64],
                      "gender": list("FFMMFFMM"), "occupation": list("xyxyxyxy")})


# known users 1-4: the young women (1, 2) watch category a, the older men (3, 4) category c
TRAIN = make_log([(1, 0, 1, 0), (1, 1, 2, 0), (2, 0, 3, 0), (2, 1, 4, 0),
                  (3, 4, 1, 0), (3, 5, 2, 0), (4, 5, 3, 0), (4, 4, 4, 0), (4, 2, 5, 0)])
NEW = USERS[USERS.user_id >= 5]

ALL = [GlobalPopularity(), GlobalPopularity(prior_strength="auto"), SegmentPopularity(), HierarchicalShrinkage(),
       SegmentForest(n_estimators=3, min_users=1), FoldInSVD(n_factors=2),
       SegmentPopularity(RuleSegmenter(columns=("occupation",)))]


def test_segment_popularity_hand_computed():
    "New users get exactly the mean item shares of the known users of their segment."
    s = SegmentPopularity(prior_strength=None).fit(TRAIN, USERS, ITEMS)
    p = s.predict_profile(NEW)
    np.testing.assert_allclose(p.loc[5].to_numpy(), [1, 0, 0])          # young woman: all a
    np.testing.assert_allclose(p.loc[7].to_numpy(), [0, 1 / 6, 5 / 6])  # older man: user 3 (c, c), user 4 (c, c, b)
    sc = s.score(None, NEW)
    np.testing.assert_allclose(sc[2, 4:], [0.5 * 1 / 2 + 0.5 * 1 / 3, 0.5 * 1 / 2 + 0.5 * 1 / 3], rtol=1e-6)
    assert sc[0, :2].min() > sc[0, 2:].max()


def test_global_popularity_hand_computed():
    g = GlobalPopularity().fit(TRAIN, USERS, ITEMS)
    np.testing.assert_allclose(g.global_profile_, [0.5, 1 / 12, 5 / 12])
    np.testing.assert_allclose(g.predict_profile(NEW).to_numpy(), np.tile([0.5, 1 / 12, 5 / 12], (4, 1)))


def test_dirichlet_update_limits():
    "prior_strength=0: the first events decide alone; a huge one: they change nothing."
    fe = make_log([(5, 4, 10, 0), (5, 2, 11, 0)])
    zero = SegmentPopularity(prior_strength=0).fit(TRAIN, USERS, ITEMS).predict_profile(NEW, fe)
    np.testing.assert_allclose(zero.loc[5].to_numpy(), [0, 0.5, 0.5])
    huge = SegmentPopularity(prior_strength=1e12).fit(TRAIN, USERS, ITEMS)
    np.testing.assert_allclose(huge.predict_profile(NEW, fe).to_numpy(), huge.predict_profile(NEW).to_numpy(), atol=1e-9)
    # users without first events keep the prior
    np.testing.assert_allclose(zero.loc[6].to_numpy(), [1, 0, 0])


def test_shrinkage_limits_and_monotone_weights():
    base = SegmentPopularity(shrinkage=0).fit(TRAIN, USERS, ITEMS)
    inf = SegmentPopularity(shrinkage=1e15).fit(TRAIN, USERS, ITEMS)
    np.testing.assert_allclose(inf.segment_profiles_.to_numpy(), np.tile(inf.global_profile_, (2, 1)), atol=1e-9)
    assert (base.segment_weight_["categories"] == 1).all()
    sim = simulate_log(n_users=600, n_items=100, n_events=20_000, migrating_share=0, seed=3)
    h = HierarchicalShrinkage(RuleSegmenter(columns=("region",))).fit(sim.events, sim.users, sim.items)
    z, n = h.segment_weight_["items"].to_numpy(), h.segment_sizes_.to_numpy()
    assert np.all(np.diff(z[np.argsort(n)]) >= -1e-12)   # bigger segment -> more weight on its own estimate


@pytest.mark.parametrize("strategy", ALL, ids=lambda s: type(s).__name__)
def test_sklearn_contract(strategy):
    s = clone(strategy)
    with pytest.raises(NotFittedError):
        s.predict_profile(NEW)
    assert repr(s.get_params()) == repr(clone(s).get_params())
    assert s.fit(TRAIN, USERS, ITEMS) is s


logs = st.lists(st.tuples(st.integers(1, 4), st.integers(0, 5), st.floats(0, 1000, allow_nan=False), st.integers(0, 4)),
                min_size=4, max_size=50).map(make_log)
firsts = st.lists(st.tuples(st.integers(5, 8), st.integers(0, 5), st.floats(0, 1000, allow_nan=False), st.integers(0, 4)),
                  min_size=0, max_size=12)


@settings(max_examples=25, deadline=None)
@given(logs, firsts, st.integers(0, len(ALL) - 1))
def test_outputs_are_distributions(ev, fe_rows, j):
    "Any log, any first events: profiles are distributions, scores finite, shapes as documented."
    if isinstance(ALL[j], FoldInSVD) and ev["user_id"].nunique() < 2:
        with pytest.raises(ValueError, match="too few users"):
            clone(ALL[j]).fit(ev, USERS, ITEMS)
        return
    s = clone(ALL[j]).fit(ev, USERS, ITEMS)
    fe = make_log(fe_rows) if fe_rows else None
    p = s.predict_profile(NEW, fe)
    assert p.shape == (4, 3) and list(p.index) == [5, 6, 7, 8]
    np.testing.assert_allclose(p.sum(1).to_numpy(), 1.0)
    assert (p.to_numpy() >= 0).all()
    sc = s.score(fe, NEW)
    assert sc.shape == (4, 6) and np.isfinite(sc).all()


def test_row_order_does_not_matter():
    sim = simulate_log(n_users=300, n_items=80, n_events=8_000, seed=2)
    tr, te = user_cold_start_split(sim.events, 0.3, seed=0)
    new = sim.users[sim.users.user_id.isin(te.user_id.unique())]
    fe = first_events(te, 3)
    for proto in (HierarchicalShrinkage(), SegmentForest(n_estimators=4), FoldInSVD(n_factors=8)):
        a = clone(proto).fit(tr, sim.users, sim.items).score(fe, new)
        b = clone(proto).fit(tr.sample(frac=1, random_state=1), sim.users.sample(frac=1, random_state=2),
                             sim.items.sample(frac=1, random_state=3)).score(fe.sample(frac=1, random_state=4), new)
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-12)


def test_kmeans_reproducible_and_clusters_fixed_k():
    sim = simulate_log(n_users=300, n_items=80, n_events=8_000, seed=2)
    a = KMeansSegmenter(n_clusters=4, seed=5).fit(sim.users, events=sim.events, items=sim.items)
    b = KMeansSegmenter(n_clusters=4, seed=5).fit(sim.users, events=sim.events, items=sim.items)
    assert a.k_ == 4 and a.sizes_.sum() == 300
    assert (a.transform(sim.users, sim.events) == b.transform(sim.users, sim.events)).all().all()
    with pytest.raises(ValueError, match="without items"):
        KMeansSegmenter().fit(sim.users, events=sim.events)


def test_error_paths():
    s = SegmentPopularity().fit(TRAIN, USERS, ITEMS)
    with pytest.raises(ValueError, match="item_id not in items"):
        s.predict_profile(NEW, make_log([(5, 99, 1, 0)]))
    with pytest.raises(ValueError, match="users not in the users table"):
        s.predict_profile(NEW[NEW.user_id != 5], make_log([(5, 1, 1, 0)]))
    with pytest.raises(ValueError, match="no row in the users table"):
        SegmentPopularity().fit(TRAIN, USERS[USERS.user_id != 3], ITEMS)
    with pytest.raises(ValueError, match="'category' is missing"):
        GlobalPopularity().fit(TRAIN, USERS, ITEMS.assign(category=[None, "a", "b", "b", "c", "c"]))
    with pytest.raises(ValueError, match="'age'"):
        RuleSegmenter().fit(USERS.drop(columns="age"))
    with pytest.raises(ValueError, match="prior_strength"):
        GlobalPopularity(prior_strength="lots").fit(TRAIN, USERS, ITEMS)
    with pytest.raises(ValueError, match="both train and test"):
        evaluate_transfer({"p": GlobalPopularity()}, TRAIN, TRAIN, USERS, ITEMS)
    with pytest.raises(ValueError, match="duplicated user_id"):
        s.predict_profile(pd.concat([NEW, NEW]))


def test_unseen_segment_falls_back_to_global():
    s = SegmentPopularity(RuleSegmenter(columns=("occupation",)), prior_strength=None).fit(TRAIN, USERS, ITEMS)
    p = s.predict_profile(NEW.assign(occupation="astronaut"))
    np.testing.assert_allclose(p.to_numpy(), np.tile(s.global_profile_, (4, 1)))
    assert s.n_unseen_segment_ == 4


def test_age_band_edges():
    assert list(age_band([24.9, 25, 49.5, 50], bands=(25, 50))) == ["<25", "25-49", "25-49", "50+"]


def test_category_metrics_perfect_and_worst():
    t = np.array([[0.5, 0.3, 0.2]])
    m = category_metrics(t, t)
    assert m.loc[0, "js"] == pytest.approx(0) and m.loc[0, "top1"] == 1 and m.loc[0, "cat_ndcg@3"] == pytest.approx(1)
    m = category_metrics(np.array([[0, 0, 1.0]]), np.array([[1.0, 0, 0]]))
    assert m.loc[0, "js"] == pytest.approx(1)
    m = category_metrics(np.array([[0.1, 0.2, 0.7]]), np.array([[1.0, 0, 0]]))  # the true category ranked last
    assert m.loc[0, "top1"] == 0 and m.loc[0, "cat_ndcg@3"] == pytest.approx(0.5)


def test_evaluate_transfer_consistent_with_evaluate():
    sim = simulate_log(n_users=400, n_items=120, n_events=20_000, migrating_share=0, seed=4)
    tr, te = user_cold_start_split(sim.events, 0.25, seed=0)
    ev = evaluate_transfer({"popularity": GlobalPopularity(), "segment": SegmentPopularity()}, tr, te, sim.users,
                           sim.items, k_first=(0, 2), n_boot=50)
    ws = warmup_split(te, 2)
    assert ev.per_user.groupby(["strategy", "k_first"]).size().eq(ev.report["users_evaluated"]).all()
    assert ev.report["users_evaluated"] + ev.report["users_dropped_no_new_target"] == ws.report["users"]
    for (s, k), g in ev.per_user.groupby(["strategy", "k_first"]):
        r = ev.ranking[(ev.ranking.strategy == s) & (ev.ranking.k_first == k) & (ev.ranking.metric == "ndcg")]
        assert g["ndcg@10"].mean() == pytest.approx(float(r["value"].iloc[0]))
    # popularity ignores first events: its k=0 and k=2 category predictions are identical
    pu = ev.per_user[ev.per_user.strategy == "popularity"]
    np.testing.assert_allclose(pu[pu.k_first == 0]["js"].to_numpy(), pu[pu.k_first == 2]["js"].to_numpy())
    seg = ev.per_segment("js")
    assert set(seg.verdict) <= {"helps", "hurts", "no significant difference", "baseline"}


@pytest.mark.slow
def test_gap_recovered_other_seed():
    "The planted-truth claim on a different world: segment transfer closes >= 80% of the popularity-to-oracle JS gap."
    sim = simulate_log(n_users=3000, n_items=800, n_events=200_000, migrating_share=0, seed=11)
    tr, te = user_cold_start_split(sim.events, 0.2, seed=1)
    ev = evaluate_transfer({"popularity": GlobalPopularity(), "shrinkage": HierarchicalShrinkage(),
                            "oracle": OracleSegmentProfile(sim.truth.segment_profiles)}, tr, te, sim.users, sim.items,
                           k_first=(0,), category_truth=sim.truth.mixture_before, n_boot=200)
    g = gap_recovered(ev, "shrinkage", n_boot=200)
    assert g["fraction"] >= 0.8 and g["ci_low"] >= 0.7


# --- the recommender contract ---------------------------------------------------------------------------------------

def test_recommend_hand_computed():
    "User 5 (young woman) gets her segment's items: item 0 is excluded once seen, item 1 (share 1/2) comes first."
    s = SegmentPopularity(prior_strength=None).fit(TRAIN, USERS, ITEMS)
    fe = make_log([(5, 0, 10, 0)])
    r = s.recommend(fe, NEW[NEW.user_id == 5], k=2)
    assert list(r.columns) == ["user_id", "item_id", "rank", "score"]
    assert list(r["rank"]) == [1, 2] and (r.user_id == 5).all()
    assert r.item_id.iloc[0] == 1 and r.score.iloc[0] == pytest.approx(0.5, abs=1e-8)
    # then categories b and c, which the segment never watched: only the global tie-break orders them (items 4, 5 lead)
    assert r.item_id.iloc[1] in (4, 5) and r.score.iloc[1] < 1e-8
    S = s.score(fe, NEW)
    assert S.shape == (4, 6) and list(s.item_ids_) == list(range(6))
    np.testing.assert_allclose(S[0, :2], [0.5, 0.5], atol=1e-8)   # seen items are scored; recommend drops them


def test_score_users_default_to_the_users_of_events():
    "Without a users table, the rows are the sorted users of the first events (enough for global popularity)."
    g = GlobalPopularity().fit(TRAIN, USERS, ITEMS)
    fe = make_log([(7, 0, 10, 0), (5, 1, 11, 0)])
    np.testing.assert_allclose(g.score(fe), g.score(None, NEW[NEW.user_id.isin([5, 7])]))
    with pytest.raises(ValueError, match="'gender'|'age'"):
        SegmentPopularity().fit(TRAIN, USERS, ITEMS).score(fe)


PROFILES = pd.DataFrame({"a": [0.8, 0.1], "b": [0.1, 0.1], "c": [0.1, 0.8]}, index=["young", "old"])
SEG_USERS = USERS.assign(segment=np.where(USERS.age < 40, "young", "old"))
SAVEABLE = [GlobalPopularity(), GlobalPopularity(prior_strength="auto"), SegmentPopularity(), HierarchicalShrinkage(),
            SegmentPopularity(RuleSegmenter(columns=("occupation",)), shrinkage="auto"), FoldInSVD(n_factors=2),
            OracleSegmentProfile(PROFILES, prior_strength=2.0)]


@pytest.mark.parametrize("strategy", SAVEABLE, ids=lambda s: type(s).__name__)
def test_save_load_round_trip(strategy, tmp_path):
    from interest_migration.recommender import RECOMMENDERS, Recommender, read_manifest
    s = clone(strategy).fit(TRAIN, SEG_USERS, ITEMS)
    fe = make_log([(5, 4, 10, 0), (7, 0, 11, 0)])
    new = SEG_USERS[SEG_USERS.user_id >= 5]
    back = Recommender.load(s.save(tmp_path / "m"))
    assert type(back) is type(s) and RECOMMENDERS[s.kind] is type(s)
    assert read_manifest(tmp_path / "m")["kind"] == s.kind
    np.testing.assert_array_equal(back.score(fe, new), s.score(fe, new))
    pd.testing.assert_frame_equal(back.predict_profile(new, fe), s.predict_profile(new, fe))
    pd.testing.assert_frame_equal(back.recommend(fe, new, k=3), s.recommend(fe, new, k=3))
    assert repr(back) == repr(s) or isinstance(s, OracleSegmentProfile)


def test_unsaveable_strategies_refuse_in_one_line(tmp_path):
    for s in (SegmentForest(n_estimators=2, min_users=1), HierarchicalShrinkage(KMeansSegmenter(n_clusters=2))):
        with pytest.raises(NotImplementedError, match="pickle"):
            s.fit(TRAIN, USERS, ITEMS).save(tmp_path / "m")
        assert not (tmp_path / "m").exists()


def test_evaluate_recommender_matches_evaluate_transfer():
    "The transfer table at k = 0 is evaluate_recommender on the new users' later events."
    from interest_migration.recommender import evaluate_recommender
    sim = simulate_log(n_users=300, n_items=80, n_events=8_000, migrating_share=0, seed=5)
    tr, te = user_cold_start_split(sim.events, 0.3, seed=0)
    s = HierarchicalShrinkage().fit(tr, sim.users, sim.items)
    ev = evaluate_transfer({"shrinkage": s}, tr, te, sim.users, sim.items, k_first=(0,), fit=False, n_boot=50)
    head, rest = warmup_split(te, 0)
    new = sim.users[sim.users.user_id.isin(rest.user_id.unique())].sort_values("user_id")
    direct = evaluate_recommender(s, rest.iloc[:0], rest, users=new, k=(10,), metrics=("ndcg", "recall"), n_boot=50)
    got = ev.ranking.set_index("metric")["value"]
    for m in ("ndcg", "recall"):
        assert got[m] == pytest.approx(float(direct.set_index("metric").loc[m, "value"]))


class _WatchedForest(SegmentForest):
    "A SegmentForest that fails on any write to a constructor parameter once watching starts."
    def __setattr__(self, k, v):
        if getattr(self, "_watch", False) and k in self.get_params():
            raise AssertionError(f"fit wrote the constructor parameter {k}")
        super().__setattr__(k, v)


def test_segment_forest_does_not_touch_its_parameters():
    f = _WatchedForest(n_estimators=3, min_users=2)
    before = f.get_params()
    object.__setattr__(f, "_watch", True)
    f.fit(TRAIN, USERS, ITEMS)
    assert f.get_params() == before
    g = clone(SegmentForest(n_estimators=3, min_users=2).fit(TRAIN, USERS, ITEMS))
    assert g.get_params() == before and not hasattr(g, "forests_")
    h = SegmentForest(n_estimators=3, min_users=2).fit(TRAIN, USERS, ITEMS)
    np.testing.assert_array_equal(g.fit(TRAIN, USERS, ITEMS).score(None, NEW), h.score(None, NEW))
    assert set(g.forests_) == set(h.forests_)


def test_public_helpers_shared_with_transfer_and_cold_users():
    "user_rows, row_normalize and demographics: the helpers transfer and cold_users import, on hand-made tables."
    import scipy.sparse as sp
    from interest_migration.data import DataError
    from interest_migration.segments import demographics, row_normalize, user_rows
    users = pd.concat([USERS, USERS.iloc[[0]].assign(age=99)])           # a duplicated id: the first row counts
    got = user_rows(users, [3, 1, 3])
    assert got.user_id.tolist() == [3, 1, 3] and got.age.tolist() == [60, 20, 60]
    with pytest.raises(ValueError, match=r"2 user_id value\(s\) have no row in the users table, e.g. \[77, 78\]"):
        user_rows(users, [1, 77, 78, 77])
    with pytest.raises(DataError, match="expected a pandas DataFrame"):
        user_rows(users.to_numpy(), [1])
    M = np.array([[2.0, 6.0, 0.0], [0.0, 0.0, 0.0], [1.0, 1.0, 2.0]])
    want = np.array([[0.25, 0.75, 0], [0, 0, 0], [0.25, 0.25, 0.5]])
    assert np.allclose(row_normalize(M), want)
    S = row_normalize(sp.csr_matrix(M))
    assert sp.issparse(S) and np.allclose(S.toarray(), want)
    d = demographics(USERS.assign(segment="s", zip="0"))
    assert list(d) == ["age", "gender", "occupation"] and len(d) == len(USERS)
    assert list(demographics(USERS, ["gender"])) == ["gender"]
    with pytest.raises(DataError, match=r"missing column\(s\) \['income'\]"):
        demographics(USERS, ["income"])
