"""Both transports against scripted loopback servers: redirects, listings, malformed input.

Each test runs on both transports (it asks for ``s3_transport``) and expects the same outcome.
"""

from __future__ import annotations

import re
import ssl
from typing import Optional

import pytest

from s3torch_async import AsyncS3Client, S3ClientConfig, S3Exception
from s3torch_async._core import _listxml
from tests._scripted import Request, ScriptedServer, response
from tests._tls import self_signed

REGION = "us-east-1"
OTHER = "eu-west-1"
LAST_MODIFIED = "Wed, 02 Dec 2026 10:00:00 GMT"


def _client(url: str, **config) -> AsyncS3Client:
    return AsyncS3Client(
        REGION,
        endpoint=url,
        s3client_config=S3ClientConfig(**{"max_attempts": 1, **config}),
    )


def _signed_region(req: Request) -> Optional[str]:
    m = re.search(
        r"Credential=[^/]+/\d{8}/([^/]+)/s3/", req.headers.get("authorization", "")
    )
    return m.group(1) if m else None


def _object(req: Request, data: bytes = b"payload") -> bytes:
    headers = {"ETag": '"etag1"', "Last-Modified": LAST_MODIFIED}
    if req.method == "HEAD":
        return response(200, b"", {**headers, "Content-Length": str(len(data))})
    return response(200, data, headers)


def _listing(
    ns: Optional[str], keys: list[str], key_count: Optional[int] = None
) -> bytes:
    xmlns = f' xmlns="{ns}"' if ns else ""
    count = len(keys) if key_count is None else key_count
    contents = "".join(
        f"<Contents><Key>{k}</Key><LastModified>2026-12-02T10:00:00.000Z</LastModified>"
        f'<ETag>"e"</ETag><Size>3</Size><StorageClass>STANDARD</StorageClass></Contents>'
        for k in keys
    )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult{xmlns}>'
        f"<Name>bkt</Name><Prefix></Prefix><KeyCount>{count}</KeyCount>"
        f"<MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>{contents}"
        f"</ListBucketResult>"
    ).encode()


# -- defect 6: region redirects -------------------------------------------------------------


def _redirecting(status: int, code: str):
    def handler(req: Request) -> bytes:
        if _signed_region(req) == OTHER:
            if "list-type=2" in req.query:
                return response(200, _listing(None, ["a", "b"]))
            return _object(req)
        body = (
            f"<Error><Code>{code}</Code><Message>wrong region</Message>"
            f"<Region>{OTHER}</Region><RequestId>r1</RequestId></Error>"
        ).encode()
        if req.method == "HEAD":
            return response(status, b"", {"x-amz-bucket-region": OTHER})
        return response(status, body, {"x-amz-bucket-region": OTHER})

    return handler


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (301, "PermanentRedirect"),
        (307, "TemporaryRedirect"),
        (400, "AuthorizationHeaderMalformed"),
    ],
)
async def test_region_redirect_is_followed_once_resigned(s3_transport, status, code):
    with ScriptedServer(_redirecting(status, code)) as srv:
        async with _client(srv.url) as c:
            assert (await c.get_range("bkt", "k")).data == b"payload"
            first = len(srv.requests)
            assert (await c.head_object("bkt", "k")).size == 7
            keys = [o.key async for o in c.list_objects("bkt").objects()]
    assert keys == ["a", "b"]
    regions = [_signed_region(r) for r in srv.requests]
    # One redirect, then the bucket's region is remembered.
    assert first == 2
    assert regions[:2] == [REGION, OTHER]
    assert regions[2:] == [OTHER, OTHER]


async def test_region_redirect_is_not_followed_twice(s3_transport):
    def handler(req: Request) -> bytes:
        region = OTHER if _signed_region(req) == REGION else REGION
        body = "<Error><Code>PermanentRedirect</Code><Message>m</Message></Error>"
        return response(301, body.encode(), {"x-amz-bucket-region": region})

    with ScriptedServer(handler) as srv:
        async with _client(srv.url) as c:
            with pytest.raises(S3Exception) as info:
                await c.get_range("bkt", "k")
    assert info.value.status == 301
    assert len(srv.requests) == 2


# -- defect 7: redirects to another origin -----------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_redirect_to_another_origin_is_never_followed(s3_transport, status):
    with ScriptedServer(lambda req: _object(req, b"other host's bytes")) as other:

        def handler(req: Request) -> bytes:
            return response(status, b"", {"Location": other.url + req.target})

        with ScriptedServer(handler) as srv:
            async with _client(srv.url) as c:
                with pytest.raises(S3Exception) as info:
                    await c.get_range("bkt", "k")
                with pytest.raises(S3Exception):
                    await c.head_object("bkt", "k")
    assert info.value.status == status
    assert other.requests == []


# -- defect 8: listings under other namespaces -------------------------------------------------


@pytest.mark.parametrize(
    "ns",
    [
        "http://s3.amazonaws.com/doc/2006-03-01/",
        "http://doc.s3.amazonaws.com/2006-03-01/",
        None,
    ],
)
async def test_listing_is_parsed_whatever_the_namespace(s3_transport, ns):
    keys = ["x/1", "x/2", "y"]
    with ScriptedServer(lambda req: response(200, _listing(ns, keys))) as srv:
        async with _client(srv.url) as c:
            listed = [o.key async for o in c.list_objects("bkt").objects()]
    assert listed == keys


