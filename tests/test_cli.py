"The console script as a new user meets it: help on every command, one-line errors with status 2."
from pathlib import Path
import json
import subprocess
import sys

import pytest

EXE = str(Path(sys.executable).with_name("interest-migration"))


def run(*args, cwd=None):
    return subprocess.run([EXE, *args], capture_output=True, text=True, cwd=cwd, timeout=600)


@pytest.mark.parametrize("cmd", [[], ["summary"], ["demo"], ["bench"], ["profile"], ["predict"], ["tag"]])
def test_help(cmd):
    r = run(*cmd, "--help")
    assert r.returncode == 0 and "usage: interest-migration" in r.stdout


def _one_line_error(r, needle):
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_missing_file(tmp_path):
    _one_line_error(run("summary", "--data", str(tmp_path / "nope.csv")), "no such file")


def test_unknown_format_is_rejected_by_argparse(tmp_path):
    f = tmp_path / "log.csv"; f.write_text("1,2,3\n")
    r = run("summary", "--data", str(f), "--format", "parquetish")
    assert r.returncode == 2 and "invalid choice" in r.stderr and "Traceback" not in r.stderr


def test_unguessable_format(tmp_path):
    f = tmp_path / "log.csv"; f.write_text("1,2,3\n")
    _one_line_error(run("summary", "--data", str(f)), "--format")


def test_malformed_taobao_log(tmp_path):
    f = tmp_path / "UserBehavior.csv"
    f.write_text("1,10,100,pv,1511544070\n2,11,100,teleport,1511544071\n")
    _one_line_error(run("summary", "--data", str(f)), "behavior")


def test_malformed_retailrocket_log(tmp_path):
    f = tmp_path / "events.csv"
    f.write_text("timestamp,visitorid,event,itemid,transactionid\nyesterday,1,view,5,\n")
    _one_line_error(run("summary", "--data", str(f)), "timestamp")


def test_summary_of_a_taobao_file(tmp_path):
    f = tmp_path / "UserBehavior.csv"
    f.write_text("1,10,100,pv,1511544070\n1,10,100,buy,1511544090\n2,11,101,cart,1511544071\n")
    r = run("summary", "--data", str(f))
    assert r.returncode == 0, r.stderr
    assert "events" in r.stdout and " 3" in r.stdout


def test_demo_on_simulated_data(tmp_path):
    r = run("demo", "--data", "simulate", "--out", str(tmp_path / "rep"), "--quiet", "--sequence-epochs", "1")
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert m["summary"]["events"] > 0
    assert {r["strategy"] for r in m["transfer"]} == {"popularity", "segment", "shrinkage"}
    assert [r["model"] for r in m["next_item"]] == ["popularity", "co-occurrence", "sasrec"]
    assert (tmp_path / "rep" / "report.html").stat().st_size > 1000


def test_predict_on_simulated_data():
    r = run("predict", "--data", "simulate")
    assert r.returncode == 0, r.stderr
    assert {"popularity", "last_window", "logreg"} <= set(r.stdout.split())


def test_recommend_for_unknown_user_and_item(tmp_path):
    model = tmp_path / "m.pt"
    r = run("recommend", "--epochs", "1", "--save", str(model), "--users", "1", "2", "--k", "3")
    assert r.returncode == 0, r.stderr
    rows = [l.split() for l in r.stdout.splitlines() if l.split()[:1] in (["1"], ["2"])]
    assert len(rows) == 6 and model.exists()
    _one_line_error(run("recommend", "--load", str(model), "--users", "424242"), "424242")
    _one_line_error(run("recommend", "--load", str(model), "--items", "99999"), "99999")


def test_transfer_needs_demographics(tmp_path):
    f = tmp_path / "UserBehavior.csv"
    f.write_text("1,10,100,pv,1511544070\n1,10,100,buy,1511544090\n2,11,101,cart,1511544071\n")
    _one_line_error(run("transfer", "--data", str(f)), "age")


def test_profile_needs_categories(tmp_path):
    f = tmp_path / "events.csv"
    f.write_text("timestamp,visitorid,event,itemid,transactionid\n1433221332117,1,view,5,\n1433221332118,2,view,6,\n")
    _one_line_error(run("profile", "--data", str(f)), "no item categories")


def test_bench_sizes_reach_the_bench_and_are_refused_where_they_do_not_apply(monkeypatch, capsys):
    import logging
    from interest_migration import cli
    seen = {}
    monkeypatch.setitem(cli.BENCHES, "taobao", lambda quick, events=None, dask_workers=0: seen.update(quick=quick, events=events, workers=dask_workers))
    level = cli.LOGGER.level
    assert cli.main(["--quiet", "bench", "taobao", "--events", "1000", "--dask-workers", "2"]) == 0
    assert seen == {"quick": False, "events": 1000, "workers": 2}
    assert cli.LOGGER.level == level                                 # main() leaves the library's logging as it found it
    assert cli.main(["bench", "bandits", "--events", "5"]) == 2
    err = capsys.readouterr().err
    assert "bench bandits does not take --events" in err and "taobao" in err
