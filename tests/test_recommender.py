"The recommender contract and its verified model folders (#15 item 2, #16 item 1): every way a model file goes wrong is refused in one line."
import hashlib
import json
import logging
import os
import pickle
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from interest_migration.data import DataError, load_movielens_100k, temporal_split
from interest_migration.recommender import (
    FORMAT_VERSION, RECOMMENDERS, ModelFileError, Recommender, catalogue_fingerprint, check_catalogue, data_summary,
    evaluate_recommender, file_sha256, make_manifest, read_manifest, tensors_sha256, write_manifest)
from interest_migration.sequence import CoOccurrence, Popularity, RunOptions, planted_log, sequence_split
from interest_migration.neural import GRU4Rec, SASRec

OPTS = RunOptions(progress=False, num_threads=1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    log = planted_log(n_users=40, n_items=20, length=8, seed=1)
    items = pd.DataFrame({"item_id": np.arange(1, 21), "category": [f"c{i % 3}" for i in range(20)]})
    sp = sequence_split(log, items)
    m = SASRec(embedding_size=16, max_len=8, max_epochs=2, batch_size=16).fit(sp, options=OPTS)
    folder = m.save(tmp_path_factory.mktemp("models") / "sas")
    return m, folder, log, sp


@pytest.fixture
def folder(trained, tmp_path):
    "A private copy of the saved model folder, free to spoil."
    dst = tmp_path / "model"
    shutil.copytree(trained[1], dst)
    return dst


def refused(fn, match):
    "The call raises a one-line ModelFileError matching `match`."
    with pytest.raises(ModelFileError, match=match) as e:
        fn()
    assert "\n" not in str(e.value)
    return str(e.value)


def resign(folder, state):
    "Write `state` as weights.pt with a manifest whose digests and shapes agree (a well-formed file of the wrong content)."
    torch.save(state, folder / "weights.pt")
    man = json.loads((folder / "manifest.json").read_text())
    man["state"]["tensors_sha256"] = tensors_sha256(state)
    man["state"]["shapes"] = {k: list(v.shape) for k, v in state.items()}
    write_manifest(folder, man, files=["weights.pt"])


# ---- the manifest ------------------------------------------------------------------------------------------------

def test_manifest_holds_what_15_asks(trained):
    m, folder, log, sp = trained
    man = read_manifest(folder)
    assert man["format_version"] == FORMAT_VERSION and man["library"] == "interest_migration" and man["library_version"]
    assert man["kind"] == "sasrec" and man["params"] == json.loads(json.dumps(m.get_params()))
    assert man["catalogue"]["fingerprint"] == catalogue_fingerprint(m.item_ids_)
    assert man["catalogue"]["categories_fingerprint"] == catalogue_fingerprint(m.item_ids_, m._categories())
    assert man["files"]["weights.pt"]["sha256"] == hashlib.sha256((folder / "weights.pt").read_bytes()).hexdigest()
    assert man["data"]["n_events"] == len(sp.train.items) and man["data"]["first"] is not None
    assert man["state"]["tensors_sha256"] == tensors_sha256(m._state())


def test_round_trip_is_exact(trained):
    m, folder, log, sp = trained
    again = Recommender.load(folder)
    # the registry's class of that kind: the package's SASRec, or the same class re-defined by a notebook run in this process
    assert type(again).__qualname__ == "SASRec" and again.kind == SASRec.kind and again.get_params() == m.get_params()
    assert np.array_equal(again.score(sp.test), m.score(sp.test))
    assert again.recommend(log, k=5).equals(m.recommend(log, k=5))


def test_known_answer_digests(tmp_path):
    assert catalogue_fingerprint([1, 2, 3]) == "14c5e74c4b96ccef41cd94db73a9ec3348038ac094feca4fd897cecffa07cdae"
    assert tensors_sha256({"a": np.array([1, 2], np.int32)}) == \
        "9ff29fbbf6021a9b99db57062525254e5e226e64068a38284a04f1fecd341ca7"
    (tmp_path / "f").write_bytes(b"hello\n")
    assert file_sha256(tmp_path / "f") == "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"


# ---- each way a model file goes wrong -------------------------------------------------------------------------------

def test_truncated_file_is_refused(folder):
    w = folder / "weights.pt"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    refused(lambda: SASRec.load(folder), "truncated or replaced")


def test_2000_flipped_bytes_are_refused(folder):
    w = folder / "weights.pt"
    raw = bytearray(w.read_bytes())
    for i in np.random.default_rng(0).choice(len(raw), 2000, replace=False):
        raw[i] ^= 0xFF
    w.write_bytes(bytes(raw))
    refused(lambda: SASRec.load(folder), "SHA-256 differs")


def test_one_flipped_bit_is_refused(folder):
    w = folder / "weights.pt"
    raw = bytearray(w.read_bytes()); raw[len(raw) // 3] ^= 0x01
    w.write_bytes(bytes(raw))
    refused(lambda: Recommender.load(folder), "SHA-256 differs")


def test_wrong_shaped_weights_are_refused(folder):
    state = torch.load(folder / "weights.pt", weights_only=True)
    key = "net.emb.item.weight"
    state[key] = torch.zeros(state[key].shape[0] + 5, state[key].shape[1])
    resign(folder, state)
    msg = refused(lambda: SASRec.load(folder), "wrong shape")
    assert key in msg


def test_missing_keys_are_refused(folder):
    state = torch.load(folder / "weights.pt", weights_only=True)
    del state["net.norm.weight"]
    resign(folder, state)
    refused(lambda: SASRec.load(folder), r"missing \['net.norm.weight'\]")


def test_content_changed_behind_the_manifest_is_refused(folder):
    "A re-saved file listed with its new file digest but the old tensor digest: the tensors' own digest catches it."
    state = torch.load(folder / "weights.pt", weights_only=True)
    state["net.norm.bias"] = state["net.norm.bias"] + 1
    torch.save(state, folder / "weights.pt")
    man = json.loads((folder / "manifest.json").read_text())
    write_manifest(folder, man, files=["weights.pt"])
    refused(lambda: SASRec.load(folder), "tensor content differs")


def test_malicious_pickle_is_refused_and_runs_nothing(folder, tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))
    with open(folder / "weights.pt", "wb") as f:
        pickle.dump({"net.x": Evil()}, f)
    man = json.loads((folder / "manifest.json").read_text())
    write_manifest(folder, man, files=["weights.pt"])   # digests agree: only weights_only stands in the way
    refused(lambda: SASRec.load(folder), "cannot be read as a pt state")
    assert not marker.exists()


def test_newer_format_and_missing_manifest_are_refused(folder, tmp_path):
    man = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps(dict(man, format_version=FORMAT_VERSION + 1)))
    refused(lambda: SASRec.load(folder), "newer than this library reads")
    (folder / "manifest.json").unlink()
    refused(lambda: SASRec.load(folder), "no manifest.json")
    (tmp_path / "file.pt").write_bytes(b"not a model")
    refused(lambda: Recommender.load(tmp_path / "file.pt"), "no manifest.json")


