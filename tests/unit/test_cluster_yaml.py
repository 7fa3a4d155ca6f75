"""cluster.yaml is a valid Ray cluster-launcher config for this project (Ray's own schema)."""

from __future__ import annotations

import copy
import json
import re
import sys
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from tests.conftest import PROJECT_ROOT

CLUSTER_YAML = PROJECT_ROOT / "cluster.yaml"
GPU_INSTANCE = re.compile(r"^(g4dn|g5|g6|g6e|p3|p4d|p4de|p5)\.")


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def rays_schema() -> dict:
    import ray.autoscaler

    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def test_validates_against_rays_schema(config):
    jsonschema.validate(config, rays_schema())  # the file as written
    # and after Ray merges its AWS defaults, as `ray up` does
    validate_config(prepare_config(copy.deepcopy(config)))


def test_schema_check_is_not_vacuous(config):
    broken = copy.deepcopy(config)
    broken["available_node_types"]["ray.head.cpu"]["max_workerz"] = 1
    with pytest.raises(jsonschema.ValidationError, match="max_workerz"):
        validate_config(prepare_config(broken))


def test_aws_with_a_cpu_head_and_autoscaling_gpu_workers(config):
    assert config["provider"]["type"] == "aws"
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert not GPU_INSTANCE.match(head["node_config"]["InstanceType"])
    assert head["resources"].get("GPU", 0) == 0
    workers = {name: t for name, t in types.items() if name != config["head_node_type"]}
    assert workers and all(GPU_INSTANCE.match(t["node_config"]["InstanceType"])
                           for t in workers.values())
    assert all(t["max_workers"] > t.get("min_workers", 0) for t in workers.values())
    # workers write results and checkpoints to S3 themselves
    assert all("IamInstanceProfile" in t["node_config"] for t in workers.values())


def test_image_is_rays_gpu_image_of_the_pinned_version(config):
    py = f"py{sys.version_info.major}{sys.version_info.minor}"
    assert config["docker"]["image"] == f"rayproject/ray:{ray.__version__}-{py}-gpu"
    pinned = re.search(r'"ray\[tune\]==([\d.]+)"', (PROJECT_ROOT / "pyproject.toml").read_text())
    assert pinned and pinned.group(1) == ray.__version__


def test_setup_installs_the_synced_project_and_sets_s3_storage(config, monkeypatch):
    mounts = {Path(remote).as_posix(): local for remote, local in config["file_mounts"].items()}
    assert mounts.get("~/feature-reuse") == "."
    setup = " ".join(config["setup_commands"])
    assert "pip install" in setup and "-e ~/feature-reuse" in setup
    match = re.search(r"FEATURE_REUSE_STORAGE=(s3://\S+?)'", setup)
    assert match, "setup must export the S3 storage for the sweep"
    # ... which is what `python -m sweep.run` uses as --storage when none is given
    from sweep.run import STORAGE_ENV, build_parser

    assert STORAGE_ENV == "FEATURE_REUSE_STORAGE"
    monkeypatch.setenv(STORAGE_ENV, match.group(1))
    assert build_parser().parse_args([]).storage == match.group(1)
