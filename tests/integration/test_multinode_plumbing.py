"""The two pieces that let a sweep run on nodes that share no folder, on one local Ray:

- sweep/served_storage.py: the driver's experiment folder served to other nodes. A handler that
  believes it runs on another node (its node id is not this one) sends every operation to the
  real serving actor, as a trial on a worker node does.
- sweep/datastore.py: the images read once by the driver, shipped through the object store,
  checked on arrival; `--data` given as a URI.

tests/integration/test_multinode.py runs both across two real Ray nodes.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from sweep.datastore import ShippedImages, ShippedSource, content_hash, mirror, read_all, ship
from sweep.served_storage import ServedFolderHandler, serve_folder
from tests.conftest import write_image
from trainables.data.manifest import DataRoots, Entry
from trainables.errors import DataError, UserError
from trainables.results import storage
from trainables.results import tables as results

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray():
    import ray

    # address="local": a new Ray even where someone's `ray start` cluster runs on this machine
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level="ERROR", object_store_memory=100 * 2**20)
    yield
    ray.shutdown()


def from_elsewhere(served: pafs.PyFileSystem) -> pafs.PyFileSystem:
    """The same served folder as a process on another node sees it: through the actor."""
    h = served.handler
    return pafs.PyFileSystem(ServedFolderHandler(h.server, "another-node", h.root))


# ------------------------------------------------------------------------- served storage
def test_results_written_from_another_node_land_whole_and_replace_by_trial_id(local_ray, tmp_path):
    root = tmp_path / "exp"
    remote = from_elsewhere(serve_folder(str(root)))
    results_root = str(root / "results")
    storage.mount(str(root), remote)
    try:
        row = {"trial_id": "t1", "arch": "a", "regime": "scratch", "seed": 0, "train_size": "all",
               "status": "failed"}
        results.write_table_atomic(results_root, "trials", "t1", [row])
        results.write_table_atomic(results_root, "trials", "t1", [{**row, "status": "ok"}])
    finally:
        storage.mount(str(root), None)
    # read back from the disk directly, not through the served filesystem
    files = sorted(p.name for p in (root / "results" / "trials").iterdir())
    assert files == ["t1.parquet"], "a temporary file was left, or the rewrite added a file"
    table = pq.read_table(root / "results" / "trials" / "t1.parquet")
    assert table.column("status").to_pylist() == ["ok"]


def test_served_folder_refuses_paths_outside_it_and_reports_missing_files(local_ray, tmp_path):
    remote = from_elsewhere(serve_folder(str(tmp_path / "exp")))
    with pytest.raises(PermissionError, match="outside the served folder"):
        remote.open_output_stream(str(tmp_path / "elsewhere.txt"))
    with pytest.raises(PermissionError, match="outside the served folder"):
        remote.get_file_info([str(tmp_path / "exp" / ".." / "x")])
    with pytest.raises(FileNotFoundError):
        remote.open_input_stream(str(tmp_path / "exp" / "missing.txt"))
    assert not (tmp_path / "elsewhere.txt").exists()


def test_a_ray_task_writes_into_the_served_folder(local_ray, tmp_path):
    """The filesystem object travels to another process (pickled with its actor handle)."""
    import ray

    root = tmp_path / "exp"
    remote = from_elsewhere(serve_folder(str(root)))

    @ray.remote(num_cpus=0)
    def write(fs, path):
        pq.write_table(pa.table({"pid": [os.getpid()]}), path, filesystem=fs)
        return os.getpid()

    pid = ray.get(write.remote(remote, str(root / "sub" / "t.parquet")))
    assert pid != os.getpid()
    assert pq.read_table(root / "sub" / "t.parquet").column("pid").to_pylist() == [pid]


def test_tune_persists_and_restores_checkpoints_through_the_served_folder(local_ray, tmp_path):
    """Ray Tune with storage_filesystem = the served folder: a trial that fails after epoch 2
    is retried from its checkpoint, and every file lands in the driver's folder."""
    from ray import tune

    root = tmp_path / "exp"
    remote = from_elsewhere(serve_folder(str(root)))
    marker = tmp_path / "failed-once"

    def train(config):
        import json
        import tempfile

        start = 0
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as folder:
                start = json.loads(Path(folder, "state.json").read_text())["epoch"]
        for epoch in range(start + 1, 4):
            with tempfile.TemporaryDirectory() as folder:
                Path(folder, "state.json").write_text(json.dumps({"epoch": epoch}))
                tune.report({"epoch": epoch, "resumed_from": start},
                            checkpoint=tune.Checkpoint.from_directory(folder))
            if epoch == 2 and not marker.exists():
                marker.write_text("failed")
                raise RuntimeError("injected failure after epoch 2")

    grid = tune.Tuner(train, run_config=tune.RunConfig(
        name="ray", storage_path=str(root), storage_filesystem=remote, verbose=0,
        failure_config=tune.FailureConfig(max_failures=1),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1))).fit()
    assert not grid.errors
    final = grid[0]
    assert (final.metrics["epoch"], final.metrics["resumed_from"]) == (3, 2)
    trial_dirs = [p for p in (root / "ray").iterdir() if p.is_dir()]
    assert len(trial_dirs) == 1
    assert [p.name for p in trial_dirs[0].glob("checkpoint_*")] == ["checkpoint_000002"]
    assert (trial_dirs[0] / "result.json").is_file()


