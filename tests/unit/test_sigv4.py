"""Our SigV4 signer must produce exactly botocore's signature for the requests it signs."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from s3torch_async._core._lean import EMPTY_SHA256, SigV4Signer


@pytest.mark.parametrize("token", [None, "session-token"])
@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/bucket/key", []),
        ("/bucket/a%20b/c%2Bd~e", []),
        ("/bucket/", [("list-type", "2"), ("prefix", "a b/ü"), ("max-keys", "1000")]),
        ("/", [("continuation-token", "1/2+3=="), ("encoding-type", "url")]),
    ],
)
def test_signature_matches_botocore(path, query, token):
    creds = Credentials(
        "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token
    )
    host = "127.0.0.1:9000"
    qs = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in query)
    url = f"http://{host}{path}" + (f"?{qs}" if qs else "")
    request = AWSRequest(
        method="GET",
        url=url,
        headers={
            "x-amz-request-payer": "requester",
            "X-Amz-Content-SHA256": EMPTY_SHA256,
        },
    )
    S3SigV4Auth(creds, "s3", "eu-west-1").add_auth(request)
    amz_date = request.headers["X-Amz-Date"]

    headers = {"x-amz-request-payer": "requester"}
    SigV4Signer("eu-west-1").sign(
        "GET", host, path, query, headers, creds.get_frozen_credentials(), amz_date
    )
    assert headers["Authorization"] == request.headers["Authorization"]
    assert headers.get("x-amz-security-token") == token


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("bkt.s3.amazonaws.com", "bkt.s3.eu-west-1.amazonaws.com"),
        ("bkt.s3.us-east-2.amazonaws.com", "bkt.s3.eu-west-1.amazonaws.com"),
        ("s3.us-east-1.amazonaws.com", "s3.eu-west-1.amazonaws.com"),
        (
            "bkt.s3-fips.dualstack.us-east-1.amazonaws.com",
            "bkt.s3-fips.dualstack.eu-west-1.amazonaws.com",
        ),
        ("example.com", None),
    ],
)
def test_region_redirect_base_stays_within_s3(host, expected):
    from s3torch_async._core._lean import LeanTransport

    async def no_botocore() -> Any:
        raise AssertionError("the region redirect must not need botocore")

    lean = LeanTransport(
        no_botocore,
        credentials=None,
        region="us-east-1",
        endpoint=None,
        pool_size=1,
        connect_timeout=1,
        read_timeout=1,
        extra_headers={},
        unsigned=True,
        tls=False,
    )
    base = lean._region_base((f"https://{host}", host, "/"), "eu-west-1")
    if expected is None:
        assert base is None
    else:
        assert base == (f"https://{expected}", expected, "/")
