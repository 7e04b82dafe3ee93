"""Shared fixtures: a real moto S3 server on loopback, a hermetic AWS environment, buckets."""

from __future__ import annotations

import os
import signal
import tempfile
import uuid
from collections.abc import Iterator
from typing import Any, Callable

import boto3
import botocore.config
import pytest
from hypothesis import HealthCheck, settings

from s3torch_async._runner import get_runner

settings.register_profile(
    "ci",
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "dev",
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

REGION = "us-east-1"

# Hermetic AWS environment, set at import so that nothing (moto included) ever reads real
# credentials or config files, and no credential provider probes an off-machine address.
for _name in [n for n in os.environ if n.startswith("AWS_")]:
    del os.environ[_name]
_empty_dir = tempfile.mkdtemp(prefix="s3torch-async-aws-")
for _fname in ("config", "credentials"):
    open(os.path.join(_empty_dir, _fname), "w").close()
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.path.join(_empty_dir, "config"),
        "AWS_SHARED_CREDENTIALS_FILE": os.path.join(_empty_dir, "credentials"),
        "MOTO_ALLOW_NONEXISTENT_REGION": "true",
    }
)


# -- both transports --------------------------------------------------------------------------
#
# Every test that talks to S3 runs once per transport: ``moto_endpoint`` depends on the
# session-scoped, parametrised ``s3_transport`` fixture, so every test whose fixtures reach the
# server (``bucket``, ``put``, ``boto_s3``, ``endpoint``...) is collected as ``[lean]`` and
# ``[botocore]``, and every fixture built on the server (module-scoped clients included) is
# rebuilt when the transport changes. Tests that never reach a server are not doubled; a test
# of a scripted server asks for ``s3_transport`` itself. ``--transport lean|botocore`` (or
# ``S3TORCH_ASYNC_TEST_TRANSPORT``) runs one of them only.
TRANSPORTS = ("lean", "botocore")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--transport",
        choices=[*TRANSPORTS, "both"],
        default=os.environ.get("S3TORCH_ASYNC_TEST_TRANSPORT", "both"),
        help="transport(s) to run the S3 tests on (default: both)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "s3_transport" not in metafunc.fixturenames:
        return
    chosen = metafunc.config.getoption("--transport")
    names = list(TRANSPORTS) if chosen == "both" else [chosen]
    if "transport" in metafunc.fixturenames:
        names = names[:1]  # the test picks its transport itself
    metafunc.parametrize("s3_transport", names, indirect=True, scope="session")


@pytest.fixture(scope="session")
def s3_transport(request: pytest.FixtureRequest) -> Iterator[str]:
    """The transport under test (``lean`` or ``botocore``), selected for the session part."""
    name = getattr(request, "param", "lean")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("S3TORCH_ASYNC_FAST_PATH", "0" if name == "botocore" else "1")
        yield name


@pytest.fixture(scope="session")
def moto_endpoint(s3_transport: str) -> Iterator[str]:
    """URL of a moto S3 server on a free loopback port, shared by the session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        # The sync classes share clients per configuration for the whole process; those
        # built for this server (and this transport) must not outlive it.
        get_runner().close()
        server.stop()


@pytest.fixture
def endpoint(moto_endpoint: str) -> str:
    return moto_endpoint


@pytest.fixture(scope="session")
def boto_s3(moto_endpoint: str) -> Any:
    """A plain boto3 client for arranging and checking state (not the code under test)."""
    return boto3.client(
        "s3",
        region_name=REGION,
        endpoint_url=moto_endpoint,
        config=botocore.config.Config(
            s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}
        ),
    )


@pytest.fixture
def make_bucket(boto_s3: Any) -> Callable[[], str]:
    def factory() -> str:
        name = f"test-{uuid.uuid4().hex[:20]}"
        boto_s3.create_bucket(Bucket=name)
        return name

    return factory


@pytest.fixture
def bucket(make_bucket: Callable[[], str]) -> str:
    """A fresh, empty bucket for one test."""
    return make_bucket()


@pytest.fixture
def put(boto_s3: Any, bucket: str) -> Callable[..., None]:
    def _put(key: str, data: bytes, bucket_name: str = "") -> None:
        boto_s3.put_object(Bucket=bucket_name or bucket, Key=key, Body=data)

    return _put


@pytest.fixture
def default_sigint() -> Iterator[None]:
    """Python's own Ctrl-C handling for one test, whatever earlier tests left behind.

    Tests that send a real SIGINT check what a user's Ctrl-C does; a library used by an
    earlier test may have replaced the handler or blocked the signal in the main thread.
    """
    unblocked = signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.pthread_sigmask(signal.SIG_SETMASK, unblocked)
