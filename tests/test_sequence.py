"Sequence models: property tests (masking, causality, windows), save/load, known answers, the bench's bookkeeping."
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings, strategies as st, HealthCheck

from interest_migration.data import BEHAVIORS
from interest_migration.data import DataError
from interest_migration.sequence import (
    CoOccurrence, Popularity, RunOptions, Sequences, make_catalog, pad_sequences,
    planted_log, sequence_split, to_sequences, training_windows,
    evaluate_sequences, default_device)
from interest_migration.neural import GRU4Rec, LSTMRec, SASRec
from interest_migration.bert4rec import BERT4Rec
from interest_migration.recommender import ModelFileError
from interest_migration.bench import _split_agreement, bench_sequence, read_recbole_json, time_to_reach

ROOT = Path(__file__).resolve().parents[1]
FAST = dict(embedding_size=16, max_len=12, max_epochs=40, batch_size=16, learning_rate=1e-2, patience=5)
OPTS = RunOptions(progress=False, num_threads=1)


@pytest.fixture(scope="module")
def plant():
    return sequence_split(planted_log(n_users=120, n_items=30, length=12, seed=3))


@pytest.fixture(scope="module")
def sas(plant):
    return SASRec(**FAST).fit(plant, options=OPTS)


@pytest.fixture(scope="module")
def plant1():
    "The planted cycle with a single behaviour type: plain lists of item ids are then complete inputs."
    return sequence_split(planted_log(n_users=120, n_items=30, length=12, behaviors=("view",), seed=4))


def random_log(rng, n_users=8, n_items=15, max_events=9):
    "A small random log with timestamp ties (the tie rule is row order)."
    n = rng.integers(1, max_events + 1, n_users)
    user = np.repeat(np.arange(n_users) * 7 + 1, n)
    return pd.DataFrame({"user_id": user, "item_id": rng.integers(1, n_items + 1, len(user)) * 10,
                         "timestamp": pd.to_datetime(rng.integers(0, 5, len(user)), unit="D", utc=True),
                         "behavior": pd.Categorical(rng.choice(["view", "cart", "buy"], len(user)),
                                                    categories=list(BEHAVIORS))})


def random_sequences(seed):
    "The sequences of `random_log` drawn from `seed`."
    log = random_log(np.random.default_rng(seed))
    return to_sequences(log, make_catalog(log))


# ---- data layout -------------------------------------------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), max_len=st.integers(1, 6))
def test_windows_hold_every_pair_once(seed, max_len):
    s = random_sequences(seed)
    X, B, Y, YB = training_windows(s, max_len)
    got = sorted(zip(X[Y > 0].tolist(), Y[Y > 0].tolist(), B[Y > 0].tolist(), YB[Y > 0].tolist()))
    want = []
    for k in range(len(s)):                       # reference: a plain loop over users
        it, be = s.items[s.offsets[k]:s.offsets[k + 1]], s.behaviors[s.offsets[k]:s.offsets[k + 1]]
        want += [(int(it[j]), int(it[j + 1]), int(be[j]), int(be[j + 1])) for j in range(len(it) - 1)]
    assert got == sorted(want)
    assert ((X > 0) == (Y > 0)).all()
    assert ((X[:, :-1] > 0) | (X[:, 1:] == 0)).all()          # right padding only


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), max_len=st.integers(1, 6))
def test_pad_keeps_the_latest_events(seed, max_len):
    s = random_sequences(seed)
    x, b, n = pad_sequences(s, max_len)
    for k in range(len(s)):
        it = s.items[s.offsets[k]:s.offsets[k + 1]][-max_len:]
        assert x[k, :len(it)].tolist() == it.tolist() and (x[k, len(it):] == 0).all() and n[k] == len(it)


def test_to_sequences_orders_by_time_then_row():
    log = random_log(np.random.default_rng(0), n_users=30)
    s = to_sequences(log, make_catalog(log))
    ref = log.assign(row=np.arange(len(log))).sort_values(["user_id", "timestamp", "row"])
    assert s.catalog.decode(s.items).tolist() == ref.item_id.tolist()