# ------------------------------------------------------------------------- shipped images
def short_hash(data: bytes) -> str:
    """What a manifest entry records (trainables.data.images.file_hash): a sha256 prefix."""
    return content_hash(data)[:16]


def make_entries(folder: Path, n: int = 4) -> list[Entry]:
    entries = []
    for i in range(n):
        path = write_image(folder / "c" / f"{i}.png", (10 * i, 20, 30), seed=i)
        entries.append(Entry("data", f"c/{i}.png", "c", "train", short_hash(path.read_bytes())))
    return entries


def read_from(folder: Path) -> DataRoots:
    return DataRoots(str(folder))


def test_images_shipped_by_the_driver_arrive_checked_in_a_trial_process(local_ray, tmp_path):
    import ray

    entries = make_entries(tmp_path / "pool")
    shipped = ship(entries, read_from(tmp_path / "pool"))
    assert shipped.count == 4 and shipped.nbytes == sum(
        len((tmp_path / "pool" / e.path).read_bytes()) for e in entries)

    @ray.remote(num_cpus=0)
    def trial(shipped, entries):
        source = ShippedSource(shipped)
        return [short_hash(source.open(e).read()) for e in entries], os.getpid()

    hashes, pid = ray.get(trial.remote(shipped, entries))
    assert pid != os.getpid()
    assert hashes == [e.sha256 for e in entries]


def test_an_image_that_arrives_different_is_refused(local_ray, tmp_path):
    import ray

    entries = make_entries(tmp_path / "pool", n=2)
    blobs = read_all(entries, read_from(tmp_path / "pool"))
    blobs[("data", entries[1].path)] = blobs[("data", entries[1].path)][:-10]  # damaged
    damaged = ShippedImages(ray.put(blobs), 2, 0)
    source = ShippedSource(damaged)
    assert short_hash(source.open(entries[0]).read()) == entries[0].sha256
    with pytest.raises(DataError, match=f"data/{entries[1].path} arrived with content hash"):
        source.open(entries[1]).read()
    with pytest.raises(DataError, match="not among the 2 images"):
        source.open(Entry("data", "c/other.png", "c", "train", "")).read()


def test_a_file_changed_after_the_split_is_caught_before_shipping(tmp_path):
    entries = make_entries(tmp_path / "pool", n=3)
    write_image(tmp_path / "pool" / entries[2].path, (250, 250, 250), seed=99)
    with pytest.raises(DataError, match=r"1 image\(s\) changed since the split manifest.*c/2.png"):
        read_all(entries, read_from(tmp_path / "pool"))


def test_data_given_as_a_uri_is_mirrored_locally(tmp_path):
    entries = make_entries(tmp_path / "pool", n=2)
    local = Path(mirror((tmp_path / "pool").as_uri(), "--data"))
    assert local != tmp_path / "pool"
    assert [short_hash((local / e.path).read_bytes()) for e in entries] == [e.sha256 for e in entries]
    with pytest.raises(DataError, match="does not exist or is not a folder"):
        mirror((tmp_path / "missing").as_uri(), "--data")
    with pytest.raises(UserError, match="--ood nope://x: cannot open"):
        mirror("nope://x", "--ood")


