"""cluster.yaml is a valid Ray cluster-launcher config for this project (Ray's own schema), and
docs/gpu.md gives the AWS account what it needs to start its workers (IAM policy, GPU quota).
cluster.local.yaml (on-premise machines over SSH) is valid too and runs the same commands; the
differences between the two files are listed here, and tests/integration/test_ray_up.py
launches it for real."""

from __future__ import annotations

import copy
import json
import os
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
CLUSTER_LOCAL_YAML = PROJECT_ROOT / "cluster.local.yaml"
SAME_IN_BOTH = ("file_mounts", "rsync_exclude", "initialization_commands", "setup_commands",
                "worker_setup_commands", "head_start_ray_commands", "worker_start_ray_commands")
"""What the two cluster files share, word for word, except where results go (below)."""
STORAGE = re.compile(r"FEATURE_REUSE_STORAGE=(\S+?)'")
GPU_DOC = PROJECT_ROOT / "docs" / "gpu.md"
GPU_CAPABILITY = {"g4dn": (7, 5), "g5": (8, 6), "g6": (8, 9), "g6e": (8, 9), "p3": (7, 0),
                  "p4d": (8, 0), "p4de": (8, 0), "p5": (9, 0)}
"""Compute capability of each AWS GPU instance family's GPU (T4, A10G, L4, L40S, V100, A100,
A100 80GB, H100)."""
GPU_INSTANCE = re.compile(r"^(" + "|".join(GPU_CAPABILITY) + r")\.")
VCPUS = {"m5.xlarge": 4, "g5.2xlarge": 8, "g5.12xlarge": 48}


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


def test_images_are_rays_of_the_pinned_version_cpu_head_gpu_workers(config):
    py = f"py{sys.version_info.major}{sys.version_info.minor}"
    docker = config["docker"]
    assert docker["head_image"] == f"rayproject/ray:{ray.__version__}-{py}-cpu"
    assert docker["worker_image"] == f"rayproject/ray:{ray.__version__}-{py}-gpu"
    assert "image" not in docker or docker["image"] == docker["worker_image"]
    pinned = re.search(r'"ray\[tune\]==([\d.]+)"', (PROJECT_ROOT / "pyproject.toml").read_text())
    assert pinned and pinned.group(1) == ray.__version__


def test_workers_get_gpu_passthrough_and_gpus_this_torch_build_runs_on(config):
    import torch

    from trainables.device import arch_supported

    assert "--gpus all" in config["docker"]["worker_run_options"]
    assert "--gpus all" not in config["docker"].get("run_options", [])  # not on the CPU head
    arch_list = torch.cuda.get_arch_list()
    workers = {n: t for n, t in config["available_node_types"].items() if n != config["head_node_type"]}
    for name, node_type in workers.items():
        family = node_type["node_config"]["InstanceType"].split(".")[0]
        if arch_list:  # a CUDA build of torch: its kernels must cover the workers' GPUs
            assert arch_supported(GPU_CAPABILITY[family], arch_list), (name, family, arch_list)


def test_every_node_checks_its_code_version_stamp(config):
    setup = config["setup_commands"]
    install = next(i for i, c in enumerate(setup) if "pip install" in c)
    check = next(i for i, c in enumerate(setup) if "python -m trainables.provenance check" in c)
    assert check > install, "the check needs the installed project"
    assert ".git" in config["rsync_exclude"], "this is why the stamp is needed"
    assert ".code_version.json" not in config["rsync_exclude"]


def head_policy() -> dict:
    text = GPU_DOC.read_text()
    block = re.search(r"<!-- head-policy[^>]*-->\s*```json\n(.*?)```", text, flags=re.S)
    assert block, "docs/gpu.md must give the head's IAM policy as a JSON block"
    return json.loads(block.group(1))


def test_docs_give_the_head_the_permissions_to_start_the_workers(config):
    """The head's role must pass the workers' role (iam:PassRole on the role behind their
    instance profile) and resolve their `resolve:ssm:` AMI (ssm:GetParameters on that
    parameter, in cluster.yaml's region)."""
    statements = head_policy()["Statement"]
    grants = {st["Action"]: st["Resource"] for st in statements if st["Effect"] == "Allow"}
    region = config["provider"]["region"]
    workers = [t for n, t in config["available_node_types"].items() if n != config["head_node_type"]]
    for node_type in workers:
        profile_arn = node_type["node_config"]["IamInstanceProfile"]["Arn"]
        account, profile = re.fullmatch(r"arn:aws:iam::(\d+):instance-profile/(.+)",
                                        profile_arn).groups()
        # Ray's default profile holds the role of the same name (ray-autoscaler-v1)
        assert grants["iam:PassRole"] == f"arn:aws:iam::{account}:role/{profile}"
    for node_type in config["available_node_types"].values():
        image = node_type["node_config"]["ImageId"]
        assert image.startswith("resolve:ssm:")
        parameter = image.removeprefix("resolve:ssm:")
        allowed = grants["ssm:GetParameters"]
        prefix = f"arn:aws:ssm:{region}::parameter"
        assert allowed.startswith(prefix)
        assert re.fullmatch(re.escape(allowed[len(prefix):]).replace(r"\*", ".*"), parameter)