def test_split_targets_match_pandas():
    log = random_log(np.random.default_rng(1), n_users=50)
    sp = sequence_split(log)
    ref = log.assign(row=np.arange(len(log))).sort_values(["user_id", "timestamp", "row"])
    counts = ref.groupby("user_id").size()
    last = ref.groupby("user_id").tail(1).set_index("user_id").item_id
    assert sp.test.user_id.tolist() == counts.index[counts >= 2].tolist()
    assert sp.catalog.decode(sp.test.target).tolist() == last.loc[sp.test.user_id].tolist()
    second = ref.groupby("user_id").nth(-2).set_index("user_id").item_id
    assert sp.valid.user_id.tolist() == counts.index[counts >= 3].tolist()
    assert sp.catalog.decode(sp.valid.target).tolist() == second.loc[sp.valid.user_id].tolist()
    # the test input is everything before the last event
    for k, u in enumerate(sp.test.user_id):
        assert sp.catalog.decode(sp.test.items[sp.test.offsets[k]:sp.test.offsets[k + 1]]).tolist() \
            == ref[ref.user_id == u].item_id.tolist()[:-1]


# ---- known answers -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [SASRec, GRU4Rec])
def test_planted_cycle_is_learned(plant1, cls):
    m = cls(**FAST).fit(plant1, options=OPTS)
    hr1 = evaluate_sequences(m, plant1.test, k=(1,), metrics=("hit",), n_boot=0)["value"].iloc[0]
    assert hr1 >= 0.98
    # cold users: lists of item ids, never seen in training
    assert m.recommend([[3, 4, 5], [29, 30], [30]], k=1).item_id.tolist() == [6, 1, 1]


def test_planted_cycle_with_behaviours(sas, plant):
    hr1 = evaluate_sequences(sas, plant.test, k=(1,), metrics=("hit",), n_boot=0)["value"].iloc[0]
    assert hr1 >= 0.98


def test_behaviour_head_learns_the_pattern(sas, plant):
    p = sas.predict_behavior(plant.test)
    last = np.asarray(plant.catalog.behaviors)[plant.test.behaviors[plant.test.offsets[1:] - 1]]
    nxt = pd.Series({"view": "cart", "cart": "buy", "buy": "view"})[last].to_numpy()
    assert (p.idxmax(axis=1).to_numpy() == nxt).mean() >= 0.98


def test_cooccurrence_counts_match_a_loop():
    log = random_log(np.random.default_rng(5), n_users=40)
    s = to_sequences(log, make_catalog(log))
    c = CoOccurrence(window=2).fit(s)
    ref = np.zeros((s.catalog.n_items,) * 2)
    for k in range(len(s)):
        it = s.items[s.offsets[k]:s.offsets[k + 1]] - 1
        for i in range(len(it)):
            for j in range(i + 1, min(i + 3, len(it))):
                ref[it[i], it[j]] += 1
    assert np.array_equal(c.counts_.toarray(), ref)


# ---- masking, causality, save/load ---------------------------------------------------------------------------------

@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seqs=st.lists(st.lists(st.integers(1, 30), min_size=0, max_size=20), min_size=1, max_size=6),
       k=st.integers(1, 10))
def test_masking_never_recommends_history(sas, plant, seqs, k):
    for m in (sas, Popularity().fit(plant), CoOccurrence().fit(plant)):
        rec = m.recommend(seqs, k=k)
        assert rec.user_id.tolist() == np.repeat(np.arange(len(seqs)), k).tolist()
        for r, h in zip(rec.item_id.to_numpy().reshape(len(seqs), k), seqs):
            assert not set(r.tolist()) & set(h)
            assert len(set(r.tolist())) == k


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), t=st.integers(1, 11))
def test_future_items_cannot_change_earlier_states(sas, seed, t):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(1, 31, (4, 12), generator=g)
    b = torch.randint(0, 3, (4, 12), generator=g)
    x2, b2 = x.clone(), b.clone()
    x2[:, t:] = torch.randint(0, 31, (4, 12 - t), generator=g)
    b2[:, t:] = torch.randint(0, 3, (4, 12 - t), generator=g)
    with torch.no_grad():
        assert torch.equal(sas.net_(x, b)[:, :t], sas.net_(x2, b2)[:, :t])


