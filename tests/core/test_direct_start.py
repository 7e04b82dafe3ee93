"""The start without botocore (``_direct``) gives botocore's answers, and leaves it the rest.

The oracle is botocore itself: the base URL today's lean transport derives from botocore's
endpoint rules (a presigned probe URL), the credentials and CA bundle its session resolves,
its SigV4 presigning for the signing scope.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Optional
from urllib.parse import parse_qs, urlsplit

import pytest

from s3torch_async import S3ClientConfig
from s3torch_async._core import _direct, _session
from s3torch_async._core._botostart import BotocoreStart, make_session
from s3torch_async._core._checksum import ChecksumPolicy
from s3torch_async._core._lean import BotocoreSide, LeanTransport
from s3torch_async._core.client import AsyncS3Client

REGION = "us-east-1"


def _plan(
    region: str = REGION,
    endpoint: Optional[str] = None,
    *,
    force_path_style: bool = False,
    unsigned: bool = False,
    profile: Optional[str] = None,
) -> Any:
    return _direct.plan(
        region=region,
        endpoint=endpoint,
        path_style=_session.wants_path_style(endpoint, force_path_style),
        unsigned=unsigned,
        profile=profile,
    )


async def _botocore_start(
    region: str, endpoint: Optional[str], force_path_style: bool = False
) -> BotocoreStart:
    config = S3ClientConfig(force_path_style=force_path_style)
    settings = _session.resolve(region, endpoint, config, "test")
    return await BotocoreStart.open(
        make_session(settings),
        settings,
        connect_timeout=1,
        read_timeout=1,
        first_answer_timeout=1,
    )


async def _botocore_base(
    region: str, endpoint: Optional[str], bucket: str, force_path_style: bool
) -> Any:
    """The base URL today's lean transport takes from botocore's endpoint rules."""
    start = await _botocore_start(region, endpoint, force_path_style)

    async def opened() -> BotocoreSide:
        return start

    lean = LeanTransport(
        opened,
        credentials=None,
        region=region,
        endpoint=endpoint,
        pool_size=1,
        connect_timeout=1,
        read_timeout=1,
        extra_headers={},
        unsigned=True,
        tls=False,
    )
    try:
        return await lean._base(bucket)
    finally:
        await lean.aclose()


# (region, endpoint, force_path_style, bucket, decided directly)
ADDRESSING = [
    ("us-east-1", None, False, "mybucket", True),
    ("eu-west-1", None, False, "mybucket", True),
    ("ap-southeast-2", None, False, "my-bucket-1", True),
    ("me-central-1", None, False, "a" * 63, True),
    ("us-west-2", None, False, "abc", True),
    ("us-west-2", None, False, "ab", False),
    ("us-west-2", None, False, "a" * 64, False),
    ("eu-west-1", None, False, "my.bucket", False),
    ("us-east-1", None, False, "MyBucket", False),
    ("us-east-1", None, False, "ab-", False),
    ("us-east-1", None, False, "xn--abc", False),
    ("us-east-1", None, False, "data--x-s3", False),
    ("eu-west-1", None, True, "mybucket", False),
    ("us-east-1", "http://127.0.0.1:9000", False, "mybucket", True),
    ("us-east-1", "http://[::1]:9000", False, "mybucket", True),
    ("us-east-1", "http://localhost:9000", False, "mybucket", True),
    ("eu-west-1", "http://minio.local:9000", False, "mybucket", True),
    ("eu-west-1", "https://minio.local", False, "my.bucket", True),
    ("us-east-1", "http://minio.local:9000/pre", False, "mybucket", True),
    ("us-east-1", "http://minio.local:9000/pre/", True, "My_Bucket", True),
    ("us-east-1", "https://x.example:8443/a/b", False, "mybucket", True),
    ("us-east-1", "HTTP://X.Example", False, "mybucket", True),
    ("cn-north-1", "https://x.example", False, "mybucket", True),
    ("default", "http://ceph.internal:7480", False, "mybucket", True),
    ("us-east-1", "http://x.example", False, "a-s3alias", True),
    ("us-east-1", "http://x.example", False, "ab--x-s3", False),
]


@pytest.mark.parametrize(
    ("region", "endpoint", "force_path_style", "bucket", "direct"), ADDRESSING
)
async def test_base_urls_are_botocores(
    region, endpoint, force_path_style, bucket, direct
):
    plan = _plan(region, endpoint, force_path_style=force_path_style)
    assert isinstance(plan, _direct.DirectStart), plan
    ours = plan.base(bucket)
    if direct:
        assert ours is not None
        assert ours == await _botocore_base(region, endpoint, bucket, force_path_style)
    else:
        assert ours is None  # botocore's rules are asked, as before


@pytest.mark.parametrize(
    ("region", "endpoint"),
    [
        ("eu-west-1", None),
        ("us-east-1", "http://127.0.0.1:9000"),
        ("ap-south-2", "https://minio.local"),
    ],
)
async def test_credentials_and_signing_scope_are_botocores(
    region, endpoint, monkeypatch
):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "session-token")
    monkeypatch.setenv("AWS_SECURITY_TOKEN", "security-token")  # botocore prefers it
    plan = _plan(region, endpoint)
    assert isinstance(plan, _direct.DirectStart)
    start = await _botocore_start(region, endpoint)
    try:
        frozen = await (await start.session.get_credentials()).get_frozen_credentials()
    finally:
        await start.aclose()
    assert plan.credentials is not None
    assert (
        plan.credentials.access_key,
        plan.credentials.secret_key,
        plan.credentials.token,
    ) == (frozen.access_key, frozen.secret_key, frozen.token)
    # botocore's SigV4 presigning names the signing scope: the client's region, as ours.
    import botocore.session
    from botocore.config import Config

    s3 = botocore.session.get_session().create_client(
        "s3",
        region_name=region,
        endpoint_url=endpoint,
        config=Config(signature_version="s3v4"),
    )
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": "mybucket", "Key": "k"}, ExpiresIn=60
    )
    query = parse_qs(urlsplit(url).query)
    access_key, _date, scope_region, service, _ = query["X-Amz-Credential"][0].split(
        "/"
    )
    assert (access_key, scope_region, service) == ("AKIDEXAMPLE", region, "s3")
    assert query["X-Amz-Security-Token"] == ["security-token"]


@pytest.mark.parametrize(
    ("region", "endpoint", "bucket"),
    [
        ("eu-west-1", None, "mybucket"),
        ("us-east-1", "http://127.0.0.1:9000", "my.bucket"),
        ("ap-south-2", "https://minio.local:8443/pre", "data"),
    ],
)
async def test_a_direct_request_is_signed_as_botocore_signs_it(
    region, endpoint, bucket
):
    """The whole signature: our signer, the direct start's credentials and address."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest

    from s3torch_async._core._lean import EMPTY_SHA256, SigV4Signer

    plan = _plan(region, endpoint)
    assert isinstance(plan, _direct.DirectStart)
    assert plan.credentials is not None
    base = plan.base(bucket)
    assert base is not None
    origin, host, prefix = base
    path = prefix + "dir/a%20b.bin"
    start = await _botocore_start(region, endpoint)
    try:
        botocores = await (
            await start.session.get_credentials()
        ).get_frozen_credentials()
    finally:
        await start.aclose()
    request = AWSRequest(
        method="GET", url=origin + path, headers={"X-Amz-Content-SHA256": EMPTY_SHA256}
    )
    S3SigV4Auth(botocores, "s3", region).add_auth(request)
    headers: dict[str, str] = {}
    SigV4Signer(region).sign(
        "GET",
        host,
        path,
        [],
        headers,
        await plan.credentials.get_frozen_credentials(),
        request.headers["X-Amz-Date"],
    )
    assert headers["Authorization"] == request.headers["Authorization"]
    assert headers["x-amz-security-token"] == request.headers["X-Amz-Security-Token"]


