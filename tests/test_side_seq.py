"Side-feature sequence models: save/load round trip with exact ids, bad input, and known answers (degenerate side inputs = plain model, a brand-only world learned)."
import json

import numpy as np
import pandas as pd
import pytest

from interest_migration.data import DataError
from interest_migration.neural import GRU4Rec, SASRec
from interest_migration.recommender import ModelFileError, Recommender
from interest_migration.sequence import RunOptions, planted_log
from interest_migration.side_seq import (SideGRU4Rec, SideSASRec, SideSequences, planted_brand_log, side_comparison,
                                         side_split)

OPTS = RunOptions(progress=False, num_threads=1)
CFG = dict(max_epochs=2, embedding_size=16, max_len=10, seed=1)


def _world(string_ids: bool = False):
    "A small planted log with varying dwell, brands, prices and demographics (string ids on request)."
    ev = planted_log(n_users=60, n_items=30, length=10, seed=2)
    rng = np.random.default_rng(0)
    ev["value"] = np.round(rng.lognormal(3, 0.5, len(ev)), 1)
    items = pd.DataFrame({"item_id": np.arange(1, 31), "category": np.where(np.arange(30) % 3, "a", "b"),
                          "brand": [f"b{i % 4}" for i in range(30)], "price": rng.uniform(5, 50, 30).round(2)})
    users = pd.DataFrame({"user_id": np.arange(1, 61), "age": rng.integers(18, 70, 60), "gender": np.where(np.arange(60) % 2, "F", "M")})
    if string_ids:
        ev["user_id"], users["user_id"] = "u" + ev["user_id"].astype(str), "u" + users["user_id"].astype(str)
        ev["item_id"], items["item_id"] = "item-" + ev["item_id"].astype(str), "item-" + items["item_id"].astype(str)
    return ev, items, users


@pytest.mark.parametrize("klass", [SideSASRec, SideGRU4Rec])
@pytest.mark.parametrize("string_ids", [False, True])
def test_round_trip_exact_ids(tmp_path, klass, string_ids):
    ev, items, users = _world(string_ids)
    sp = side_split(ev, items, users, dwell_behaviors=("view", "cart", "buy"))
    m = klass(**CFG).fit(sp, options=OPTS)
    assert [v["col"] for v in m.side_["item"]] == ["price", "brand"] and len(m.side_["user"]) == 2
    assert m.side_["dwell"] is not None
    path = m.save(tmp_path / "m")
    back = Recommender.load(path, options=OPTS)
    assert type(back).__name__ == klass.__name__
    np.testing.assert_array_equal(back.score(sp.test), m.score(sp.test))
    r0, r1 = m.recommend(ev, k=5), back.recommend(ev, k=5)
    pd.testing.assert_frame_equal(r0, r1)
    assert set(r1["item_id"]) <= set(items["item_id"]) and set(r1["user_id"]) == set(ev["user_id"])
    assert r1["item_id"].dtype == ev["item_id"].dtype and r1["user_id"].dtype == ev["user_id"].dtype
    np.testing.assert_array_equal(back.user_ids_, m.user_ids_)
    # demographics of a user read from the fit-time table: the same scores from an event log as from the split
    np.testing.assert_allclose(m.score(ev.groupby("user_id").head(9)), m.score(sp.test), rtol=1e-5, atol=1e-6)


def test_tampered_side_state_refused(tmp_path):
    ev, items, users = _world()
    m = SideSASRec(**CFG).fit(side_split(ev, items, users), options=OPTS)
    path = m.save(tmp_path / "m")
    man = json.loads((path / "manifest.json").read_text())
    del man["state"]["fitted"]["side"]
    state = {k: v for k, v in __import__("torch").load(path / "weights.pt", weights_only=True).items()}
    with pytest.raises(ModelFileError, match="no valid 'side' vocabulary"):
        SideSASRec()._set_state(state, man)


def test_bad_side_input_named():
    ev, items, users = _world()
    bad = ev.astype({"value": object})
    bad.loc[5, "value"] = "long"
    with pytest.raises(DataError, match=r"events.value: 1 dwell value\(s\).*rows \[5\]"):
        side_split(bad, items, users, dwell_behaviors=("view", "cart", "buy"))
    sp = side_split(ev, items, users)
    with pytest.raises(DataError, match=r"users: missing column\(s\) \['occupation'\]"):
        SideSASRec(user_cols=("occupation",), **CFG).fit(sp, options=OPTS)
    with pytest.raises(DataError, match="takes a SideSplit"):
        SideSASRec(**CFG).fit(ev, options=OPTS)
    m = SideSASRec(**CFG).fit(sp, options=OPTS)
    with pytest.raises(DataError, match="not in the model's catalogue"):
        m.recommend(ev.assign(item_id=ev["item_id"] + 1000))