def test_causal_prediction_for_prefixes(sas, plant):
    "Scoring a prefix alone equals the state at that position of the full sequence (no leak from later events)."
    x, b, n = pad_sequences(plant.test, 12)
    with torch.no_grad():
        full = sas.net_(x, b)
        k = 5
        pref = sas.net_(x[:, :k], b[:, :k])
    assert torch.allclose(full[:, :k], pref, atol=1e-5)


@pytest.mark.parametrize("cls", [SASRec, GRU4Rec, LSTMRec, BERT4Rec])
def test_save_load_round_trip(tmp_path, cls):
    log = planted_log(n_users=40, n_items=20, length=8, seed=1)
    sp = sequence_split(log)
    m = cls(**{**FAST, "max_epochs": 2}).fit(sp, options=OPTS)
    path = m.save(tmp_path / "m")
    raw = torch.load(path / "weights.pt", weights_only=True)     # plain content: loads without unpickling code
    assert all(torch.is_tensor(v) for v in raw.values())
    assert json.loads((path / "manifest.json").read_text())["kind"] == cls.kind
    again = cls.load(path)
    if cls is BERT4Rec:   # masked (bidirectional) attention may pick another kernel: equal to 1e-6, not bit for bit
        assert np.allclose(m.score(sp.test), again.score(sp.test), rtol=0, atol=1e-6)
    else:
        assert np.array_equal(m.score(sp.test), again.score(sp.test))
    r1, r2 = m.recommend(sp.test, k=5), again.recommend(sp.test, k=5)
    assert r1[["user_id", "item_id", "rank"]].equals(r2[["user_id", "item_id", "rank"]])
    assert np.allclose(r1.score, r2.score, rtol=0, atol=1e-6) and (cls is BERT4Rec or r1.equals(r2))
    assert np.allclose(again.predict_behavior(sp.test), m.predict_behavior(sp.test), rtol=0, atol=1e-6)


def test_errors_name_the_problem(sas):
    with pytest.raises(ModelFileError, match="1 of the log's 2 distinct items .* catalogue of 30 items \\(e.g. 99\\)"):
        sas.recommend([[1, 99]], k=3)
    with pytest.raises(ValueError, match="n_heads=3 must divide embedding_size=16"):
        SASRec(**{**FAST, "n_heads": 3}).fit(sequence_split(planted_log(20, 30, 5)), options=OPTS)
    with pytest.raises(DataError, match="SequenceSplit, Sequences or an event log"):
        SASRec(**FAST).fit(42, options=OPTS)
    with pytest.raises(DataError, match="missing column"):
        SASRec(**FAST).fit(pd.DataFrame(), options=OPTS)
    from sklearn.exceptions import NotFittedError
    with pytest.raises(NotFittedError):
        SASRec().recommend([[1]])


def test_foreign_catalogue_is_reencoded(sas):
    log = planted_log(n_users=5, n_items=30, length=6, seed=9)
    log = log[log.item_id <= 20]                                # a smaller catalogue: other codes
    s = to_sequences(log, make_catalog(log))
    assert s.catalog.n_items < sas.catalog_.n_items
    direct = sas.as_sequences(s)
    assert direct.catalog is sas.catalog_
    assert sas.catalog_.decode(direct.items).tolist() == s.catalog.decode(s.items).tolist()


def test_device_default_and_override():
    assert default_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert default_device("cpu").type == "cpu"


# ---- the bench's bookkeeping ---------------------------------------------------------------------------------------

def test_time_to_reach_and_recbole_json(tmp_path):
    h = pd.DataFrame({"elapsed_s": [1.0, 2.0, 3.0], "valid_ndcg@10": [0.01, 0.03, 0.02]})
    assert time_to_reach(h, 0.025) == 2.0 and np.isnan(time_to_reach(h, 0.5))
    assert read_recbole_json(tmp_path / "none.json") is None
    (tmp_path / "bad.json").write_text(json.dumps({"epochs": [{"train_s": 1}]}))
    with pytest.raises(ValueError, match="no per-epoch validation NDCG@10"):
        read_recbole_json(tmp_path / "bad.json")