def test_docs_state_the_gpu_vcpu_quotas_cluster_yaml_needs(config):
    text = GPU_DOC.read_text()
    spot = on_demand = 0
    for name, node_type in config["available_node_types"].items():
        if name == config["head_node_type"]:
            continue
        vcpus = VCPUS[node_type["node_config"]["InstanceType"]] * node_type["max_workers"]
        if node_type["node_config"].get("InstanceMarketOptions", {}).get("MarketType") == "spot":
            spot += vcpus
        else:
            on_demand += vcpus
    assert re.search(rf"Running On-Demand G and VT instances \(`L-DB2E81BA`\).*\| {on_demand} \|", text)
    assert re.search(rf"All G and VT Spot Instance Requests \(`L-3819A6DF`\).*\| {spot} \|", text)
    assert f"--desired-value {on_demand}" in text and f"--desired-value {spot}" in text


def test_setup_installs_the_synced_project_and_sets_s3_storage(config, monkeypatch):
    mounts = {Path(remote).as_posix(): local for remote, local in config["file_mounts"].items()}
    assert mounts.get("~/feature-reuse") == "."
    setup = " ".join(config["setup_commands"])
    assert "pip install" in setup and "-e ~/feature-reuse" in setup
    assert '-e ~/feature-reuse"[cluster]"' in setup, "nodes need the cluster extra (ray[default])"
    match = re.search(r"FEATURE_REUSE_STORAGE=(s3://\S+?)'", setup)
    assert match, "setup must export the S3 storage for the sweep"
    # ... which is what `python -m sweep.run` uses as --storage when none is given
    from sweep.run import STORAGE_ENV, build_parser

    assert STORAGE_ENV == "FEATURE_REUSE_STORAGE"
    monkeypatch.setenv(STORAGE_ENV, match.group(1))
    assert build_parser().parse_args([]).storage == match.group(1)


# ------------------------------------------------------------------------- cluster.local.yaml
@pytest.fixture(scope="module")
def local_config() -> dict:
    return yaml.safe_load(CLUSTER_LOCAL_YAML.read_text())


def test_on_premise_file_validates_as_ray_up_prepares_it(local_config):
    jsonschema.validate(local_config, rays_schema())
    prepared = prepare_config(copy.deepcopy(local_config))
    validate_config(prepared)
    assert prepared["provider"]["type"] == "local"
    workers = prepared["available_node_types"][prepared["head_node_type"]]
    assert workers["min_workers"] == workers["max_workers"] == len(local_config["provider"]["worker_ips"])
    assert {"ssh_user", "ssh_private_key"} <= set(local_config["auth"])


def without_storage(commands: list[str]) -> list[str]:
    return [STORAGE.sub("FEATURE_REUSE_STORAGE=<storage>'", c) for c in commands]


def test_both_files_run_the_same_commands_and_differ_only_in_where_results_go(config, local_config):
    for key in SAME_IN_BOTH:
        mine, theirs = config[key], local_config[key]
        if key == "setup_commands":
            mine, theirs = without_storage(mine), without_storage(theirs)
        assert mine == theirs, f"{key} differs between cluster.yaml and cluster.local.yaml"
    aws = STORAGE.search(" ".join(config["setup_commands"])).group(1)
    local = STORAGE.search(" ".join(local_config["setup_commands"])).group(1)
    assert aws.startswith("s3://") and local == "$HOME/feature-reuse-runs"
    # AWS only: the autoscaler's AWS client on the head, Docker images, node types
    assert local_config["head_setup_commands"] == []
    assert [c for c in config["head_setup_commands"] if "boto3" not in c] == []


def test_the_comparison_sees_a_changed_command(config, local_config):
    changed = copy.deepcopy(local_config)
    changed["worker_start_ray_commands"][-1] += " --num-cpus=1"
    assert changed["worker_start_ray_commands"] != config["worker_start_ray_commands"]
    assert without_storage(["export FEATURE_REUSE_STORAGE=s3://a/b' >> x"]) == without_storage(
        ["export FEATURE_REUSE_STORAGE=$HOME/c' >> x"])


def test_every_node_turns_token_authentication_on_with_the_launchers_token(config, local_config):
    for c in (config, local_config):
        assert c["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
        assert any("export RAY_AUTH_MODE=token" in cmd for cmd in c["setup_commands"])
        # Ray 2.60's autoscaler v2 never starts an on-premise cluster's workers
        assert all("RAY_enable_autoscaler_v2=0 ray start --head" in " ".join(cmd.split())
                   for cmd in c["head_start_ray_commands"] if "ray start" in cmd)


def test_on_premise_results_default_to_a_folder_on_the_head(local_config, monkeypatch, tmp_path):
    from sweep.run import STORAGE_ENV, build_parser

    line = STORAGE.search(" ".join(local_config["setup_commands"])).group(1)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv(STORAGE_ENV, os.path.expandvars(line))  # as ~/.bashrc exports it
    storage = build_parser().parse_args([]).storage
    assert storage == str(tmp_path / "feature-reuse-runs") and os.path.isabs(storage)