def test_ca_bundle_is_botocores(monkeypatch):
    from botocore.httpsession import get_cert_path

    plan = _plan("eu-west-1")
    assert plan.ca_file == get_cert_path(True) == _direct.default_ca_file()
    monkeypatch.setenv("AWS_CA_BUNDLE", "/etc/ssl/custom.pem")
    assert _plan("eu-west-1").ca_file == "/etc/ssl/custom.pem"
    monkeypatch.setenv("AWS_CA_BUNDLE", "")  # as botocore: empty means the default
    assert _plan("eu-west-1").ca_file == get_cert_path(True)
    assert _plan(REGION, "http://127.0.0.1:9000").ca_file is None  # no TLS


@pytest.mark.parametrize(
    ("request_setting", "response_setting"),
    [
        (None, None),
        ("when_required", None),
        ("WHEN_SUPPORTED", "when_required"),
        ("", "when_required"),
    ],
)
def test_checksum_settings_are_read_as_botocore_reads_them(
    request_setting, response_setting, monkeypatch
):
    for name, value in (
        ("AWS_REQUEST_CHECKSUM_CALCULATION", request_setting),
        ("AWS_RESPONSE_CHECKSUM_VALIDATION", response_setting),
    ):
        if value is not None:
            monkeypatch.setenv(name, value)
    settings = _session.resolve(REGION, None, S3ClientConfig(), "test")
    expected = ChecksumPolicy.from_session(make_session(settings))
    assert _plan().checksums == expected