def test_split_agreement_counts_users():
    log = random_log(np.random.default_rng(2), n_users=20, max_events=6)
    sp = sequence_split(log)
    dec = lambda s: [str(x) for x in sp.catalog.decode(s.target)]
    peer = {"split": {"user_id": [str(u) for u in sp.valid.user_id], "valid_item": dec(sp.valid),
                      "test_user_id": [str(u) for u in sp.test.user_id], "test_item": dec(sp.test)}}
    assert _split_agreement(sp, peer) == (len(sp.valid), len(sp.test), len(sp.valid))
    peer["split"]["valid_item"][0] = "nope"
    assert _split_agreement(sp, peer)[0] == len(sp.valid) - 1


def test_peer_script_help_runs_without_recbole():
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "bench_peer_recbole.py"), "--help"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "--epochs" in r.stdout


@pytest.mark.slow
def test_bench_reads_a_peer_record(tmp_path):
    peer = {"epochs": [{"epoch": 1, "train_s": 100.0, "valid_s": 1.0, "elapsed_s": 101.0, "recbole_valid": {"ndcg@10": 0.01},
                        "valid_ndcg@10": 0.02}],
            "split": {"user_id": [], "valid_item": [], "test_user_id": [], "test_item": []},
            "test_ours": {"hit@10": 0.05, "ndcg@10": 0.02, "mrr@10": 0.01}}
    (tmp_path / "recbole_sasrec.json").write_text(json.dumps(peer))
    out = bench_sequence(recbole_dir=tmp_path, models=("sasrec",), max_epochs=2, n_boot=20, num_threads=1, verbose=True)
    r = out["models"]["sasrec"]
    assert r["epochs_run"] == 2 and set(out["baselines"]) == {"popularity", "co-occurrence"}
    t = r["time_to_recbole_sasrec_s"]
    assert np.isnan(t) or r["ratio_vs_recbole_sasrec"] == pytest.approx(101.0 / t)


# ---- sampled losses, schedules, block scoring ----------------------------------------------------------------------

@pytest.mark.parametrize("kw", [dict(loss="sampled", n_negatives=8), dict(loss="sampled", n_negatives=8, negatives="popularity")])
def test_sampled_losses_learn_the_cycle(plant1, kw):
    m = SASRec(**{**FAST, "embedding_size": 32, **kw}).fit(plant1, options=OPTS)
    hr1 = evaluate_sequences(m, plant1.test, k=(1,), metrics=("hit",), n_boot=0)["value"].iloc[0]
    assert hr1 >= 0.9, (kw, hr1)


def test_default_loss_is_full_cross_entropy(sas, plant):
    "The summed-then-divided loss equals the full-catalogue mean cross-entropy + behaviour term of the original loop."
    import torch.nn.functional as F
    X, B, Y, YB = training_windows(plant.train, sas.max_len)
    net = sas.net_
    table = net.emb.table()
    h = net(X, B, table)
    m = Y > 0
    want = F.cross_entropy(h[m] @ table[1:].T, Y[m] - 1) + sas.behavior_weight * F.cross_entropy(net.beh_head(h[m]), YB[m])
    torch.manual_seed(0)
    got = sas._loss(net, X, B, Y, YB)
    assert torch.allclose(got, want, rtol=1e-5), (got, want)


def test_sampled_negatives_follow_popularity():
    "Popularity negatives are drawn in proportion to training frequency; log q is their log-share."
    m = SASRec(loss="sampled", n_negatives=3, negatives="popularity")
    Y = torch.tensor([[1, 1, 1, 2, 0], [3, 3, 3, 3, 3]])          # shares 3/9, 1/9, 5/9 for items 1..3, item 4 never
    m._init_negatives(Y, 4)
    d = np.bincount(torch.cat([m._draw_negatives() for _ in range(5_000)]).numpy(), minlength=5)[1:] / 15_000
    np.testing.assert_allclose(d, [3 / 9, 1 / 9, 5 / 9, 0], atol=0.015)
    np.testing.assert_allclose(m._log_q[:3].numpy(), np.log([3 / 9, 1 / 9, 5 / 9]), rtol=1e-6)
    m2 = SASRec(loss="sampled", n_negatives=4)
    m2._init_negatives(Y, 4)
    assert m2._draw_negatives().tolist() == [1, 2, 3, 4] and not m2._log_q.any()   # every item: no sampling, no correction


