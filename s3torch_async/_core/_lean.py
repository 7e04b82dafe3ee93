"""The lean data plane: hot S3 calls signed here and sent on our own small HTTP/1.1 client.

botocore's generic request pipeline (endpoint rules, event hooks, response parsing) costs about
1.2 ms of CPU per request, and aiohttp's request machinery most of what is left, which caps
small-object reads and listing far below what the network allows. For GetObject, HeadObject,
ListObjectsV2, PutObject and UploadPart only, this module:

* takes credentials, the region and each bucket's base URL from the aiobotocore client (so
  profiles, refreshable credentials, endpoint rules and addressing style stay botocore's);
  endpoints that botocore would reach through a proxy stay on botocore's path;
* signs requests with SigV4 itself (verified against botocore's signer in the unit tests);
* sends them with ``_http.HTTPPool`` (bodies go straight into the caller's buffers);
* applies botocore's *standard* retry policy (same retryable codes and statuses, same
  ``max_attempts``, exponential backoff with full jitter, capped at 20 s);
* turns error responses into the same ``ClientError`` shape botocore produces, so
  ``_translate`` gives the same ``S3Exception`` messages on both paths.

Everything else (multipart control, copy, delete) stays on the aiobotocore client.
"""

from __future__ import annotations

import asyncio
import calendar
import hashlib
import hmac
import random
import ssl
import time
import xml.etree.ElementTree as ET
from collections.abc import Awaitable
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Any, Callable, Optional, TypeVar
from urllib.parse import quote, unquote_plus, urlsplit

from botocore.exceptions import ClientError
from botocore.utils import get_environ_proxies

from ._http import HTTPPool, HTTPResponse

__all__ = ["LeanTransport", "SigV4Signer", "is_retryable"]

T = TypeVar("T")

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
_PROBE_KEY = "s3torch-async-probe"
MAX_BACKOFF = 20.0

# botocore.retries.standard's classification, kept identical.
_TRANSIENT_STATUS = frozenset({500, 502, 503, 504})
_RETRYABLE_CODES = frozenset(
    {
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "EC2ThrottledException",
    }
)
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    asyncio.TimeoutError,
    ConnectionError,  # _http's errors, resets, refused connections
)


def is_retryable(exc: BaseException) -> bool:
    """Whether botocore's standard retry mode would retry this failure."""
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = exc.response.get("Error", {}).get("Code")
        return status in _TRANSIENT_STATUS or code in _RETRYABLE_CODES
    return isinstance(exc, _CONNECTION_ERRORS)


class SigV4Signer:
    """AWS Signature Version 4 for S3 requests without a body."""

    def __init__(self, region: str) -> None:
        self._region = region
        self._keys: dict[tuple[str, str], bytes] = {}

    def _signing_key(self, secret: str, datestamp: str) -> bytes:
        cache_key = (secret, datestamp)
        key = self._keys.get(cache_key)
        if key is None:
            k = hmac.new(
                f"AWS4{secret}".encode(), datestamp.encode(), hashlib.sha256
            ).digest()
            for part in (self._region, "s3", "aws4_request"):
                k = hmac.new(k, part.encode(), hashlib.sha256).digest()
            if len(self._keys) > 16:
                self._keys.clear()
            self._keys[cache_key] = key = k
        return key

    def sign(
        self,
        method: str,
        host: str,
        path: str,
        query: list[tuple[str, str]],
        headers: dict[str, str],
        credentials: Any,
        amz_date: Optional[str] = None,
        payload_hash: str = EMPTY_SHA256,
    ) -> None:
        """Add ``x-amz-date``, ``x-amz-content-sha256`` and ``Authorization`` to ``headers``.

        ``path`` must already be URI-encoded (S3 signs it as sent); ``headers`` keys lower-case.
        """
        amz_date = amz_date or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        datestamp = amz_date[:8]
        headers["x-amz-date"] = amz_date
        headers["x-amz-content-sha256"] = payload_hash
        if credentials.token:
            headers["x-amz-security-token"] = credentials.token
        signed = {
            "host": host,
            **{k: v.strip() for k, v in headers.items() if k.startswith("x-amz-")},
        }
        names = sorted(signed)
        canonical_headers = "".join(f"{n}:{signed[n]}\n" for n in names)
        signed_headers = ";".join(names)
        canonical_query = "&".join(
            f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(query)
        )
        canonical_request = "\n".join(
            (
                method,
                path,
                canonical_query,
                canonical_headers,
                signed_headers,
                payload_hash,
            )
        )
        scope = f"{datestamp}/{self._region}/s3/aws4_request"
        to_sign = "\n".join(
            (
                "AWS4-HMAC-SHA256",
                amz_date,
                scope,
                hashlib.sha256(canonical_request.encode()).hexdigest(),
            )
        )
        signature = hmac.new(
            self._signing_key(credentials.secret_key, datestamp),
            to_sign.encode(),
            hashlib.sha256,
        ).hexdigest()
        headers["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
            f"SignedHeaders={signed_headers}, Signature={signature}"
        )


