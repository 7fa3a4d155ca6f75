"""sweep/cluster_nodes.py: the machines an on-premise cluster file lists, and Ray's version
refusal turned into one line (tests/integration/test_ray_up.py runs both on a real cluster)."""

from __future__ import annotations

import pytest
import ray
import yaml
from ray._private.utils import check_version_info

from sweep.cluster_nodes import expected_machines, main, version_refusal


def write(path, config: dict):
    path.write_text(yaml.safe_dump(config))
    return path


def test_an_on_premise_file_lists_the_head_then_the_workers(tmp_path):
    path = write(tmp_path / "c.yaml", {"provider": {"type": "local", "head_ip": "10.0.0.1",
                                                    "worker_ips": ["10.0.0.2", "localhost"]}})
    assert expected_machines(path) == ["10.0.0.1", "10.0.0.2", "127.0.0.1"]


@pytest.mark.parametrize("config", [{"provider": {"type": "aws", "region": "x"}}, {}, []])
def test_other_clusters_and_broken_files_list_nothing(tmp_path, config):
    assert expected_machines(write(tmp_path / "c.yaml", config)) == []
    assert expected_machines(tmp_path / "absent.yaml") == []
    (tmp_path / "bad.yaml").write_text("provider: [")
    assert expected_machines(tmp_path / "bad.yaml") == []


def test_rays_own_version_refusal_becomes_one_line_naming_both_versions():
    with pytest.raises(RuntimeError) as raised:  # Ray's check, as ray.init runs it
        check_version_info({"ray_version": "2.59.0", "python_version": "3.11.2"}, "node 10.0.0.9")
    line = version_refusal(str(raised.value), "auto")
    assert line.startswith("--address auto runs Ray 2.59.0 on Python 3.11.2, but this machine has "
                           f"Ray {ray.__version__}")
    assert "install ray==2.59.0 on Python 3.11.2 here" in line and "\n" not in line
    assert version_refusal("some other RuntimeError", "auto") is None


def test_stop_workers_off_the_head_is_refused_with_the_fix(tmp_path, capsys):
    assert main(["stop-workers", "--config", str(tmp_path / "absent.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "run this on the head" in err