@pytest.mark.parametrize("negatives", ["uniform", "popularity"])
def test_sampled_softmax_denominator_estimates_the_full_one(negatives):
    """Known answer of the log-Q correction: with the target's logit as is and each negative's lowered by log(m q), the
    sampled softmax's denominator exp(loss + s_target) averages over draws to the full partition function sum_i exp(s_i)."""
    g = torch.Generator().manual_seed(3)
    n_items, d = 20, 4
    table = torch.cat([torch.zeros(1, d), torch.randn(n_items, d, generator=g)])   # row 0: padding
    hs, target = torch.randn(1, d, generator=g), torch.tensor([7])
    Y = torch.arange(1, n_items + 1).repeat_interleave(torch.arange(1, n_items + 1))[None]   # item i seen i times
    m = SASRec(loss="sampled", n_negatives=5, negatives=negatives)
    m._init_negatives(Y, n_items)
    s = (hs @ table[1:].T)[0]
    with torch.no_grad():
        den = torch.stack([torch.exp(m._item_loss(hs, target, table) + s[6]) for _ in range(6_000)])
    assert float(den.mean()) == pytest.approx(float(torch.exp(s).sum()), rel=0.03)


def test_cosine_schedule_warms_up_and_decays():
    f = SASRec(lr_schedule="cosine", warmup_epochs=1, max_epochs=3)._lr_factor(10)
    assert [round(f(s), 3) for s in (0, 4, 9)] == [0.1, 0.5, 1.0]
    assert f(20) == pytest.approx(0.5, abs=0.01) and f(29) == pytest.approx(0.0, abs=0.01)
    assert SASRec()._lr_factor(10)(5) == 1.0


@pytest.mark.parametrize("kw,msg", [(dict(loss="bpr"), "loss must be"), (dict(negatives="zipf"), "negatives must be"),
                                    (dict(gbce_t=2.0), "gbce_t"), (dict(lr_schedule="step"), "lr_schedule must be"),
                                    (dict(weight_average=1.5), "weight_average"), (dict(label_smoothing=1.0), "label_smoothing"),
                                    (dict(loss="sampled", label_smoothing=0.1), "loss='ce' only")])
def test_bad_loss_options_are_refused(plant, kw, msg):
    with pytest.raises(DataError, match=msg):
        SASRec(**FAST, **kw).fit(plant, options=OPTS)


def test_bert4rec_scores_from_a_mask_after_the_history(plant):
    "BERT4Rec's state for a sequence is the state at a [mask] placed after its last event, with both directions of attention."
    m = BERT4Rec(**{**FAST, "max_epochs": 1}).fit(plant, options=OPTS)
    x, b, n = pad_sequences(plant.test, m.max_len, np.arange(3))
    full = torch.cat([x, torch.zeros_like(x[:, :1])], 1)
    full[torch.arange(3), n] = m.catalog_.n_items + 1
    bb = torch.cat([b, torch.zeros_like(b[:, :1])], 1)
    with torch.no_grad():
        h = m.net_(full, bb)[torch.arange(3), n]
    assert torch.allclose(m._last_hidden(plant.test, np.arange(3)), h)
    assert torch.allclose(torch.from_numpy(m.score(plant.test)[:3]), h @ m.net_.emb.table()[1:].T, atol=1e-5)


