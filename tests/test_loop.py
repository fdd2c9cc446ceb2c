"Tests of interest_migration.loop: the feedback loop's control world (migrating_share) and its paired difference."
import numpy as np
import pytest

import interest_migration.loop as loop_mod
from interest_migration.data import DataError
from interest_migration.loop import run_feedback_loop
from interest_migration.simulate import simulate_log

TINY = dict(seed=1, n_users=40, n_items=30, n_categories=3, n_events=1_200, days=8, loop_days=2,
            max_epochs=1, max_len=6, embedding_size=8)


@pytest.fixture(scope="module")
def control():
    return run_feedback_loop(migrating_share=0.0, **TINY)


def test_control_world_has_no_migrations_and_both_curves(control):
    # planted truth: the world the loop ran in has no migrating user (it would have 80% if the parameter were ignored)
    assert control.attrs["n_migrations"] == 0
    assert len(simulate_log(n_users=40, n_items=30, n_categories=3, n_events=1_200, days=8, seed=1,
                            migrating_share=0.8).truth.migrations) > 0
    assert sorted(control["model"].unique()) == ["frozen", "loop"]
    assert control.groupby("model").size().tolist() == [2, 2]
    assert (control["migrating_share"] == 0.0).all()
    assert (control["users"] > 0).all() and control["ndcg"].between(0, 1).all()
    d0 = control[control.day == 0].set_index("model")["ndcg"]
    assert d0["loop"] == pytest.approx(d0["frozen"], abs=1e-12)      # day 0: both serve the same folder


def test_paired_difference_columns(control):
    # known answer on day 0: same folder for both models, so every paired difference is 0 and so is its interval
    day0 = control[control.day == 0]
    assert np.allclose(day0[["diff", "diff_low", "diff_high"]].to_numpy(), 0.0)
    # each day's diff is the paired mean over the same users, so within the two models' NDCG spread
    for _, g in control.groupby("day"):
        assert g["diff_low"].iloc[0] <= g["diff"].iloc[0] <= g["diff_high"].iloc[0]
        assert g["diff"].nunique() == 1


def test_migrating_share_reaches_the_simulator(monkeypatch):
    seen = {}

    def spy(**kw):
        seen.update(kw)
        raise DataError("stop after the simulator call")

    monkeypatch.setattr(loop_mod, "simulate_log", spy)
    for share in (0.0, 0.35):
        with pytest.raises(DataError, match="stop after"):
            run_feedback_loop(migrating_share=share, **TINY)
        assert seen["migrating_share"] == share