def test_a_bad_checksum_setting_raises_the_same_error(monkeypatch):
    monkeypatch.setenv("AWS_REQUEST_CHECKSUM_CALCULATION", "always")
    with pytest.raises(ValueError, match="request_checksum_calculation") as ours:
        _plan()
    settings = _session.resolve(REGION, None, S3ClientConfig(), "test")
    with pytest.raises(ValueError) as botocores:
        ChecksumPolicy.from_session(make_session(settings))
    assert str(ours.value) == str(botocores.value)


# -- what falls back ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", _direct.BOTOCORE_DECIDES)
def test_each_botocore_setting_in_the_environment_falls_back(name, monkeypatch):
    monkeypatch.setenv(name, "")  # set at all: botocore reads even an empty value
    why = _plan()
    assert isinstance(why, str)
    assert name in why


# Variables botocore reads that change nothing for a client started directly, and why.
HARMLESS_ENV = {
    "AWS_DEFAULT_REGION": "the client passes its region",
    "AWS_CONFIG_FILE": "read by _direct",
    "AWS_SHARED_CREDENTIALS_FILE": "read by _direct",
    "AWS_CA_BUNDLE": "read by _direct",
    "AWS_REQUEST_CHECKSUM_CALCULATION": "read by _direct",
    "AWS_RESPONSE_CHECKSUM_VALIDATION": "read by _direct",
    "AWS_METADATA_SERVICE_TIMEOUT": "credentials come from the environment",
    "AWS_METADATA_SERVICE_NUM_ATTEMPTS": "credentials come from the environment",
    "AWS_EC2_METADATA_SERVICE_ENDPOINT": "credentials come from the environment",
    "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE": "credentials come from the environment",
    "AWS_EC2_METADATA_V1_DISABLED": "credentials come from the environment",
    "AWS_IMDS_USE_IPV6": "credentials come from the environment",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "endpoint_url/services keys fall back",
    "AWS_CSM_ENABLED": "client-side monitoring of botocore's own calls",
    "AWS_CSM_HOST": "client-side monitoring of botocore's own calls",
    "AWS_CSM_PORT": "client-side monitoring of botocore's own calls",
    "AWS_CSM_CLIENT_ID": "client-side monitoring of botocore's own calls",
    "AWS_ENDPOINT_DISCOVERY_ENABLED": "S3 has no endpoint discovery",
    "AWS_STS_REGIONAL_ENDPOINTS": "STS only",
    "AWS_RETRY_MODE": "retries are ours (one attempt per botocore call)",
    "AWS_MAX_ATTEMPTS": "retries are ours (one attempt per botocore call)",
    "AWS_SDK_UA_APP_ID": "the lean transport sends its own user agent on both starts",
    "AWS_REQUEST_MIN_COMPRESSION_SIZE_BYTES": "no S3 operation compresses requests",
    "AWS_DISABLE_REQUEST_COMPRESSION": "no S3 operation compresses requests",
    "AWS_ACCOUNT_ID_ENDPOINT_MODE": "account endpoints are DynamoDB's",
    "BOTOCORE_TCP_KEEPALIVE": "the lean transport's sockets are its own on both starts",
}


