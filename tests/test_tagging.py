"Tagging beyond the notebook: the Chinese path on a tiny random BERT, encoder invariances, thresholds, the scikit-learn contract, user tags, the bench."
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import f1_score
from sklearn.model_selection import GridSearchCV

from interest_migration.data import BEHAVIORS, load_movielens_100k
from interest_migration.simulate import simulate_log
from interest_migration.profiles import interest_profile
from interest_migration.encoders import TextEncoder, check_model_folder, tiny_bert_folder
from interest_migration.tagging import (
    FineTunedBertTagger, LinearProbeTagger, MajorityTagger, TfidfTagger,
    cross_val_tag_proba, evaluate_taggers, tag_matrix, tag_thresholds, tagging_data,
    top_user_tags, user_tags, _rescale)
from interest_migration.bench import bench_tagging

ZH_TITLES = ["霸王别姬", "卧虎藏龙", "大话西游之大圣娶亲", "无间道", "英雄", "功夫", "让子弹飞", "流浪地球", "战狼",
             "哪吒之魔童降世", "我不是药神", "疯狂的石头", "唐人街探案", "西虹市首富", "你好，李焕英", "少林足球"]
ZH_TAGS = [["剧情", "爱情"], ["动作", "武侠"], ["喜剧", "爱情"], ["犯罪", "剧情"], ["动作", "武侠"], ["喜剧", "动作"],
           ["喜剧", "动作"], ["科幻"], ["动作"], ["动画"], ["剧情", "喜剧"], ["喜剧", "犯罪"], ["喜剧", "犯罪"], ["喜剧"],
           ["喜剧", "剧情"], ["喜剧", "动作"]]


@pytest.fixture(scope="module")
def zh_bert(tmp_path_factory):
    "A tiny randomly initialised BertModel with a small Chinese vocabulary, built by hand in a temp folder (no download)."
    from transformers import BertConfig, BertModel, BertTokenizerFast
    folder = tmp_path_factory.mktemp("tiny-bert-chinese")
    chars = sorted(set("".join(ZH_TITLES)) | {chr(c) for c in range(0x4E00, 0x4E00 + 300)})
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars) + "\n",
                                      encoding="utf-8")
    BertTokenizerFast(str(folder / "vocab.txt")).save_pretrained(str(folder))
    config = BertConfig(vocab_size=5 + len(chars), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(str(folder))
    return folder


def _padded_reference(encoder, texts):
    "The plain computation: one padded batch, attention mask, masked mean, L2 norm."
    b = encoder.tokenizer_(list(texts), padding=True, truncation=True, max_length=encoder.max_length_, return_tensors="pt")
    with torch.no_grad():
        h = encoder.model_(**b).last_hidden_state
    m = b["attention_mask"].unsqueeze(-1).float()
    return torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=1).numpy()


# ---------------------------------------------------------------- the Chinese path
def test_chinese_encoder_matches_padded_reference(zh_bert):
    enc = TextEncoder(model_path=zh_bert)
    E = enc.encode(ZH_TITLES)
    assert E.shape == (len(ZH_TITLES), 32)
    np.testing.assert_allclose(E, _padded_reference(enc, ZH_TITLES), atol=1e-5)
    ids = enc.tokenizer_(["霸王别姬"])["input_ids"][0]
    assert enc.tokenizer_.convert_ids_to_tokens(ids) == ["[CLS]", "霸", "王", "别", "姬", "[SEP]"]
    assert enc.last_report_["truncated"] == 0


def test_chinese_taggers_same_api(zh_bert):
    probe = LinearProbeTagger(TextEncoder(model_path=zh_bert), C=10.0, tune=None).fit(ZH_TITLES, ZH_TAGS)
    tags = sorted({t for ts in ZH_TAGS for t in ts})
    assert list(probe.classes_) == tags
    # the training titles are learnt, and decoded through the label map into Chinese tag names
    assert probe.predict_tags(ZH_TITLES) == [sorted(t) for t in ZH_TAGS]
    top = probe.top_k(["霸王别姬"], k=2)
    assert set(top.iloc[0][["tag_1", "tag_2"]]) == {"剧情", "爱情"}
    ft = FineTunedBertTagger(model_path=zh_bert, max_steps=3, batch_size=8, tune=None).fit(ZH_TITLES, ZH_TAGS)
    P = ft.predict_proba(["英雄本色", "功夫熊猫"])
    assert P.shape == (2, len(tags)) and np.all((P > 0) & (P < 1))
    assert all(t in tags for ts in ft.predict_tags(ZH_TITLES) for t in ts)