def test_transformer_fields_have_one_home():
    "SASRec and BERT4Rec take n_layers/n_heads from TransformerRecommender: same defaults, same parameter order as before."
    from interest_migration.neural import TransformerRecommender
    base = ['embedding_size', 'n_layers', 'dropout', 'max_len', 'max_epochs', 'learning_rate', 'weight_decay', 'batch_size',
            'patience', 'exclude_seen', 'use_category', 'use_behavior', 'behavior_weight', 'seed', 'loss', 'n_negatives',
            'shared_negatives', 'negatives', 'gbce_t', 'lr_schedule', 'warmup_epochs', 'min_epochs', 'weight_average',
            'label_smoothing', 'n_heads']
    assert list(SASRec().get_params()) == base
    assert list(BERT4Rec().get_params()) == base + ["mask_prob"]
    for cls in (SASRec, BERT4Rec):
        assert issubclass(cls, TransformerRecommender)
        assert not {"n_layers", "n_heads"} & set(vars(cls).get("__annotations__", {}))
        assert (cls().n_layers, cls().n_heads) == (2, 2)
        with pytest.raises(DataError, match="n_heads=0 must divide embedding_size=16"):
            cls(embedding_size=16, n_heads=0).check_heads()
    with pytest.raises(TypeError):          # abstract: no build_net, no kind
        TransformerRecommender()