def test_every_variable_botocore_reads_is_classified():
    from botocore.configprovider import (
        BOTOCORE_DEFAUT_SESSION_VARIABLES,
        DEFAULT_S3_CONFIG_VARS,
    )

    names: set[str] = set()
    for spec in (
        *BOTOCORE_DEFAUT_SESSION_VARIABLES.values(),
        *DEFAULT_S3_CONFIG_VARS.values(),
    ):
        env = spec[1]
        names.update([env] if isinstance(env, str) else env or [])
    decides = set(_direct.BOTOCORE_DECIDES)
    assert not decides & set(HARMLESS_ENV)
    assert names - decides - set(HARMLESS_ENV) == set()


def test_aws_partition_regions_are_botocores():
    import json

    import botocore

    path = Path(botocore.__file__).parent / "data" / "partitions.json"
    partitions = {p["id"]: p for p in json.loads(path.read_text())["partitions"]}
    assert partitions["aws"]["regionRegex"] == _direct.AWS_REGION.pattern
    for region in partitions["aws"]["regions"]:
        assert isinstance(_plan(region), _direct.DirectStart) == (
            region != "aws-global"
        )
    for other in ("cn-north-1", "us-gov-west-1", "us-iso-east-1", "eusc-de-east-1"):
        assert isinstance(_plan(other), str)


@pytest.mark.parametrize(
    ("kwargs", "env", "reason"),
    [
        ({"profile": "dev"}, {}, "profile"),
        ({}, {"AWS_ACCESS_KEY_ID": ""}, "no credentials"),
        ({}, {"AWS_SECRET_ACCESS_KEY": ""}, "no credentials"),
        ({"region": "aws-global"}, {}, "aws-global"),
        ({"region": "fips-us-east-1"}, {}, "fips"),
        ({"region": "us-east-1-fips"}, {}, "fips"),
        ({"region": ""}, {}, "region"),
        ({"region": "cn-north-1"}, {}, "aws partition"),
        ({"endpoint": "ftp://x.example"}, {}, "endpoint"),
        ({"endpoint": "127.0.0.1:9000"}, {}, "endpoint"),
        ({"endpoint": "http://user:pw@x.example"}, {}, "endpoint"),
        ({"endpoint": "http://x.example/?a=1"}, {}, "endpoint"),
        ({"endpoint": "http://x.example:99999"}, {}, "endpoint"),
        ({"endpoint": "http://bad_host.example"}, {}, "endpoint"),
        ({"endpoint": "http://x.example/a%20b"}, {}, "endpoint"),
        ({}, {"HTTPS_PROXY": "http://proxy:3128"}, "proxy"),
        ({}, {"http_proxy": "http://proxy:3128"}, "proxy"),
    ],
)
def test_each_undecided_configuration_falls_back(kwargs, env, reason, monkeypatch):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    why = _plan(**kwargs)
    assert isinstance(why, str)
    assert reason in why