def _epoch_iso(text: str) -> int:
    # "2026-11-28T20:49:24.000Z" -> seconds; cheaper than strptime per listed key.
    return calendar.timegm(
        (
            int(text[0:4]),
            int(text[5:7]),
            int(text[8:10]),
            int(text[11:13]),
            int(text[14:16]),
            int(text[17:19]),
            0,
            0,
            0,
        )
    )


def _epoch_http(text: Optional[str]) -> int:
    if not text:
        return 0
    try:
        return int(parsedate_to_datetime(text).timestamp())
    except (TypeError, ValueError):
        return 0


def _client_error(
    status: int, body: bytes, headers: Any, operation: str
) -> ClientError:
    code, message = str(status), ""
    request_id = headers.get("x-amz-request-id", "")
    if body:
        try:
            root = ET.fromstring(body)
        except ET.ParseError:
            root = None
        if root is not None:
            code = root.findtext("Code") or code
            message = root.findtext("Message") or ""
            request_id = root.findtext("RequestId") or request_id
    if not message:  # as botocore: the reason phrase stands in for a missing error body
        try:
            message = HTTPStatus(status).phrase
        except ValueError:
            message = ""
    response = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status, "RequestId": request_id},
    }
    return ClientError(response, operation)  # type: ignore[arg-type]