_S3_PAGE = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
    b"<Name>bkt</Name><Prefix></Prefix><KeyCount>3</KeyCount><MaxKeys>1000</MaxKeys>"
    b"<Delimiter>/</Delimiter><EncodingType>url</EncodingType>"
    b"<IsTruncated>false</IsTruncated>"
    b"<Contents><Key>a%26b+c%2B</Key><LastModified>2026-12-07T00:17:21.811Z</LastModified>"
    b"<ETag>&quot;0cc175b9c0f1b6a831c399e269772661&quot;</ETag>"
    b"<ChecksumAlgorithm>CRC32</ChecksumAlgorithm><ChecksumType>FULL_OBJECT</ChecksumType>"
    b"<Size>1</Size><StorageClass>STANDARD</StorageClass></Contents>"
    b"<Contents><Key>%C3%BC</Key><LastModified>2026-12-07T00:18:02.000Z</LastModified>"
    b"<ETag>&quot;e-2&quot;</ETag><Size>10485760</Size>"
    b"<StorageClass>GLACIER</StorageClass></Contents>"
    b"<CommonPrefixes><Prefix>d%2F/</Prefix></CommonPrefixes>"
    b"</ListBucketResult>"
)


async def test_an_s3_shaped_listing_page_reads_the_same_on_both(s3_transport):
    # The lean transport reads this shape with _listxml's scanner; botocore with its own
    # parser: the objects and prefixes must be the same.
    assert _listxml.scan(_S3_PAGE) is not None
    with ScriptedServer(lambda req: response(200, _S3_PAGE)) as srv:
        async with _client(srv.url) as c:
            page = await c.list_objects("bkt", delimiter="/").__anext__()
    assert [
        (o.key, o.etag, o.size, o.last_modified, o.storage_class)
        for o in page.object_info
    ] == [
        ("a&b c+", '"0cc175b9c0f1b6a831c399e269772661"', 1, 1796602641, "STANDARD"),
        ("\u00fc", '"e-2"', 10485760, 1796602682, "GLACIER"),
    ]
    assert page.common_prefixes == ["d//"]


async def test_listing_whose_key_count_disagrees_raises(s3_transport):
    body = _listing(None, ["a", "b"], key_count=3)
    with ScriptedServer(lambda req: response(200, body)) as srv:
        async with _client(srv.url) as c:
            with pytest.raises(S3Exception, match="KeyCount 3") as info:
                [o.key async for o in c.list_objects("bkt").objects()]
    assert info.value.operation == "ListObjectsV2"
    assert info.value.bucket == "bkt"


# -- defect 5: malformed answers and requests --------------------------------------------------


async def test_non_xml_listing_is_an_s3exception_retried_like_a_500(s3_transport):
    # botocore handles a 200 whose body does not parse like a 500 (S3 embeds some errors
    # in 200 responses): retried, then S3Exception. Both transports do the same.
    html = b"<html><body>not a listing"
    with ScriptedServer(
        lambda req: response(200, html, {"Content-Type": "text/html"})
    ) as srv:
        async with _client(srv.url, max_attempts=2) as c:
            with pytest.raises(S3Exception) as info:
                await c.list_objects("bkt").__anext__()
    assert info.value.operation == "ListObjectsV2"
    assert info.value.status == 500
    assert len(srv.requests) == 2


@pytest.mark.parametrize("value", ["a\r\nX-Injected: 1", "a\nb", "a\0b"])
async def test_crlf_in_if_match_is_a_value_error_naming_the_key(s3_transport, value):
    with ScriptedServer(_object) as srv:
        async with _client(srv.url) as c:
            with pytest.raises(ValueError, match=r"if_match .*s3://bkt/the-key"):
                await c.get_range("bkt", "the-key", if_match=value)
            with pytest.raises(ValueError, match=r"storage_class .*s3://bkt/the-key"):
                await c.put_object_bytes("bkt", "the-key", b"x", storage_class=value)
    assert srv.requests == []


async def test_crlf_in_a_header_is_the_same_s3exception_on_both(s3_transport):
    with ScriptedServer(_object) as srv:
        async with AsyncS3Client(
            REGION,
            endpoint=srv.url,
            user_agent="agent\r\nX-Injected: 1",
            s3client_config=S3ClientConfig(max_attempts=1),
        ) as c:
            with pytest.raises(S3Exception) as info:
                await c.get_range("bkt", "k")
    assert str(info.value).startswith(
        "Client error: GetObject s3://bkt/k failed: HTTPClientError"
    )
    assert srv.requests == []


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.mark.parametrize("scheme", ["https", "HTTPS", "Https"])
async def test_https_endpoint_in_any_case_trusts_aws_ca_bundle(
    s3_transport, tls_files, monkeypatch, scheme
):
    cert, key = tls_files
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    monkeypatch.setenv("AWS_CA_BUNDLE", cert)
    with ScriptedServer(_object, tls=ctx) as srv:
        url = srv.url.replace("https", scheme, 1)
        async with _client(url) as c:
            assert (await c.get_range("bkt", "k")).data == b"payload"