def test_tiny_bert_folder_helper(tmp_path):
    path = tiny_bert_folder(tmp_path / "m", "猫狗鱼鸟")
    enc = TextEncoder(model_path=path)
    E = enc.encode(["猫", "狗鱼", "鸟鸟鸟", "x"])       # "x" is not in the vocabulary: [UNK]
    np.testing.assert_allclose(E, _padded_reference(enc, ["猫", "狗鱼", "鸟鸟鸟", "x"]), atol=1e-5)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(alphabet="霸王别姬卧虎藏龙大话西游 ab", min_size=0, max_size=30), min_size=1, max_size=20),
       st.integers(1, 7))
def test_bucketing_equals_padding_any_batch(zh_bert, texts, batch_size):
    "Length-bucketed, mask-free batches give the padded computation, whatever the batch size, order or duplicates."
    enc = TextEncoder(model_path=zh_bert, batch_size=batch_size, cache=False, num_threads=1)
    E = enc.encode(texts)
    np.testing.assert_allclose(E, _padded_reference(enc, texts), atol=1e-5)
    perm = np.random.default_rng(0).permutation(len(texts))
    np.testing.assert_allclose(enc.encode([texts[i] for i in perm]), E[perm], atol=1e-5)


def test_truncation_is_reported(zh_bert):
    enc = TextEncoder(model_path=zh_bert, max_length=6)
    with pytest.warns(UserWarning, match="truncated"):
        enc.encode(["霸王别姬", "大话西游之大圣娶亲", "哪吒之魔童降世"])
    assert enc.last_report_["truncated"] == 2        # 9 and 7 characters + [CLS] [SEP] > 6 tokens


def test_cache_on_disk_and_shared(zh_bert, tmp_path):
    a = TextEncoder(model_path=zh_bert, cache_dir=tmp_path)
    E = a.encode(ZH_TITLES)
    b = TextEncoder(model_path=zh_bert, cache_dir=tmp_path)
    np.testing.assert_array_equal(b.encode(ZH_TITLES[::-1]), E[::-1])
    assert b.last_report_["encoded"] == 0
    assert len(list((tmp_path / a.cache_key_).glob("*.npz"))) == 1
    # another setting (CLS pooling) is another cache folder: never served the mean-pooled vectors
    c = TextEncoder(model_path=zh_bert, cache_dir=tmp_path, pooling="cls")
    c.encode(ZH_TITLES[:3])
    assert c.cache_key_ != a.cache_key_ and c.last_report_["encoded"] == 3


# ---------------------------------------------------------------- clear errors
def test_model_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        TextEncoder(model_path=tmp_path / "bert-base-chinese").encode(["x"])
    with pytest.raises(FileNotFoundError, match="no config.json"):
        check_model_folder(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "t5"}')
    with pytest.raises(ValueError, match="not a BERT-style encoder"):
        check_model_folder(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="no tokenizer files"):
        check_model_folder(tmp_path)
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(NotADirectoryError):
        check_model_folder(f)


def test_bad_texts(zh_bert):
    enc = TextEncoder(model_path=zh_bert)
    with pytest.raises(ValueError, match=r"position 1 \(index 'b'\)"):
        enc.encode(pd.Series(["猫", np.nan], index=["a", "b"]))
    with pytest.raises(TypeError, match="single str"):
        enc.encode("霸王别姬")


