"""DVC push/pull of real pipeline outputs: the project's default directory remote, then
an S3 remote served by moto on 127.0.0.1.

moto lives in its own venv (``make install-s3`` → .venv-s3/) because it needs a newer
botocore than dvc-s3's aiobotocore allows. The bucket is made with the main venv's botocore.
"""

from __future__ import annotations

import hashlib
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from dvc_repo import commit, make_repo, run
from serve_helpers import free_port

pytestmark = pytest.mark.slow

MOTO_SERVER = REPO / ".venv-s3" / "bin" / "moto_server"
BUCKET = "reranktune-dvc"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
AWS_VARIABLES = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
)


def _isolated(env: dict[str, str], home: Path) -> dict[str, str]:
    """Keep botocore away from the developer's own AWS setup and from instance metadata."""
    for name in ("config", "credentials"):
        (home / name).write_text("")
    env = {k: v for k, v in env.items() if k not in AWS_VARIABLES}
    return {
        **env,
        "AWS_CONFIG_FILE": str(home / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory):
    if not MOTO_SERVER.exists():
        pytest.skip(f"{MOTO_SERVER} is missing: run `make install-s3` (make test does it)")
    port = free_port()
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("w")
    server = subprocess.Popen(
        [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None, "moto_server exited; see its log"
                assert time.monotonic() < deadline, "moto_server did not listen within 60 s"
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def _s3_client(endpoint: str):
    import botocore.session

    return botocore.session.get_session().create_client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


def _tracked_files(root: Path, outs: list[str]) -> dict[str, str]:
    """md5 of every file under the given DVC outputs, by relative path."""
    hashes = {}
    for out in outs:
        path = root / out
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for file in files:
            hashes[str(file.relative_to(root))] = hashlib.md5(file.read_bytes()).hexdigest()
    return hashes


def test_push_wipe_pull_restores_every_output_and_repro_is_a_no_op(
    s3_endpoint, tmp_path, tiny_bert_dir
):
    root = tmp_path / "repo"
    root.mkdir()
    env = _isolated(make_repo(root, tiny_bert_dir, stages=("sdg", "prep")), tmp_path)
    shutil.copy(REPO / ".dvc" / "config", root / ".dvc" / "config")  # the project's default remote
    _s3_client(s3_endpoint).create_bucket(Bucket=BUCKET)

    run(["dvc", "repro"], root, env)
    run(["dvc", "push"], root, env)
    local_store = tmp_path / "reranktune-dvc-store"  # ../reranktune-dvc-store from the repo
    assert len(list((local_store / "files" / "md5").rglob("*"))) > 5

    run(["dvc", "remote", "add", "-d", "s3", f"s3://{BUCKET}/store"], root, env)
    run(["dvc", "remote", "modify", "s3", "endpointurl", s3_endpoint], root, env)
    run(["dvc", "remote", "modify", "s3", "region", "us-east-1"], root, env)
    commit(root, env, "outputs and the S3 remote")
    assert "testing" not in (root / ".dvc" / "config").read_text()

    lock = yaml.safe_load((root / "dvc.lock").read_text())
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    # the cached outputs (the *_details.json reports beside them are git-tracked, cache: false)
    outs = [out for stage in stages.values() for out in stage["outs"] if isinstance(out, str)]
    assert outs == ["data/sdg/qa.jsonl", "data/prep"]
    before = _tracked_files(root, outs)
    assert len(before) >= 5, before
    assert before["data/sdg/qa.jsonl"] == lock["stages"]["sdg"]["outs"][0]["md5"]

    denied = subprocess.run(["dvc", "push"], cwd=root, env=env, capture_output=True, text=True)
    assert denied.returncode != 0 and "credentials" in (denied.stdout + denied.stderr).lower()

    env = {**env, **CREDENTIALS}
    out = run(["dvc", "push"], root, env)
    assert f"{len(before) + 1} files pushed" in out, out  # every file + the data/prep .dir listing
    keys = {
        obj["Key"] for obj in _s3_client(s3_endpoint).list_objects_v2(Bucket=BUCKET)["Contents"]
    }
    md5 = before["data/sdg/qa.jsonl"]
    assert f"store/files/md5/{md5[:2]}/{md5[2:]}" in keys

    shutil.rmtree(root / ".dvc" / "cache")
    for out_path in outs:
        target = root / out_path
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    assert "deleted" in run(["dvc", "status"], root, env)

    run(["dvc", "pull"], root, env)
    assert _tracked_files(root, outs) == before
    assert "in sync" in run(["dvc", "status", "-c"], root, env)
    out = run(["dvc", "repro"], root, env)
    assert "Data and pipelines are up to date" in out and "Running stage" not in out
    assert run(["git", "status", "--porcelain"], root, env) == ""
