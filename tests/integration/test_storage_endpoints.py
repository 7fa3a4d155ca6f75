"""Every path the three CLIs open ends in one `error:` line naming the path, the cause and the
fix, exit 2, no traceback, in bounded time: S3 endpoints on loopback that refuse (a closed port)
or hang (a socket that accepts and never answers), with and without credentials, and URIs that
do not parse (issue 25). The CLIs run as subprocesses: a stuck S3 client must not keep the
process from exiting either."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

TIMEOUT_S = 3  # FEATURE_REUSE_STORAGE_TIMEOUT for these runs


@pytest.fixture(scope="module")
def endpoints() -> Iterator[dict[str, str]]:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    refusing = closed.getsockname()[1]
    closed.close()  # nobody listens: connections are refused
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)  # the kernel accepts; nobody ever reads or answers
    yield {"refusing": f"127.0.0.1:{refusing}", "hanging": f"127.0.0.1:{silent.getsockname()[1]}"}
    silent.close()


def _cli(tool: str, uri: str, pool) -> list[str]:
    if tool == "report":
        return ["-m", "analysis.report", "--results", uri, "--no-gradcam"]
    common = ["--preset", "smoke", "--data", str(pool)]
    if tool == "train":
        return ["-m", "trainables.train", "--arch", "mobilenet_v2", "--regime", "scratch",
                *common, "--out", uri]
    return ["-m", "sweep.run", "--archs", "mobilenet_v2", "--regimes", "scratch", *common,
            "--storage", uri, "--name", "e"]


def _run(args: list[str], tmp_path, credentials: bool) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(FEATURE_REUSE_STORAGE_TIMEOUT=str(TIMEOUT_S), AWS_EC2_METADATA_DISABLED="true",
               AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
               RAY_TMPDIR=str(tmp_path / "ray"), PYTHONPATH=os.getcwd())
    if credentials:
        env.update(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
                   AWS_DEFAULT_REGION="us-east-1")
    # bounded by FEATURE_REUSE_STORAGE_TIMEOUT, not by the S3 client's minutes of retries (or
    # forever, for an endpoint that never answers): a hang fails here
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          timeout=300, cwd=tmp_path, check=False)
    return done.returncode, done.stderr


CASES = [("report", "refusing", True), ("report", "refusing", False), ("report", "hanging", True),
         ("train", "refusing", False), ("train", "hanging", True),
         ("sweep", "refusing", True), ("sweep", "hanging", False)]


@pytest.mark.parametrize("tool,endpoint,credentials", CASES,
                         ids=[f"{t}-{e}-{'creds' if c else 'nocreds'}" for t, e, c in CASES])
def test_an_unreachable_store_is_one_error_with_the_path_cause_and_fix(
        tool, endpoint, credentials, endpoints, pool, tmp_path):
    uri = f"s3://bucket/x/results?endpoint_override={endpoints[endpoint]}&scheme=http"
    code, err = _run(_cli(tool, uri, pool), tmp_path, credentials)
    assert code == 2, (code, err[-3000:])
    assert "Traceback" not in err, err[-3000:]
    line = next(ln for ln in err.splitlines() if ln.startswith("error:"))
    assert uri in line and "Fix:" in line, line
    if endpoint == "hanging":
        assert f"did not answer within {TIMEOUT_S} s" in line and \
            "FEATURE_REUSE_STORAGE_TIMEOUT" in line, line
    else:
        assert "endpoint" in line.split("Fix:")[1], line


@pytest.mark.parametrize("tool", ["report", "train", "sweep"])
def test_a_file_uri_with_a_space_names_the_character_and_the_fix(tool, pool, tmp_path, capsys,
                                                                   sweep_main):
    """In-process: nothing is reached, the URI is refused as it is parsed."""
    from analysis.report import main as report_main
    from trainables.train import main as train_main

    folder = tmp_path / "with space"
    main = {"report": report_main, "train": train_main, "sweep": sweep_main}[tool]
    code = main(_cli(tool, f"file://{folder}", pool)[2:])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err[-3000:]
    line = next(ln for ln in err.splitlines() if ln.startswith("error:"))
    assert "' '" in line and "%20" in line and repr(str(folder)) in line, line
    assert not folder.exists()


@pytest.mark.parametrize("value", ["soon", "0", "-1", "nan", "inf"])
def test_an_unusable_timeout_setting_is_named(value, tmp_path, monkeypatch):
    from trainables.errors import UserError
    from trainables.results.storage import check_storage

    monkeypatch.setenv("FEATURE_REUSE_STORAGE_TIMEOUT", value)
    with pytest.raises(UserError, match=f"FEATURE_REUSE_STORAGE_TIMEOUT={value!r} is not a number"):
        check_storage("--out", str(tmp_path))