# ---------------------------------------------------------------- label map and thresholds
@given(st.lists(st.lists(st.sampled_from(list("abcdef")), max_size=4), min_size=1, max_size=30))
def test_tag_matrix_round_trip(rows):
    Y, names = tag_matrix(rows, tags=list("fedcba"))
    assert [set(names[np.flatnonzero(r)]) for r in Y] == [set(r) for r in rows]
    Y2, names2 = tag_matrix(pd.DataFrame(Y, columns=names), tags=list("abcdef"))
    np.testing.assert_array_equal(Y2, Y[:, ::-1])


def test_tag_matrix_errors():
    with pytest.raises(ValueError, match=r"y\[2\] has tag 'z'"):
        tag_matrix([["a"], ["b"], ["a", "z"]], tags=["a", "b"])
    with pytest.raises(ValueError, match="duplicated"):
        tag_matrix([["a"]], tags=["a", "a"])
    with pytest.raises(ValueError, match="0/1"):
        tag_matrix(np.array([[0, 2]]))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_per_tag_thresholds_are_f1_optimal(seed):
    rng = np.random.default_rng(seed)
    Y = (rng.random((40, 4)) < 0.3).astype(int)
    P = np.clip(Y * 0.3 + rng.random((40, 4)) * 0.7, 0, 1)
    grid = (0.1, 0.3, 0.5, 0.7, 0.9)
    thr, _ = tag_thresholds(Y, P, grid=grid)
    for j in range(4):
        if Y[:, j].sum() == 0:
            assert thr[j] == 0.5
            continue
        f1 = [f1_score(Y[:, j], P[:, j] >= t, zero_division=0) for t in grid]
        assert f1_score(Y[:, j], P[:, j] >= thr[j], zero_division=0) == pytest.approx(max(f1))
    # the rescaled probabilities reproduce the tuned decisions at 0.5, monotonically per tag
    R = _rescale(P, thr)
    np.testing.assert_array_equal(R >= 0.5, P >= thr)
    for j in range(4):
        o = np.argsort(P[:, j], kind="stable")
        assert np.all(np.diff(R[o, j]) >= 0)


# ---------------------------------------------------------------- the scikit-learn contract
def test_sklearn_contract_and_gridsearch():
    data = tagging_data(simulate_log(n_users=50, n_items=240, n_categories=4, n_events=500, seed=1).items,
                        "title", "category")
    X, y = data.part("train")
    Y = data.matrix("train")
    m = TfidfTagger(C=1.0, tags=list(data.tags))
    with pytest.raises(NotFittedError):
        m.predict(X[:2])
    c = clone(m)
    assert c.get_params() == m.get_params() and c is not m
    gs = GridSearchCV(TfidfTagger(tags=list(data.tags), tune=None), {"C": [0.1, 10.0]}, cv=3, scoring="f1_micro")
    gs.fit(X, Y)
    assert gs.best_params_["C"] in (0.1, 10.0) and gs.best_score_ > 0.8
    fitted = TfidfTagger(tags=list(data.tags)).fit(X, y, *data.part("val"))
    assert fitted.threshold_report_["method"] == "per_tag" and fitted.thresholds_.shape == (len(data.tags),)
    again = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(again.predict_proba(X[:10]), fitted.predict_proba(X[:10]))


def test_probe_pickles_without_the_model(zh_bert):
    probe = LinearProbeTagger(TextEncoder(model_path=zh_bert), C=10.0, tune=None).fit(ZH_TITLES, ZH_TAGS)
    blob = pickle.dumps(probe)
    again = pickle.loads(blob)
    assert not hasattr(again.encoder_, "model_")            # the encoder's weights stay out of the pickle
    np.testing.assert_allclose(again.predict_proba(ZH_TITLES), probe.predict_proba(ZH_TITLES), atol=1e-6)


def test_finetune_seeded_and_picklable(zh_bert):
    kw = dict(model_path=zh_bert, max_steps=4, batch_size=8, tune=None, seed=3, num_threads=1)
    a = FineTunedBertTagger(**kw).fit(ZH_TITLES, ZH_TAGS)
    b = FineTunedBertTagger(**kw).fit(ZH_TITLES, ZH_TAGS)
    np.testing.assert_allclose(a.predict_proba(ZH_TITLES), b.predict_proba(ZH_TITLES), atol=1e-6)
    c = pickle.loads(pickle.dumps(a))
    np.testing.assert_allclose(c.predict_proba(ZH_TITLES), a.predict_proba(ZH_TITLES), atol=1e-6)
    assert clone(a).get_params() == a.get_params()


