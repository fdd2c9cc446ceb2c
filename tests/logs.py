"Tiny hand-written logs shared by the tests."
import numpy as np
import pandas as pd

from interest_migration.data import BEHAVIORS

T0 = pd.Timestamp("2026-01-01", tz="UTC")


def make_log(rows):
    "A contract log from (user, item, hours since T0, behavior index) tuples."
    u, i, h, b = (np.array(x) for x in zip(*rows))
    return pd.DataFrame({"user_id": u.astype("int64"), "item_id": i.astype("int64"),
                         "timestamp": T0 + pd.to_timedelta(h, unit="h"),
                         "behavior": pd.Categorical.from_codes(b, categories=list(BEHAVIORS))})
