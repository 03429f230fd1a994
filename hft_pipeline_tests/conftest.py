"""Fixtures shared by every test: the real market data in ../shared/data, when present."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real Databento / LOBSTER / CME files; skips the test where they are absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real market data not found at {SHARED_DATA} (CI has it beside the repo)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def moto_endpoint() -> str:
    """moto's real S3 HTTP server on 127.0.0.1: the same boto3 path that talks to R2."""
    import socket

    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch):
    """An empty bucket on the moto server, with the environment a user sets for R2."""
    import uuid

    import boto3

    monkeypatch.setenv("HFT_R2_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    name = f"hft-test-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=name)
    return client, name


def upload_folder(client, bucket: str, folder: Path, prefix: str = "") -> list[str]:
    """Uploads every file under ``folder`` keeping relative paths as keys."""
    keys = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        key = prefix + path.relative_to(folder).as_posix()
        client.upload_file(str(path), bucket, key)
        keys.append(key)
    return keys
