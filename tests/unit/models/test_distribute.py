"""tf.distribute: the cluster spec from the environment, and training under MirroredStrategy
(2 logical CPU devices) and MultiWorkerMirroredStrategy (2 worker processes on 127.0.0.1)
matching the single-device loss trajectory for the same global batch.

Tolerance: each epoch's mean training loss within 3 % (relative) of the single-device run. The
runs see the same rows with the same seed but not identical batches (per-replica BatchNorm
statistics, shuffle-buffer boundaries at another batch size), so bit equality is not expected;
a wrong gradient scaling (a sum instead of a mean over replicas, a replica training on half the
data) moves the loss by far more.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ecdctr_pipeline.core.settings import settings_dict
from ecdctr_pipeline.modeling import distribute
from tests.conftest import free_port, tiny_settings

ROOT = Path(__file__).resolve().parents[3]
REL_TOL = 0.03
ARGS = ["--start", "2026-11-09", "--end", "2026-11-23", "--batch", "256", "--epochs", "2"]


def test_tf_config_from_the_environment():
    cfg = {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}
    assert distribute.tf_config({"TF_CONFIG": json.dumps(cfg)}) == cfg
    assert distribute.tf_config({}) is None
    assert distribute.tf_config({"TRAINER_WORKER_HOSTS": "h0:7,h1:7", "JOB_COMPLETION_INDEX": "1"}) == {
        "cluster": {"worker": ["h0:7", "h1:7"]}, "task": {"type": "worker", "index": 1}}
    job = {"TRAINER_JOB_NAME": "actr-train-actr-x1", "TRAINER_SERVICE": "svc", "TRAINER_WORKERS": "3",
           "TRAINER_PORT": "2222", "JOB_COMPLETION_INDEX": "2"}
    assert distribute.tf_config(job)["cluster"]["worker"] == [
        "actr-train-actr-x1-0.svc:2222", "actr-train-actr-x1-1.svc:2222", "actr-train-actr-x1-2.svc:2222"]
    with pytest.raises(distribute.DistributionError, match="JOB_COMPLETION_INDEX is '5'"):
        distribute.tf_config({"TRAINER_WORKER_HOSTS": "h0:7,h1:7", "JOB_COMPLETION_INDEX": "5"})
    with pytest.raises(distribute.DistributionError, match="TF_CONFIG is not a worker cluster spec"):
        distribute.tf_config({"TF_CONFIG": "{}"})
    with pytest.raises(distribute.DistributionError, match="TRAINER_WORKERS='x'"):
        distribute.tf_config({**job, "TRAINER_WORKERS": "x"})


@pytest.fixture(scope="module")
def worker_env(tiny_pipeline_store, tmp_path_factory):
    config = tmp_path_factory.mktemp("dist") / "config.yaml"
    s = tiny_settings(f"file://{tiny_pipeline_store}")
    config.write_text(yaml.safe_dump(settings_dict(s, mask=False)))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ECDCTR_", "TRAINER_", "TF_CONFIG"))}
    return {**env, "ECDCTR_CONFIG": str(config), "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}


def start(env, *extra, **more_env):
    return subprocess.Popen([sys.executable, "-m", "benchmarks.train_worker", *ARGS, *extra], cwd=ROOT,
                            env={**env, **more_env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def result(proc, timeout=300) -> dict:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def single(tiny_pipeline_store):
    """The reference: one device, in this process (the same code path as the subprocesses)."""
    from benchmarks import train_worker

    s = tiny_settings(f"file://{tiny_pipeline_store}")
    r = train_worker.run(train_worker.parser().parse_args([*ARGS, "--distribution", "none"]), s)
    assert r["replicas"] == 1 and len(r["losses"]) == 2
    return r


def assert_same_trajectory(got: list[float], want: list[float]):
    assert len(got) == len(want)
    for epoch, (g, w) in enumerate(zip(got, want)):
        assert abs(g - w) <= REL_TOL * w, f"epoch {epoch}: loss {g:.4f} vs single-device {w:.4f}"


@pytest.fixture(scope="module")
def distributed_runs(worker_env):
    """The mirrored run and the two workers, started together (test time)."""
    hosts = f"127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    procs = {"mirrored": start(worker_env, "--distribution", "mirrored", "--cpus", "2")}
    for i in range(2):
        procs[f"worker{i}"] = start(worker_env, "--distribution", "multi_worker", TRAINER_WORKER_HOSTS=hosts,
                                    JOB_COMPLETION_INDEX=str(i))
    try:
        return {name: result(p) for name, p in procs.items()}
    finally:
        for p in procs.values():
            p.kill()


@pytest.mark.slow
def test_mirrored_on_two_cpu_devices_matches_one_device(distributed_runs, single):
    r = distributed_runs["mirrored"]
    assert r["replicas"] == 2 and r["placement"].startswith("mirrored: 2 replica(s)")
    assert r["rows"] == single["rows"]
    assert single["losses"][-1] < single["losses"][0]  # it learns
    assert_same_trajectory(r["losses"], single["losses"])


@pytest.mark.slow
def test_two_worker_processes_match_one_device(distributed_runs, single):
    runs = [distributed_runs["worker0"], distributed_runs["worker1"]]
    assert [r["worker"] for r in runs] == [0, 1] and all(r["replicas"] == 2 for r in runs)
    assert runs[0]["losses"] == runs[1]["losses"]  # one model, reduced across the workers
    assert_same_trajectory(runs[0]["losses"], single["losses"])


@pytest.mark.slow
def test_actr_trains_on_two_worker_processes_through_the_cli(cpm_trained_store, tmp_path):
    """The A-CTR step's own command (``ecdctr train actr``) as two workers, as its two containers
    (docker mode) or Indexed Job pods run it: A-CTR loads its CPM before it builds the model, and
    TensorFlow refuses a multi-worker runtime configured after that (make e2e found it). Worker 0
    publishes the model, worker 1 publishes nothing."""
    import shutil

    from ecdctr_pipeline.data import artifacts
    from ecdctr_pipeline.core import paths
    from ecdctr_pipeline.data.store import open_store

    store_dir = tmp_path / "store"
    shutil.copytree(cpm_trained_store, store_dir)
    s = tiny_settings(f"file://{store_dir}")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(settings_dict(s, mask=False)))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ECDCTR_", "TRAINER_", "TF_CONFIG"))}
    hosts = f"127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    ecdctr = str(Path(sys.executable).with_name("ecdctr"))
    procs = [subprocess.Popen([ecdctr, "train", "actr", "--as-of", "2026-11-24", "--cpm", "2026-11-23", "--json"],
                              env={**env, "ECDCTR_CONFIG": str(config), "TF_CPP_MIN_LOG_LEVEL": "3",
                                   "ECDCTR_TRAINING__DISTRIBUTION": "multi_worker", "TRAINER_WORKER_HOSTS": hosts,
                                   "JOB_COMPLETION_INDEX": str(i)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    try:
        outs = [p.communicate(timeout=600) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    chief, other = (json.loads(o[o.index("{"):]) for o, _ in outs)
    assert other["extra"] == {"worker": 1, "workers": 2, "published_by": "worker 0"}, other
    m = artifacts.read_manifest(open_store(s.store), paths.actr_model("2026-11-24"))
    assert m.inputs.cpm_checkpoint == "2026-11-23" and chief["logical_date"] == "2026-11-24"