def test_unsigned_needs_no_credentials(monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    assert isinstance(_plan(), str)
    plan = _plan(unsigned=True)
    assert isinstance(plan, _direct.DirectStart)
    assert plan.credentials is None


@pytest.mark.parametrize(
    ("which", "text", "direct"),
    [
        ("config", "[default]\nregion = eu-west-1\noutput = json\ncli_pager =\n", True),
        ("config", "[profile other]\ns3 =\n  addressing_style = virtual\n", True),
        ("config", "[default]\ns3 =\n  use_accelerate_endpoint = true\n", False),
        ("config", "[profile default]\nendpoint_url = http://10.0.0.1:9000\n", False),
        ("config", '[profile "default"]\nca_bundle = /x.pem\n', False),
        ("config", "[default]\nservices = mine\n", False),
        ("config", "[default]\nrequest_checksum_calculation = when_required\n", False),
        ("config", "not an ini file\n", False),
        (
            "credentials",
            "[default]\naws_access_key_id = a\naws_secret_access_key = b\n",
            True,
        ),
        ("credentials", "[default]\nca_bundle = /x.pem\n", False),
    ],
)
def test_config_files_that_change_nothing_and_those_that_do(
    which, text, direct, tmp_path, monkeypatch
):
    path = tmp_path / which
    path.write_text(text)
    variable = "AWS_CONFIG_FILE" if which == "config" else "AWS_SHARED_CREDENTIALS_FILE"
    monkeypatch.setenv(variable, str(path))
    plan = _plan()
    assert isinstance(plan, _direct.DirectStart) == direct, plan


def test_config_files_default_to_the_home_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("AWS_CONFIG_FILE")
    monkeypatch.delenv("AWS_SHARED_CREDENTIALS_FILE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert isinstance(_plan(), _direct.DirectStart)  # no ~/.aws at all
    (tmp_path / ".aws").mkdir()
    (tmp_path / ".aws" / "config").write_text(
        "[default]\ns3 =\n  addressing_style = path\n"
    )
    assert "s3" in _plan()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"AWS_S3_US_EAST_1_REGIONAL_ENDPOINT": "regional"}, "mybucket.s3.us-east-1."),
        ({"AWS_USE_DUALSTACK_ENDPOINT": "true"}, "mybucket.s3.dualstack.us-east-1."),
        ({"AWS_USE_FIPS_ENDPOINT": "true"}, "mybucket.s3-fips.us-east-1."),
    ],
)
async def test_a_setting_that_changes_the_address_gets_botocores_address(
    env, expected, monkeypatch
):
    monkeypatch.setenv(
        "S3TORCH_ASYNC_FAST_PATH", "1"
    )  # the lean transport, whichever ran
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    async with AsyncS3Client(REGION) as client:
        assert client._start is not None
        assert client._start.startswith("botocore")
        transport = client._transport
        assert transport is not None
        base = await transport._base("mybucket")  # type: ignore[attr-defined]
    assert base[1].startswith(expected)


# -- botocore, opened on demand ------------------------------------------------------------------


async def test_botocore_opens_once_for_concurrent_needs_and_closes_with_the_client(
    s3_transport, endpoint, bucket, put, boto_s3
):
    if s3_transport == "botocore":
        pytest.skip("the direct start is the lean transport's")
    keys = [f"k{i}" for i in range(4)]
    for key in keys:
        put(key, b"x")
    client = AsyncS3Client(REGION, endpoint=endpoint)
    assert (await client.get_range(bucket, "k0")).data == b"x"
    assert client._start == "direct"
    lean = client._transport
    assert isinstance(lean, LeanTransport)
    assert lean._side is None  # a GET needs no botocore
    opens = 0
    open_botocore = lean._open_botocore

    async def counting() -> BotocoreSide:
        nonlocal opens
        opens += 1
        return await open_botocore()

    lean._open_botocore = counting
    await asyncio.gather(*(client.delete_object(bucket, key) for key in keys))
    assert opens == 1
    assert boto_s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    side = lean._side
    assert isinstance(side, BotocoreStart)
    await client.aclose()
    assert lean._side is None
    assert side._stack is None  # the aiobotocore client was closed


async def test_a_bucket_not_decided_directly_is_addressed_by_botocore(
    s3_transport, endpoint, make_bucket, boto_s3
):
    if s3_transport == "botocore":
        pytest.skip("the direct start is the lean transport's")
    # "--" carries meaning to botocore's rules (S3 Express, Outposts...): they decide.
    name = f"cold--{make_bucket()}"
    boto_s3.create_bucket(Bucket=name)
    boto_s3.put_object(Bucket=name, Key="obj", Body=b"double-dash")
    async with AsyncS3Client(REGION, endpoint=endpoint) as client:
        assert client._start == "direct"
        assert (await client.get_range(name, "obj")).data == b"double-dash"
        lean = client._transport
        assert isinstance(lean, LeanTransport)
        assert lean._side is not None  # asked botocore's endpoint rules
        assert lean._base_urls[name] == await _botocore_base(
            REGION, endpoint, name, False
        )