def test_finetune_learns_planted_tags(zh_bert):
    "Planted truth: the tag is 'cat' iff the title contains 猫; a fine-tuned tiny BERT must learn it."
    rng = np.random.default_rng(0)
    pool = list("一丁七万丈三上下不与丐丑专且世丘丙业丛东丝")
    texts, tags = [], []
    for i in range(64):
        body = "".join(rng.choice(pool, rng.integers(2, 6)))
        cat = i % 2 == 0
        texts.append(body + ("猫" if cat else "狗"))
        tags.append(["cat"] if cat else ["dog"])
    path = tiny_bert_folder(zh_bert.parent / "planted", set("".join(texts)), seed=1)
    m = FineTunedBertTagger(model_path=path, max_epochs=15, batch_size=16, learning_rate=1e-3, tune=None, seed=0,
                            num_threads=1)
    m.fit(texts, tags)
    Y = tag_matrix(tags, m.classes_)[0]
    assert (m.predict(texts) == Y).mean() > 0.95


# ---------------------------------------------------------------- evaluation and user tags
def test_evaluate_planted_perfect_and_majority():
    class Oracle(MajorityTagger):
        def _proba(self, X):
            return tag_matrix(list(X), self.classes_)[0].astype(float) * 0.9 + 0.05
    texts = [["a"], ["b"], ["a", "b"], ["b"]] * 10
    o = Oracle(tags=["a", "b"], tune=None).fit(texts, texts)
    maj = MajorityTagger(tags=["a", "b"]).fit(texts, texts, texts, texts)
    ev = evaluate_taggers({"oracle": o, "majority": maj}, texts, texts, n_boot=50)
    t = ev.table.set_index(["model", "thresholds"])
    assert t.loc[("oracle", "fixed 0.5"), "f1_micro"] == 1.0
    # majority: b is in 3/4 of the rows, a in 1/2 -> tuned thresholds predict both for everyone
    assert t.loc[("majority", "tuned (per_tag)"), "f1_micro"] == pytest.approx(2 * 50 / (2 * 50 + 30))
    assert set(ev.gain.columns) >= {"f1_micro_gain", "gain_ci_low", "gain_ci_high"}


def test_cross_val_proba_is_out_of_fold():
    y = [["a"]] * 5 + [["b"]] * 5
    P = cross_val_tag_proba(MajorityTagger(), list(range(10)), y, n_splits=5, seed=0)
    from sklearn.model_selection import KFold
    for tr, te in KFold(5, shuffle=True, random_state=0).split(np.arange(10)):
        share_a = np.mean([y[i] == ["a"] for i in tr])
        np.testing.assert_allclose(P.iloc[te]["a"], share_a)


def _log(rows):
    u, i, d, b = zip(*rows)
    return pd.DataFrame({"user_id": np.array(u, "int64"), "item_id": np.array(i, "int64"),
                         "timestamp": pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(d, unit="D"),
                         "behavior": pd.Categorical(b, categories=BEHAVIORS)})


def test_user_tags_hand_computed():
    items = pd.DataFrame({"x": [1.0, 0.0, 0.5], "y": [0.0, 1.0, 0.5]}, index=pd.Index([10, 11, 12], name="item_id"))
    ev = _log([(1, 10, 0, "view"), (1, 11, 30, "view"), (2, 12, 30, "buy"), (2, 10, 40, "view")])
    ut = user_tags(ev, items, half_life="30D", at="2026-01-31")
    # user 1 at day 30: weights 2^-1 (day 0) and 1 (day 30) -> x = 0.5 / 1.5
    np.testing.assert_allclose(ut.loc[1].to_numpy(), [1 / 3, 2 / 3], atol=1e-9)
    # user 2: only the buy of day 30 counts (the day-40 view is after `at`)
    np.testing.assert_allclose(ut.loc[2].to_numpy(), [0.5, 0.5], atol=1e-12)
    assert ut.attrs["events_outside_windows"] == 1
    top = top_user_tags(ut, k=1)
    assert top.loc[1, "tag_1"] == "y"
    with pytest.raises(ValueError, match="no row in items"):
        user_tags(_log([(1, 99, 0, "view")]), items)