def test_max_batches_ends_each_epoch_early(plant):
    "RunOptions.max_batches: each epoch runs that many batches (the history says so), None runs them all."
    n_win = len(training_windows(plant.train, 12)[0])
    full = SASRec(**{**FAST, "max_epochs": 1}).fit(plant, options=OPTS)
    cut = SASRec(**{**FAST, "max_epochs": 2}).fit(plant, options=RunOptions(progress=False, num_threads=1, max_batches=2))
    assert full.history_["batches"].tolist() == [-(-n_win // 16)]
    assert cut.history_["batches"].tolist() == [2, 2]
    big = SASRec(**{**FAST, "max_epochs": 1}).fit(plant, options=RunOptions(progress=False, num_threads=1, max_batches=10**6))
    assert big.history_["batches"].tolist() == full.history_["batches"].tolist()
    assert np.allclose(big.score(plant.test), full.score(plant.test))      # a cap above the epoch changes nothing


def test_min_epochs_holds_patience_back(plant):
    "With a zero learning rate validation never improves: patience 1 stops at epoch 2, unless min_epochs holds it to 4."
    kw = {**FAST, "learning_rate": 0.0, "patience": 1, "max_epochs": 6}
    early = SASRec(**kw).fit(plant, options=OPTS)
    held = SASRec(**kw, min_epochs=4).fit(plant, options=OPTS)
    assert early.history_["epoch"].tolist() == [1, 2]
    assert held.history_["epoch"].tolist() == [1, 2, 3, 4]
    assert held.history_["valid_ndcg@10"].nunique() == 1      # nothing learnt: the stop is patience's, not a plateau of luck


# ---- weight averaging, label smoothing, per-position negatives -----------------------------------------------------

def test_weight_average_keeps_the_hand_computed_ema(plant):
    """Known answer: after 2 steps at decay d the kept weights are d w1 + (1 - d) w2, where w1, w2 are the plain run's
    weights after 1 and 2 steps (the first update copies); decay 1 keeps w1; the validated NDCG@10 is the average's."""
    from interest_migration.sequence import per_user_metric
    kw = {**FAST, "max_epochs": 1}
    def fit(steps, **more):
        return SASRec(**kw, **more).fit(plant, options=RunOptions(progress=False, num_threads=1, max_batches=steps))
    w1, w2 = (fit(s).net_.state_dict() for s in (1, 2))
    ema = fit(2, weight_average=0.25)
    for k, v in ema.net_.state_dict().items():
        if v.is_floating_point():
            assert torch.allclose(v, 0.25 * w1[k] + 0.75 * w2[k], atol=1e-6), k
    assert all(torch.equal(v, w1[k]) for k, v in fit(2, weight_average=1.0).net_.state_dict().items())
    assert not all(torch.equal(v, w2[k]) for k, v in ema.net_.state_dict().items())
    assert ema.history_["valid_ndcg@10"].iloc[0] == pytest.approx(per_user_metric(ema, plant.valid, "ndcg", 10).mean(), abs=1e-9)


def test_label_smoothing_is_the_smoothed_cross_entropy():
    "Known answer: with smoothing eps the summed loss is sum_n (1 - eps) (-log p_target) + eps mean_i (-log p_i)."
    g = torch.Generator().manual_seed(0)
    table, hs, target = torch.randn(11, 4, generator=g), torch.randn(3, 4, generator=g), torch.tensor([1, 5, 10])
    logp = torch.log_softmax(hs @ table[1:].T, -1)
    want = ((1 - 0.2) * -logp[torch.arange(3), target - 1] + 0.2 * -logp.mean(-1)).sum()
    assert torch.allclose(SASRec(label_smoothing=0.2)._item_loss(hs, target, table), want, atol=1e-5)
    assert torch.allclose(SASRec()._item_loss(hs, target, table), -logp[torch.arange(3), target - 1].sum(), atol=1e-5)


def test_per_position_negatives_are_each_positions_own():
    """shared_negatives=False draws (positions, m) negatives from q; the loss over them is, row by row, the shared-draw
    loss of that row's negatives; and the log-Q estimate of the partition function stays unbiased."""
    from interest_migration.neural import sampled_softmax_loss
    m = SASRec(loss="sampled", n_negatives=3, negatives="popularity", shared_negatives=False)
    Y = torch.tensor([[1, 1, 1, 2, 0], [3, 3, 3, 3, 3]])          # shares 3/9, 1/9, 5/9 for items 1..3
    m._init_negatives(Y, 4)
    d = m._draw_negatives(5_000)
    assert d.shape == (5_000, 3)
    np.testing.assert_allclose(np.bincount(d.flatten().numpy(), minlength=5)[1:] / 15_000, [3 / 9, 1 / 9, 5 / 9, 0], atol=0.015)
    g = torch.Generator().manual_seed(1)
    h, pos, neg, lq = (torch.randn(*s, generator=g) for s in ((4, 3), (4, 3), (4, 5, 3), (4, 5)))
    hit = torch.rand(4, 5, generator=g) < 0.2
    rows = [sampled_softmax_loss(h[i:i + 1], pos[i:i + 1], neg[i], torch.zeros(1), lq[i], hit[i:i + 1], reduction="sum")
            for i in range(4)]
    assert torch.allclose(sampled_softmax_loss(h, pos, neg, torch.zeros(4), lq, hit, reduction="sum"), torch.stack(rows).sum())
    n_items = 20
    table = torch.cat([torch.zeros(1, 4), torch.randn(n_items, 4, generator=g)])
    hs, target = torch.randn(1, 4, generator=g), torch.tensor([7])
    mp = SASRec(loss="sampled", n_negatives=5, negatives="popularity", shared_negatives=False)
    mp._init_negatives(torch.arange(1, n_items + 1).repeat_interleave(torch.arange(1, n_items + 1))[None], n_items)
    s = (hs @ table[1:].T)[0]
    with torch.no_grad():          # one position per call: each call draws that position's own (1, 5) negatives
        den = torch.stack([torch.exp(mp._item_loss(hs, target, table) + s[6]) for _ in range(6_000)])
    assert float(den.mean()) == pytest.approx(float(torch.exp(s).sum()), rel=0.03)


def test_per_position_sampled_softmax_learns_the_cycle(plant1):
    m = SASRec(**{**FAST, "embedding_size": 32, "loss": "sampled", "n_negatives": 8, "shared_negatives": False}).fit(plant1, options=OPTS)
    hr1 = evaluate_sequences(m, plant1.test, k=(1,), metrics=("hit",), n_boot=0)["value"].iloc[0]
    assert hr1 >= 0.9, hr1


def test_gbce_learns_the_cycle_with_negatives_per_position(plant1):
    """gSASRec draws negatives per position. So drawn, plain BCE (t = 0) and gBCE learn the planted cycle; one draw shared by
    every position of a step does not: the scores fall together (to about the log-odds of 1/30) and the target ranks at chance."""
    kw = {**FAST, "embedding_size": 32, "loss": "gbce", "behavior_weight": 0.0}
    def hr1(**more):
        m = SASRec(**kw, **more).fit(plant1, options=OPTS)
        return evaluate_sequences(m, plant1.test, k=(1,), metrics=("hit",), n_boot=0)["value"].iloc[0]
    assert hr1(n_negatives=1, gbce_t=0.0, shared_negatives=False) >= 0.9
    assert hr1(n_negatives=4, gbce_t=0.75, shared_negatives=False) >= 0.9
    assert hr1(n_negatives=1, gbce_t=0.0, shared_negatives=True) <= 0.2
