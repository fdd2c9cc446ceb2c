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


TAOBAO_3 = "1,10,100,pv,1511544070\n1,10,100,buy,1511544090\n2,11,101,cart,1511544071\n"


@pytest.mark.parametrize("command, name, text, needle", [
    ("summary", "UserBehavior.csv", "1,10,100,pv,1511544070\n2,11,100,teleport,1511544071\n", "behavior"),  # unknown behaviour
    ("summary", "events.csv", "timestamp,visitorid,event,itemid,transactionid\nyesterday,1,view,5,\n", "timestamp"),  # RetailRocket
    ("transfer", "UserBehavior.csv", TAOBAO_3, "age"),                                                  # no demographics
    ("profile", "events.csv", "timestamp,visitorid,event,itemid,transactionid\n"
                              "1433221332117,1,view,5,\n1433221332118,2,view,6,\n", "no item categories")])
def test_bad_log_gets_a_one_line_error(tmp_path, command, name, text, needle):
    "A malformed log, or one that lacks what the command needs, stops with one line naming the problem."
    f = tmp_path / name
    f.write_text(text)
    _one_line_error(run(command, "--data", str(f)), needle)


def test_summary_of_a_taobao_file(tmp_path):
    f = tmp_path / "UserBehavior.csv"
    f.write_text(TAOBAO_3)
    r = run("summary", "--data", str(f))
    assert r.returncode == 0, r.stderr
    assert "events" in r.stdout and " 3" in r.stdout


def test_demo_on_simulated_data(tmp_path):
    r = run("demo", "--data", "simulate", "--out", str(tmp_path / "rep"), "--quiet", "--sequence-max-epochs", "1")
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
    r = run("recommend", "--max-epochs", "1", "--save", str(model), "--users", "1", "2", "--k", "3")
    assert r.returncode == 0, r.stderr
    rows = [l.split() for l in r.stdout.splitlines() if l.split()[:1] in (["1"], ["2"])]
    assert len(rows) == 6 and model.exists()
    _one_line_error(run("recommend", "--load", str(model), "--users", "424242"), "424242")
    _one_line_error(run("recommend", "--load", str(model), "--items", "99999"), "99999")


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


def test_export_max_epochs_and_its_deprecated_alias(capsys):
    "export/retrain take --max-epochs; the old --epochs still parses into it, with one warning line on stderr."
    from interest_migration.cli import build_parser
    p = build_parser()
    assert p.parse_args(["export", "--max-epochs", "3"]).max_epochs == 3
    assert p.parse_args(["export"]).max_epochs == 20 and capsys.readouterr().err == ""
    assert p.parse_args(["export", "--epochs", "4"]).max_epochs == 4
    assert capsys.readouterr().err == "warning: --epochs is deprecated; use --max-epochs\n"
    assert p.parse_args(["retrain", "--db", "x", "--models", "m", "--epochs", "2"]).max_epochs == 2
    assert "--max-epochs" in run("export", "--help").stdout
    with pytest.raises(SystemExit):
        p.parse_args(["export", "--epochs", "0"])                     # the alias is checked like the option


def test_demo_progress_goes_to_the_writer_or_the_log(tmp_path, caplog):
    "run_demo's progress lines: to a writer when given (the CLI's stderr), else the demo module's log at INFO; none when quiet."
    import logging
    from interest_migration.demo import run_demo
    from interest_migration.simulate import simulate_log
    from interest_migration.data import Dataset
    sim = simulate_log(n_users=60, n_items=40, n_categories=3, n_events=3_000, seed=0)
    ds = Dataset(sim.events, sim.users, sim.items.drop(columns="title"), "sim")   # no title: no BERT step
    lines = []
    run_demo(out=tmp_path / "a", dataset=ds, sequence_max_epochs=0, progress=lines.append)
    assert lines[0] == "loading and validating the log ..." and "temporal split ..." in lines
    with caplog.at_level(logging.INFO, logger="interest_migration.demo"):
        run_demo(out=tmp_path / "b", dataset=ds, sequence_max_epochs=0)
    assert [r.getMessage() for r in caplog.records if r.name == "interest_migration.demo"] == lines
    caplog.clear(); lines.clear()
    with caplog.at_level(logging.INFO, logger="interest_migration.demo"):
        run_demo(out=tmp_path / "c", dataset=ds, sequence_max_epochs=0, quiet=True, progress=lines.append)
    assert lines == [] and not [r for r in caplog.records if r.name == "interest_migration.demo"]


def test_demo_progress_on_stderr_as_before(tmp_path):
    "Through the CLI the demo's progress lines still reach stderr, unprefixed."
    r = run("demo", "--data", "simulate", "--out", str(tmp_path / "rep"), "--sequence-max-epochs", "0")
    assert r.returncode == 0, r.stderr
    assert "loading and validating the log ...\n" in r.stderr and "temporal split ...\n" in r.stderr