def test_preflight_takes_data_as_a_uri_and_splits_it_as_the_folder(make_pool, tmp_path,
                                                                   torch_home):
    from sweep.grid import GridSpec
    from sweep.layout import Experiment
    from sweep.plan import DataChoice
    from sweep.preflight import run_preflight
    from trainables.presets import PRESETS

    pool = make_pool({"a": 6, "b": 6})
    spec = GridSpec(PRESETS["smoke"], regimes=("scratch",))
    storage = str(tmp_path / "runs")
    by_path = run_preflight(spec, Experiment.at(storage, "p"), storage, DataChoice(str(pool)),
                            write=False)
    by_uri = run_preflight(spec, Experiment.at(storage, "u"), storage, DataChoice(pool.as_uri()),
                           write=False)
    assert by_uri.manifest.to_json() == by_path.manifest.to_json()
    assert [short_hash(by_uri.roots.open(e).read()) for e in by_uri.manifest.entries] == [
        e.sha256 for e in by_uri.manifest.entries]


def test_data_roots_read_an_image_from_a_uri_as_from_the_folder(tmp_path):
    entries = make_entries(tmp_path / "pool", n=2)
    by_uri = DataRoots((tmp_path / "pool").as_uri())
    by_path = DataRoots(str(tmp_path / "pool"))
    assert [by_uri.open(e).read() for e in entries] == [by_path.open(e).read() for e in entries]
    missing = Entry("data", "c/missing.png", "c", "train", "")
    with pytest.raises(FileNotFoundError):
        by_uri.open(missing)
    with pytest.raises(FileNotFoundError):
        by_path.open(missing)


def test_a_ray_job_refuses_a_relative_storage_folder(make_pool, tmp_path, torch_home, capsys,
                                                     monkeypatch):
    """Inside `ray job submit --working-dir .`, the driver's working directory is Ray's
    temporary copy: results written to a relative --storage would be deleted with it."""
    import json
    import signal

    from sweep.run import main

    for var in ("RAY_AIR_NEW_OUTPUT", "RAY_USAGE_STATS_ENABLED", "TUNE_DISABLE_SIGINT_HANDLER",
                "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("FEATURE_REUSE_STORAGE", raising=False)
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps(
        {"runtime_env": {"working_dir": "gcs://_ray_pkg_0123456789abcdef.zip"}}))
    monkeypatch.chdir(tmp_path)
    pool = make_pool({"a": 6, "b": 6})
    args = ["--preset", "smoke", "--regimes", "scratch", "--data", str(pool), "--dry-run"]
    previous = signal.getsignal(signal.SIGTERM)
    try:
        assert main([*args, "--storage", "runs"]) == 2
        err = capsys.readouterr().err
        assert "--storage runs: a relative folder inside a Ray job" in err
        assert "--storage s3://bucket/prefix" in err
        assert main([*args, "--storage", str(tmp_path / "runs")]) == 0, capsys.readouterr()
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert not (tmp_path / "runs").exists(), "a dry run writes nothing"


# ------------------------------------------------------------------------- ray up's machines
def test_machines_of_a_cluster_file_are_named_only_for_the_cluster_joined(local_ray, tmp_path):
    """sweep/cluster_nodes.py on a real Ray: a machine of the cluster file with no Ray node is
    named; a Ray that is not that cluster's (its head is not among the nodes) names nothing."""
    import ray
    import yaml

    from sweep.cluster_nodes import missing_lines

    here = next(n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"])
    path = tmp_path / "ray_bootstrap_config.yaml"
    path.write_text(yaml.safe_dump({"provider": {"type": "local", "head_ip": here,
                                                 "worker_ips": ["10.255.255.1"]}}))
    lines = missing_lines(path)
    assert lines[0].startswith("note: 1 of the 2 machines") and "the other 1" in lines[0]
    assert lines[1] == "  10.255.255.1: its setup or `ray start` failed, or it is still starting"
    path.write_text(yaml.safe_dump({"provider": {"type": "local", "head_ip": "10.255.255.2",
                                                 "worker_ips": [here]}}))
    assert missing_lines(path) == []
