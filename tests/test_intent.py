"Checks of interest_migration.intent on the real data sets' file layouts."
from interest_migration.readers import read_retailrocket, read_taobao
from interest_migration.intent import purchase_intent_dataset


def test_purchase_intent_on_taobao_layout(tmp_path):
    "A UserBehavior.csv written in Taobao's own layout goes through the data reader into purchase intent rows."
    rows = []
    for u in range(1, 21):
        for k in range(10):
            t = 1_511_500_000 + u * 1000 + k * 7200
            item = 100 + (u + k) % 7
            rows.append(f"{u},{item},{item % 3},pv,{t}")
            if k % 4 == 0:
                rows.append(f"{u},{item},{item % 3},buy,{t + 600}")
    f = tmp_path / "UserBehavior.csv"
    f.write_text("\n".join(rows) + "\n")
    ds = read_taobao(f)
    d = purchase_intent_dataset(ds.events, ds.items, horizon="1h", test_frac=0.3)
    assert set(d.meta.split) == {"train", "test"}
    assert d.y.sum() > 0 and d.X["user_views"].notna().all()
    assert d.report["dropped_censored_at_log_end"] >= 1


def test_purchase_intent_on_retailrocket_layout(tmp_path):
    ev = ["timestamp,visitorid,event,itemid,transactionid"]
    for v in range(1, 11):
        for k in range(6):
            t = 1_433_221_332_000 + v * 100_000 + k * 3_600_000
            ev.append(f"{t},{v},view,{k % 4},")
            if k % 3 == 0:
                ev.append(f"{t + 60_000},{v},transaction,{k % 4},{v * 10 + k}")
    (tmp_path / "events.csv").write_text("\n".join(ev) + "\n")
    props = ["timestamp,itemid,property,value"] + [f"1433221332000,{i},categoryid,{i % 2}" for i in range(4)]
    (tmp_path / "item_properties_part1.csv").write_text("\n".join(props) + "\n")
    ds = read_retailrocket(tmp_path / "events.csv", properties=tmp_path / "item_properties_part1.csv")
    d = purchase_intent_dataset(ds.events, ds.items, horizon="10min", test_frac=0.3)
    assert len(d.X) > 0 and d.y.isin([0, 1]).all()
