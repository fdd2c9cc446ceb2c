"Data-parallel training: 2 CPU processes under torchrun (gloo) give the weights of 1 process on the same global batch."
import subprocess
import sys

import pytest
import torch

from interest_migration.recommender import read_manifest

ARGS = ["--users", "60", "--max-epochs", "2", "--batch-size", "32", "--dropout", "0", "--no-valid",
        "--embedding-size", "16", "--max-len", "20"]
TOL = 1e-4   # absolute, on every weight: the two runs differ only in the order gradients are summed (measured ~3e-6)


def _train(n: int, out, loss: str = "ce"):
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}", "-m",
                        "interest_migration.distributed", *ARGS, "--loss", loss, "--out", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    run = read_manifest(out)["metrics"]["run"]   # rank 0's run report, kept with the model
    assert (run["world_size"], run["device"], run["epochs"]) == (n, "cpu", 2), run
    assert f"{n} process(es) on cpu" in r.stderr and not r.stdout.strip(), (r.stdout, r.stderr[-2000:])   # logged, not printed
    return torch.load(out / "weights.pt", weights_only=True)


@pytest.mark.parametrize("loss", ["ce", "sampled"])
def test_two_processes_equal_one(tmp_path, loss):
    one, two = _train(1, tmp_path / "one", loss), _train(2, tmp_path / "two", loss)
    assert one.keys() == two.keys()
    diff = {k: (one[k].float() - two[k].float()).abs().max().item() for k in one}
    assert max(diff.values()) < TOL, sorted(diff.items(), key=lambda kv: -kv[1])[:3]


def test_single_process_without_torchrun(tmp_path):
    "python -m interest_migration.distributed runs as one process when no process group is described."
    r = subprocess.run([sys.executable, "-m", "interest_migration.distributed", *ARGS, "--max-epochs", "1",
                        "--out", str(tmp_path / "m")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    run = read_manifest(tmp_path / "m")["metrics"]["run"]
    assert (run["world_size"], run["epochs"]) == (1, 1) and "1 process(es) on cpu" in r.stderr, run


def test_num_threads_flag_and_its_old_name():
    "The torchrun entry point takes --num-threads (one name per idea); --threads, its old name, still sets it."
    from interest_migration.distributed import _parser
    assert _parser().parse_args([]).num_threads == 1
    assert _parser().parse_args(["--num-threads", "3"]).num_threads == 3
    assert _parser().parse_args(["--threads", "2"]).num_threads == 2