class LeanTransport:
    """The hot S3 calls on our own HTTP client, signed and retried like botocore.

    Args:
        s3: The opened aiobotocore S3 client (source of credentials and endpoint rules).
        region: Signing region.
        max_attempts: Total attempts per request.
        pool_size: Connection pool size.
        extra_headers: Headers sent with every request (user agent, request payer).
        unsigned: Send anonymous requests.
        ca_file: CA bundle for HTTPS endpoints (``None``: the system's).
    """

    def __init__(
        self,
        s3: Any,
        *,
        region: str,
        max_attempts: int,
        pool_size: int,
        connect_timeout: float,
        read_timeout: float,
        extra_headers: dict[str, str],
        unsigned: bool,
        ca_file: Optional[str] = None,
    ) -> None:
        self._s3 = s3
        self._max_attempts = max_attempts
        self._signer = SigV4Signer(region)
        self._unsigned = unsigned
        self._extra_headers = extra_headers
        self._base_urls: dict[str, Optional[tuple[str, str, str]]] = {}
        # TLS trusts what botocore trusts (AWS_CA_BUNDLE / ca_bundle, else its default bundle).
        ssl_context: Optional[ssl.SSLContext] = None
        if str(getattr(s3.meta, "endpoint_url", "")).startswith("https:"):
            ssl_context = ssl.create_default_context(cafile=ca_file)
        self._http = HTTPPool(
            limit=pool_size,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            ssl_context=ssl_context,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- addressing ---------------------------------------------------------------------------

    async def base(self, bucket: str) -> Optional[tuple[str, str, str]]:
        """``(scheme://host, host, path prefix)`` for ``bucket``, or ``None`` to use botocore.

        botocore's endpoint rules decide (virtual-host vs path style, FIPS, custom endpoints);
        we ask them once per bucket through a presigned URL for a probe key.
        """
        try:
            return self._base_urls[bucket]
        except KeyError:
            pass
        result: Optional[tuple[str, str, str]] = None
        if not bucket.endswith(
            "--x-s3"
        ):  # S3 Express needs session auth: leave to botocore
            url = await self._s3.generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": _PROBE_KEY}, ExpiresIn=60
            )
            parts = urlsplit(url)
            origin = f"{parts.scheme}://{parts.netloc}"
            # botocore sends through HTTP(S)_PROXY (unless NO_PROXY matches); this transport
            # connects directly, so proxied endpoints stay on botocore's path.
            proxied = parts.scheme in get_environ_proxies(origin)
            if parts.path.endswith("/" + _PROBE_KEY) and not proxied:
                prefix = parts.path[: -len(_PROBE_KEY)]
                result = (origin, parts.netloc, prefix)
        self._base_urls[bucket] = result
        return result

    # -- requests -----------------------------------------------------------------------------

    async def _credentials(self) -> Any:
        if self._unsigned:
            return None
        creds = self._s3._request_signer._credentials
        if creds is None:
            from botocore.exceptions import NoCredentialsError

            raise NoCredentialsError()
        return await creds.get_frozen_credentials()

    async def _request(
        self,
        method: str,
        base: tuple[str, str, str],
        key: str,
        query: list[tuple[str, str]],
        headers: dict[str, str],
        body: Optional[memoryview] = None,
    ) -> HTTPResponse:
        origin, host, prefix = base
        path = prefix + quote(key, safe="/~")
        all_headers = {**self._extra_headers, **headers}
        credentials = await self._credentials()
        if credentials is not None:
            # Bodies are not hashed into the signature (as botocore does over HTTPS): hashing
            # costs ~2 CPU-s per GB. Uploads carry a CRC32 header instead (see _checksum).
            payload_hash = EMPTY_SHA256 if body is None else UNSIGNED_PAYLOAD
            self._signer.sign(
                method,
                host,
                path,
                query,
                all_headers,
                credentials,
                payload_hash=payload_hash,
            )
        all_headers["Host"] = host
        url = origin + path
        if query:
            url += "?" + "&".join(
                f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in query
            )
        return await self._http.request(method, url, all_headers, body)

    async def with_retries(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Run ``operation`` under botocore's standard retry policy."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return await operation()
            except Exception as exc:
                if attempt >= self._max_attempts or not is_retryable(exc):
                    raise
                await asyncio.sleep(
                    random.random() * min(MAX_BACKOFF, 2.0 ** (attempt - 1))
                )

    async def open_get(
        self,
        base: tuple[str, str, str],
        key: str,
        range_header: Optional[str],
        if_match: Optional[str],
        *,
        checksum_mode: bool = False,
    ) -> HTTPResponse:
        """Send a GET and return the response once its headers are in (raises on errors)."""
        headers: dict[str, str] = {}
        if checksum_mode:
            headers["x-amz-checksum-mode"] = "ENABLED"
        if range_header:
            headers["Range"] = range_header
        if if_match:
            headers["If-Match"] = if_match
        resp = await self._request("GET", base, key, [], headers)
        if resp.status >= 300:
            body = await resp.read()
            resp.release()
            raise _client_error(resp.status, body, resp.headers, "GetObject")
        return resp

    async def put(
        self,
        base: tuple[str, str, str],
        key: str,
        body: memoryview,
        *,
        query: Optional[list[tuple[str, str]]] = None,
        headers: Optional[dict[str, str]] = None,
        operation: str = "PutObject",
    ) -> str:
        """PUT ``body`` (PutObject, or UploadPart with its query); return the ETag."""

        async def once() -> str:
            resp = await self._request(
                "PUT", base, key, query or [], dict(headers or {}), body
            )
            async with resp:
                if resp.status >= 300:
                    raise _client_error(
                        resp.status, await resp.read(), resp.headers, operation
                    )
                await resp.read()
                return str(resp.headers.get("ETag", ""))

        return await self.with_retries(once)

    async def head(self, base: tuple[str, str, str], key: str) -> dict[str, Any]:
        async def once() -> dict[str, Any]:
            resp = await self._request("HEAD", base, key, [], {})
            async with resp:
                if resp.status >= 300:
                    raise _client_error(resp.status, b"", resp.headers, "HeadObject")
                h = resp.headers
                return {
                    "ETag": h.get("ETag", ""),
                    "ContentLength": int(h.get("Content-Length", 0)),
                    "LastModified": _epoch_http(h.get("Last-Modified")),
                    "StorageClass": h.get("x-amz-storage-class"),
                    "Restore": h.get("x-amz-restore"),
                }

        return await self.with_retries(once)

    async def list_page(
        self,
        base: tuple[str, str, str],
        prefix: str,
        delimiter: str,
        max_keys: int,
        token: Optional[str],
    ) -> tuple[
        list[tuple[str, str, int, int, Optional[str]]], list[str], Optional[str]
    ]:
        """One ListObjectsV2 page: ``(objects, common_prefixes, next_token)``.

        Objects are ``(key, etag, size, last_modified, storage_class)``.
        """
        query = [
            ("list-type", "2"),
            ("encoding-type", "url"),
            ("max-keys", str(max_keys)),
        ]
        query.append(("prefix", prefix))
        if delimiter:
            query.append(("delimiter", delimiter))
        if token:
            query.append(("continuation-token", token))

        async def once() -> bytes:
            resp = await self._request("GET", base, "", query, {})
            async with resp:
                body = await resp.read()
                if resp.status >= 300:
                    raise _client_error(
                        resp.status, body, resp.headers, "ListObjectsV2"
                    )
                return body

        body = await self.with_retries(once)
        return _parse_listing(body)


def _parse_listing(
    body: bytes,
) -> tuple[list[tuple[str, str, int, int, Optional[str]]], list[str], Optional[str]]:
    root = ET.fromstring(body)
    url_encoded = root.findtext(f"{_NS}EncodingType") == "url"
    decode: Callable[[str], str] = unquote_plus if url_encoded else (lambda s: s)
    objects = []
    key_tag, etag_tag, size_tag = f"{_NS}Key", f"{_NS}ETag", f"{_NS}Size"
    lm_tag, sc_tag = f"{_NS}LastModified", f"{_NS}StorageClass"
    for item in root.iterfind(f"{_NS}Contents"):
        last_modified = item.findtext(lm_tag)
        objects.append(
            (
                decode(item.findtext(key_tag) or ""),
                item.findtext(etag_tag) or "",
                int(item.findtext(size_tag) or 0),
                _epoch_iso(last_modified) if last_modified else 0,
                item.findtext(sc_tag),
            )
        )
    prefixes = [
        decode(p.findtext(f"{_NS}Prefix") or "")
        for p in root.iterfind(f"{_NS}CommonPrefixes")
    ]
    truncated = root.findtext(f"{_NS}IsTruncated") == "true"
    token = root.findtext(f"{_NS}NextContinuationToken") if truncated else None
    return objects, prefixes, token