def test_user_tags_equal_interest_profile_on_simulator():
    sim = simulate_log(n_users=100, n_items=80, n_categories=5, n_events=3_000, seed=2)
    onehot = pd.get_dummies(sim.items.set_index("item_id")["category"]).astype(float)
    ut = user_tags(sim.events, onehot, half_life="14D")
    ip = interest_profile(sim.events, sim.items, half_life="14D")
    np.testing.assert_allclose(ut[ip.columns].to_numpy(), ip.to_numpy(), atol=1e-12)


# ---------------------------------------------------------------- the bench
def test_bench_embeddings_equal_sentence_transformers():
    pytest.importorskip("sentence_transformers")
    b = bench_tagging(n_texts=120, repeat=1, verbose=False, num_threads=1)
    assert b["equal_1e-5"] and b["max_abs_diff"] <= 1e-5
    assert b["n_texts"] == 120 and b["ours_texts_per_s"] > 0 and b["st_texts_per_s"] > 0


# ---------------------------------------------------------------- Chinese product titles (issue 23, item 9)
ZH_PRODUCTS = {
    "数码": ["华为蓝牙耳机无线降噪", "小米充电宝20000毫安", "苹果数据线快充", "索尼无线蓝牙音箱", "联想笔记本电脑轻薄本"],
    "服装": ["纯棉短袖T恤男", "女款真皮单肩包", "牛仔裤女高腰显瘦", "羊毛围巾冬季保暖", "休闲运动鞋男款"],
    "食品": ["有机绿茶250克", "进口黑巧克力礼盒", "云南小粒咖啡豆", "东北五常大米5公斤", "每日坚果零食大礼包"],
    "美妆": ["保湿面霜补水", "口红哑光持久", "玻尿酸精华液", "男士洗面奶控油", "香水淡香持久留香"],
}
ZH_HELD_OUT = {"降噪蓝牙耳机运动款": "数码", "无线快充充电器": "数码", "纯棉T恤女款": "服装", "冬季羊毛大衣": "服装",
               "云南普洱茶叶": "食品", "黑巧克力零食": "食品", "补水保湿精华": "美妆", "哑光口红正红色": "美妆"}


def test_chinese_product_titles_tagged_without_weights():
    "No registry package ships Chinese BERT weights: TF-IDF character n-grams tag real Chinese product titles meanwhile."
    X = [t for ts in ZH_PRODUCTS.values() for t in ts]
    y = [c for c, ts in ZH_PRODUCTS.items() for _ in ts]
    tagger = TfidfTagger(tune=None).fit(X, y)
    P = tagger.predict_proba(list(ZH_HELD_OUT))
    got = dict(zip(ZH_HELD_OUT, tagger.classes_[P.argmax(1)]))
    assert got == ZH_HELD_OUT
    assert set(tagger.classes_) == set(ZH_PRODUCTS)           # tag names in Chinese, through the label map


@pytest.mark.parametrize("missing, named", [
    (["config.json"], "config.json"),
    (["model.safetensors"], "model.safetensors"),
    (["vocab.txt", "tokenizer.json"], "vocab.txt"),
])
def test_chinese_folder_layout_names_the_missing_file(tmp_path, missing, named):
    "A user-supplied Chinese BERT folder with a file missing fails at once with an error that names the file."
    folder = tiny_bert_folder(tmp_path / "bert-base-chinese", set("".join(ZH_HELD_OUT)))
    assert check_model_folder(folder) == folder.resolve()      # the complete layout passes
    for f in missing:
        (folder / f).unlink()
    with pytest.raises(FileNotFoundError, match=named):
        check_model_folder(folder)
    with pytest.raises(FileNotFoundError, match=named):
        TextEncoder(model_path=folder).encode(["蓝牙耳机"])