@pytest.mark.parametrize("base,klass", [(SASRec, SideSASRec), (GRU4Rec, SideGRU4Rec)])
def test_constant_side_inputs_equal_plain_model(base, klass):
    ev, items, users = _world()
    ev["value"] = 30.0
    sp = side_split(ev, items.assign(brand="one", price=9.99), users.assign(gender="F", age=40),
                    dwell_behaviors=("view", "cart", "buy"))
    plain = base(**CFG).fit(sp, options=OPTS)
    side = klass(**CFG).fit(sp, options=OPTS)
    assert side.side_["item"] == [] and side.side_["user"] == [] and side.side_["dwell"] is None
    np.testing.assert_array_equal(side.score(sp.test), plain.score(sp.test))


def test_equal_dwell_changes_nothing():
    ev, items, users = _world()
    ev["value"] = 7.5
    sp = side_split(ev, items, users, dwell_behaviors=("view", "cart", "buy"))
    a = SideSASRec(use_dwell=True, **CFG).fit(sp, options=OPTS)
    b = SideSASRec(use_dwell=False, **CFG).fit(sp, options=OPTS)
    assert a.side_["dwell"] is None and len(a.side_["item"]) == 2
    np.testing.assert_array_equal(a.score(sp.test), b.score(sp.test))


def test_dwell_reaches_the_scores():
    "Varying dwell is an input: changing one sequence's dwell changes its scores, and only its own."
    ev, items, users = _world()
    sp = side_split(ev, items, users, dwell_behaviors=("view", "cart", "buy"))
    m = SideSASRec(**CFG).fit(sp, options=OPTS)
    t = sp.test
    d = t.dwell.copy()
    d[t.offsets[0]:t.offsets[1]] = np.where(np.arange(t.lengths[0]) % 2, 1.0, 500.0)
    alt = SideSequences(t.user_id, t.items, t.behaviors, t.offsets, t.catalog, t.target, t.target_behavior, d, t.users)
    s0, s1 = m.score(t), m.score(alt)
    assert not np.allclose(s0[0], s1[0])
    np.testing.assert_array_equal(s0[1:], s1[1:])


def test_brand_only_world_is_learned():
    ev, items = planted_brand_log(n_users=400, n_items=2400, n_brands=120)
    sp = side_split(ev, items, dwell_col=None)
    cfg = dict(max_epochs=12, patience=5, embedding_size=32, max_len=10, seed=0)
    models = {"SASRec": SASRec(**cfg).fit(sp, options=OPTS),
              "side": SideSASRec(item_cols=("brand",), user_cols=(), **cfg).fit(sp, options=OPTS)}
    t = side_comparison(models, sp.test, "SASRec", n_boot=300).set_index("model")
    assert t.loc["side", "diff"] > 0.15
    assert float(t.loc["side", "diff CI"].strip("[]").split(",")[0]) > 0.1
    assert t.loc["side", "users"] == 400


def test_input_layer_is_the_sum_of_its_embeddings():
    "Known answer: each input position = item table row + behaviour + dwell bucket + each user feature, unpacked exactly."
    import torch
    from interest_migration.sequence import pad_sequences
    from interest_migration.side_seq import _dwell_codes
    ev, items, users = _world()
    sp = side_split(ev, items, users, dwell_behaviors=("view", "cart", "buy"))
    m = SideSASRec(**{**CFG, "max_epochs": 1}).fit(sp, options=OPTS)
    t = sp.test
    x, b, n = pad_sequences(m.as_sequences(t), 10)
    emb = m.net_.emb
    with torch.no_grad():
        got = emb(x, b)
        table = emb.table()
        # hand-built: the same events, their codes computed straight from the split (not from the packed code)
        xi, bi, _ = pad_sequences(t, 10)                      # plain behaviour codes
        dw_seq = t.__class__(t.user_id, _dwell_codes(t.dwell, len(t.items), m.side_["dwell"]), t.behaviors, t.offsets, t.catalog)
        dw, _, _ = pad_sequences(dw_seq, 10)                  # dwell codes in the items slot
        uc = torch.as_tensor(m._user_codes(t))                # (n_seq, 2) age band, gender
        want = table[xi] + emb.behavior(bi) + emb.side.dwell(dw)
        for j, e in enumerate(emb.side.user):
            want = want + e(uc[:, j])[:, None, :]
        want = want * (xi > 0).unsqueeze(-1) + table[xi] * (xi == 0).unsqueeze(-1)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    # the item table: item + category + price band + brand embeddings, row 0 zero
    ic = torch.as_tensor(m.item_codes_)
    want_t = emb.item.weight + emb.category(emb.item_category) + emb.side.item[0](ic[:, 0]) + emb.side.item[1](ic[:, 1])
    torch.testing.assert_close(table, want_t)
    assert float(table[0].abs().sum()) == 0.0