def test_tampered_catalogue_and_wrong_kind_are_refused(folder):
    refused(lambda: GRU4Rec.load(folder), "holds a 'sasrec' model")
    refused(lambda: Popularity.load(folder), "holds a 'sasrec' model")
    man = json.loads((folder / "manifest.json").read_text())
    man["catalogue"]["item_ids"][0] = 999
    (folder / "manifest.json").write_text(json.dumps(man))
    refused(lambda: SASRec.load(folder), "do not match its fingerprint")


# ---- a model on a log from another catalogue ------------------------------------------------------------------------

def test_mismatched_catalogue_says_how_many_items_differ(trained, caplog):
    m, folder, log, sp = trained
    other = log.copy()
    other["item_id"] = np.where(other["item_id"] > 15, other["item_id"] + 1000, other["item_id"])
    n_bad = int((other["item_id"] > 1000).sum())
    msg = refused(lambda: m.recommend(other, k=3), "5 of the log's 20 distinct items")
    assert f"({n_bad} of {len(other)} rows)" in msg and "catalogue of 20 items" in msg
    refused(lambda: check_catalogue(read_manifest(folder), other["item_id"]), "5 of the log's 20 distinct items")
    with caplog.at_level(logging.WARNING, logger="interest_migration"):
        rec = m.recommend(other, k=3, unknown="exclude")
    assert "5 of the log's 20 distinct items" in caplog.text and "excluded" in caplog.text
    assert rec.user_id.nunique() == other.user_id.nunique()              # users keep their rows
    mask = check_catalogue(m, other["item_id"], unknown="exclude")
    assert (~mask).sum() == n_bad
    with pytest.raises(DataError, match="'error' or 'exclude'"):
        check_catalogue(m, other["item_id"], unknown="skip")


# ---- baselines and the one evaluation -------------------------------------------------------------------------------

def test_baselines_round_trip_and_cooccurrence_indices_checked(trained, tmp_path):
    _, _, log, sp = trained
    for cls in (Popularity, CoOccurrence):
        m = cls().fit(sp)
        again = Recommender.load(m.save(tmp_path / cls.kind))
        assert again.recommend(log, k=4).equals(m.recommend(log, k=4))
    f = tmp_path / "cooccurrence"
    state = torch.load(f / "weights.pt", weights_only=True)
    state["counts.indices"] = state["counts.indices"] + 10_000
    resign(f, state)
    refused(lambda: Recommender.load(f), "out of range")


def test_registry_has_every_contract_model():
    for key in ("popularity", "cooccurrence", "sasrec", "gru4rec", "lstmrec"):
        assert issubclass(RECOMMENDERS[key], Recommender)


def test_evaluate_recommender_matches_a_direct_count():
    ml = load_movielens_100k()
    sp = temporal_split(ml.events, test_frac=0.2)
    pop = Popularity().fit(sp.train)
    res = evaluate_recommender(pop, sp.train, sp.test, k=(10,), metrics=("hit",), n_boot=0).set_index("metric")
    # direct count: users with history whose top-10 (history removed) holds a reachable test item
    hist = sp.train[sp.train.user_id.isin(sp.test.user_id)]
    top = pop.recommend(hist, k=10)
    pairs = sp.test[["user_id", "item_id"]].drop_duplicates()
    pairs = pairs[pairs.item_id.isin(pop.item_ids_) & pairs.user_id.isin(hist.user_id)]
    seen = hist[["user_id", "item_id"]].drop_duplicates().assign(seen=True)
    pairs = pairs.merge(seen, how="left", on=["user_id", "item_id"]).query("seen != True")
    hits = top.merge(pairs, on=["user_id", "item_id"]).user_id.nunique()
    assert res.loc["hit", "value"] == pytest.approx(hits / pairs.user_id.nunique(), abs=1e-12)
    assert res.attrs["n_truth_outside_catalogue"] == int((~sp.test.item_id.isin(pop.item_ids_)
                                                          & sp.test.user_id.isin(hist.user_id)).sum())
