"""``LeanTransport``: the hot S3 calls signed here and sent on our own small HTTP/1.1 client.

botocore's generic request pipeline (endpoint rules, event hooks, response parsing) costs about
1.2 ms of CPU per request, and aiohttp's request machinery most of what is left, which caps
small-object reads and listing far below what the network allows. For GetObject, HeadObject,
ListObjectsV2, PutObject, UploadPart and the multipart control calls, this transport:

* takes credentials from the session's public API (``AioSession.get_credentials()``, then
  ``get_frozen_credentials()`` per request, so refreshable credentials refresh) and each
  bucket's base URL from the aiobotocore client's endpoint rules (a presigned probe URL), so
  profiles, addressing style and FIPS/dual-stack stay botocore's; or, when ``_direct`` could
  decide both for the configuration, takes them from there and opens botocore only when a
  call or a bucket needs it;
* signs requests with SigV4 itself (verified against botocore's signer in the unit tests);
* sends them with ``_http.HTTPPool`` (bodies go straight into the caller's buffers);
* turns error responses into the same ``ClientError`` shape botocore produces, so
  ``_translate`` gives the same ``S3Exception`` messages on both transports;
* follows a region redirect S3 names (301 ``PermanentRedirect`` / 400
  ``AuthorizationHeaderMalformed`` with ``x-amz-bucket-region``) once, re-signed for that
  region, within S3 (the same custom endpoint, or the region's AWS endpoint), as botocore does.

CreateMultipartUpload, CompleteMultipartUpload and AbortMultipartUpload are sent here too (so a
client's first multipart upload does not wait for botocore to open). Copy, delete, listing
uploads, and every call for a bucket this transport cannot serve (endpoints botocore reaches through an HTTP(S) proxy, S3 Express directory
buckets) go to the :class:`~._botocore.BotocoreTransport` it wraps, opened on first need.
"""

from __future__ import annotations

import asyncio
import calendar
import dataclasses
import functools
import hashlib
import hmac
import os
import re
import ssl
import time
from collections.abc import Mapping, Sequence
from typing import Any, Awaitable, Callable, Optional, Protocol
from urllib.parse import quote, unquote_plus, urlsplit

from .._errors import S3Exception
from .._types import HeadObjectResult, ListObjectResult, ObjectInfo
from . import _listxml
from ._checksum import CRC32_HEADER, GET_HEADERS, crc32_to_b64, expected_crc32
from ._http import HTTPPool, HTTPResponse
from ._responses import (
    check_key_count,
    client_error,
    local_name,
    parse_xml,
    restore_status,
    text_of,
)
from ._transport import Headers, ObjectBody, OnToken, Transport

__all__ = ["BotocoreSide", "LeanTransport", "SigV4Signer"]

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
#: The payload hash of an unsigned aws-chunked body with trailers (a trailing checksum).
TRAILER_PAYLOAD = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
#: Bodies larger than this may carry their CRC32 in a trailer (``upload_part_trailed``):
#: smaller ones are hashed up front, where that costs next to nothing.
TRAILER_MIN_BYTES = 1 << 20
_PROBE_KEY = "s3torch-async-probe"
# Caps on bodies we parse (listings, errors): a server's Content-Length is only a claim.
_MAX_LISTING = 64 << 20
_MAX_ERROR = 1 << 20
# Subresources sent without "=" when empty, as botocore sends them ("?uploads").
_BARE = frozenset({"uploads"})
_REDIRECT_CODES = frozenset(
    {
        "PermanentRedirect",
        "AuthorizationHeaderMalformed",
        "IllegalLocationConstraintException",
    }
)
# AWS S3 hosts with the region in them (or us-east-1's global name), for region redirects.
_AWS_HOST = re.compile(
    r"^(?P<pre>(?:.+\.)?s3(?:-fips)?(?:\.dualstack)?)(?:\.[a-z0-9-]+)?\.amazonaws\.com$"
)


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
    # "2026-11-28T20:49:24.000Z" -> seconds; cheaper than strptime per listed key. timegm
    # is linear in the time of day, so each minute's start is computed once (keys listed
    # together were mostly written in the same few minutes).
    minute = text[0:16]
    start = _minute_starts.get(minute)
    if start is None:
        start = calendar.timegm(
            (int(text[0:4]), int(text[5:7]), int(text[8:10]), 0, 0, 0, 0, 0, 0)
        )
        start += int(text[11:13]) * 3600 + int(text[14:16]) * 60
        if len(_minute_starts) >= 4096:
            _minute_starts.clear()
        _minute_starts[minute] = start
    return start + int(text[17:19])


_minute_starts: dict[str, int] = {}


def _epoch_http(text: Optional[str]) -> int:
    if not text:
        return 0
    # email.utils costs ~4 ms to import: only once a HEAD needs it.
    from email.utils import parsedate_to_datetime

    try:
        return int(parsedate_to_datetime(text).timestamp())
    except (TypeError, ValueError):
        return 0


class _LeanBody(ObjectBody):
    def __init__(self, resp: HTTPResponse) -> None:
        h = resp.headers
        self.etag = h.get("ETag", "")
        self.content_range = h.get("Content-Range")
        self.content_length = int(h.get("Content-Length", 0))
        self.checksum_crc32 = expected_crc32(h)
        self._resp = resp

    async def readinto(self, view: memoryview) -> int:
        n = await self._resp.readinto(view)
        if n == len(view) and await self._resp.readany():
            raise S3Exception(
                f"response body longer than the requested {len(view)} bytes"
            )
        return n

    async def readany(self) -> bytes:
        return await self._resp.readany()

    async def read_chunks(self, chunks: list[bytes]) -> int:
        got = await self._resp.read_body(chunks)
        return await super().read_chunks(chunks) if got is None else got

    def release(self) -> None:
        self._resp.release()


_Base = tuple[str, str, str]  # (scheme://host, host, path prefix)


class BotocoreSide(Protocol):
    """botocore's half of a lean transport: the opened aiobotocore client and its transport."""

    @property
    def s3(self) -> Any: ...

    @property
    def transport(self) -> Transport: ...

    async def aclose(self) -> None: ...


class LeanTransport(Transport):
    """The hot S3 calls on our own HTTP client; the rest on botocore's transport.

    Args:
        botocore: Opens botocore's side (called once, when first needed; may return one
            already open). The transport closes it.
        credentials: ``await session.get_credentials()``, or the environment's (``None``:
            none found).
        region: Signing region.
        endpoint: The custom endpoint URL, or ``None`` for AWS.
        pool_size: Connection pool size.
        connect_timeout: Seconds to connect.
        read_timeout: Seconds without a byte while waiting for a response.
        first_answer_timeout: Seconds to wait for a host's first response (None: the
            read timeout); see ``_http.NoResponseError``.
        extra_headers: Headers sent with every request (user agent, request payer).
        unsigned: Send anonymous requests.
        tls: The endpoint is HTTPS (``ca_file`` then applies).
        ca_file: CA bundle for HTTPS endpoints (``None``: the system's).
        direct_base: A bucket's base URL without asking botocore (``None``: ask it).

    Large UploadPart bodies carry their CRC32 in a trailer (``upload_part_trailed``) to AWS
    S3 over HTTPS, as botocore sends checksums there; ``S3TORCH_ASYNC_CHECKSUM_TRAILER=1``
    uses trailers with any endpoint (other stores, plain HTTP), ``=0`` never (a header,
    hashed before the body is sent).
    """

    name = "lean"

    def __init__(
        self,
        botocore: Callable[[], Awaitable[BotocoreSide]],
        *,
        credentials: Any,
        region: str,
        endpoint: Optional[str],
        pool_size: int,
        connect_timeout: float,
        read_timeout: float,
        extra_headers: dict[str, str],
        unsigned: bool,
        tls: bool,
        ca_file: Optional[str] = None,
        first_answer_timeout: Optional[float] = None,
        direct_base: Optional[Callable[[str], Optional[_Base]]] = None,
    ) -> None:
        self._open_botocore = botocore
        self._side: Optional[BotocoreSide] = None
        self._side_lock: Optional[asyncio.Lock] = None
        self._closed = False
        self._direct_base = direct_base
        self._credentials = credentials
        self._region = region
        self._custom_endpoint = endpoint is not None
        self.endpoint = endpoint or "AWS"
        self._signers: dict[str, SigV4Signer] = {region: SigV4Signer(region)}
        self._bucket_regions: dict[str, str] = {}
        self._unsigned = unsigned
        self._extra_headers = extra_headers
        self._base_urls: dict[str, Optional[_Base]] = {}
        self.trailers = _trailers_wanted(tls, _is_aws(endpoint))
        # TLS trusts what botocore trusts (AWS_CA_BUNDLE / ca_bundle, else its default
        # bundle). Loading a CA bundle costs 10-20 ms: only for an HTTPS endpoint.
        ssl_context: Optional[ssl.SSLContext] = None
        if tls:
            ssl_context = ssl.create_default_context(cafile=ca_file)
        self._http = HTTPPool(
            limit=pool_size,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            ssl_context=ssl_context,
            first_answer_timeout=first_answer_timeout,
        )

    def __repr__(self) -> str:
        return f"LeanTransport(endpoint={self.endpoint!r}, region={self._region!r})"

    async def aclose(self) -> None:
        self._closed = True
        await self._http.aclose()
        side, self._side = self._side, None
        if side is not None:
            await side.aclose()

    async def _botocore(self) -> BotocoreSide:
        """The botocore side, opened on first use."""
        if self._side is None:
            if self._side_lock is None:
                self._side_lock = asyncio.Lock()
            async with self._side_lock:
                if self._side is None:
                    side = await self._open_botocore()
                    if self._closed:  # closed while it opened: it must not leak
                        await side.aclose()
                        raise RuntimeError(
                            "AsyncS3Client is closed; create a new client"
                        )
                    self._side = side
        return self._side

    async def _fallback(self) -> Transport:
        return (await self._botocore()).transport

    # -- addressing ---------------------------------------------------------------------------

    async def _base(self, bucket: str) -> Optional[_Base]:
        """``(scheme://host, host, path prefix)`` for ``bucket``, or ``None`` for botocore.

        botocore's endpoint rules decide (virtual-host vs path style, FIPS, custom endpoints):
        ``direct_base`` where it knows their answer, else we ask them once per bucket through
        a presigned URL for a probe key.
        """
        try:
            return self._base_urls[bucket]
        except KeyError:
            pass
        result = self._direct_base(bucket) if self._direct_base is not None else None
        # S3 Express needs session auth: leave it to botocore.
        if result is None and not bucket.endswith("--x-s3"):
            result = await self._probe_base(bucket)
        self._base_urls[bucket] = result
        return result

    async def _probe_base(self, bucket: str) -> Optional[_Base]:
        from botocore.utils import get_environ_proxies

        s3 = (await self._botocore()).s3
        url = await s3.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": _PROBE_KEY}, ExpiresIn=60
        )
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        origin = f"{scheme}://{parts.netloc}"
        # botocore sends through HTTP(S)_PROXY (unless NO_PROXY matches); this transport
        # connects directly, so proxied endpoints stay on botocore's path.
        proxied = scheme in get_environ_proxies(origin)
        if parts.path.endswith("/" + _PROBE_KEY) and not proxied:
            prefix = parts.path[: -len(_PROBE_KEY)]
            return (origin, parts.netloc, prefix)
        return None

    def _signer(self, region: str) -> SigV4Signer:
        signer = self._signers.get(region)
        if signer is None:
            signer = self._signers[region] = SigV4Signer(region)
        return signer

    # -- requests -----------------------------------------------------------------------------

    async def _frozen_credentials(self) -> Any:
        if self._unsigned:
            return None
        if self._credentials is None:
            from botocore.exceptions import (
                NoCredentialsError,  # only on this rare error
            )

            raise NoCredentialsError()
        return await self._credentials.get_frozen_credentials()

    async def _send(
        self,
        method: str,
        base: _Base,
        bucket: str,
        key: str,
        query: Sequence[tuple[str, str]],
        headers: Mapping[str, str],
        body: Optional[memoryview],
        operation: str,
        after_send: Optional[Callable[[], None]] = None,
        trailer: bool = False,
    ) -> HTTPResponse:
        """One request; a region redirect S3 names is followed once, re-signed.

        ``after_send`` is called once the first request is written (see ``HTTPPool.request``).
        ``trailer``: the body's CRC32 goes in a trailer (``HTTPPool.request(trailer_crc32)``).
        """
        region = self._bucket_regions.get(bucket, self._region)
        resp = await self._send_once(
            method, base, key, query, headers, body, region, after_send, trailer
        )
        if resp.status not in (301, 302, 307, 400):
            return resp
        new_region = resp.headers.get("x-amz-bucket-region")
        if not new_region or new_region == region:
            return resp
        try:
            error = await _read_capped(resp, _MAX_ERROR)
        finally:
            resp.release()
        code = _error_code(error)
        # As botocore's region redirector: a redirect status, or an error code that says
        # the request went to (or was signed for) the wrong region.
        if not (resp.status in (301, 302, 307) or code in _REDIRECT_CODES):
            raise client_error(resp.status, error, resp.headers, operation)
        new_base = self._region_base(base, new_region)
        if new_base is None:
            raise client_error(resp.status, error, resp.headers, operation)
        self._bucket_regions[bucket] = new_region
        self._base_urls[bucket] = new_base
        return await self._send_once(
            method, new_base, key, query, headers, body, new_region, None, trailer
        )

    def _region_base(self, base: _Base, region: str) -> Optional[_Base]:
        """The base URL of ``region`` within S3: a custom endpoint stays where it is."""
        if self._custom_endpoint:
            return base
        origin, host, prefix = base
        name, colon, port = host.partition(":")
        m = _AWS_HOST.match(name.lower())
        if m is None:
            return None
        new_host = f"{m.group('pre')}.{region}.amazonaws.com{colon}{port}"
        scheme = origin.split("://", 1)[0]
        return (f"{scheme}://{new_host}", new_host, prefix)

    async def _send_once(
        self,
        method: str,
        base: _Base,
        key: str,
        query: Sequence[tuple[str, str]],
        headers: Mapping[str, str],
        body: Optional[memoryview],
        region: str,
        after_send: Optional[Callable[[], None]] = None,
        trailer: bool = False,
    ) -> HTTPResponse:
        origin, host, prefix = base
        path = prefix + quote(key, safe="/~")
        all_headers = {**self._extra_headers, **headers}
        if trailer:
            all_headers["x-amz-content-sha256"] = TRAILER_PAYLOAD
        credentials = await self._frozen_credentials()
        if credentials is not None:
            # Bodies are not hashed into the signature (as botocore does over HTTPS): hashing
            # costs ~2 CPU-s per GB. Uploads carry a CRC32 header instead (see _checksum).
            if trailer:
                payload_hash = TRAILER_PAYLOAD
            else:
                payload_hash = EMPTY_SHA256 if body is None else UNSIGNED_PAYLOAD
            self._signer(region).sign(
                method,
                host,
                path,
                list(query),
                all_headers,
                credentials,
                payload_hash=payload_hash,
            )
        all_headers["Host"] = host
        url = origin + path
        if query:
            url += "?" + "&".join(
                k
                if k in _BARE and not v
                else f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}"
                for k, v in query
            )
        try:
            # A kept-alive connection the server had closed raises StaleConnectionError
            # instead of being resent here: the resend counts against the operation's budget.
            return await self._http.request(
                method,
                url,
                all_headers,
                body,
                retry_stale=False,
                after_send=after_send,
                trailer_crc32=trailer,
            )
        except ValueError as exc:
            # A request our HTTP client refuses to send (e.g. CR/LF in a header value):
            # botocore's transport reports the same as HTTPClientError.
            from botocore.exceptions import HTTPClientError  # only on this rare error

            raise HTTPClientError(error=exc) from exc

    # -- the interface ------------------------------------------------------------------------

    async def open_get(
        self,
        bucket: str,
        key: str,
        *,
        range_header: Optional[str] = None,
        if_match: Optional[str] = None,
        extra_headers: Headers = None,
    ) -> ObjectBody:
        base = await self._base(bucket)
        if base is None:
            fallback = await self._fallback()
            return await fallback.open_get(
                bucket,
                key,
                range_header=range_header,
                if_match=if_match,
                extra_headers=extra_headers,
            )
        headers: dict[str, str] = dict(extra_headers or {})
        if range_header:
            headers["Range"] = range_header
        if if_match:
            headers["If-Match"] = if_match
        resp = await self._send(
            "GET", base, bucket, key, (), headers, None, "GetObject"
        )
        if resp.status >= 300:
            try:
                error = await _read_capped(resp, _MAX_ERROR)
            finally:
                resp.release()
            raise client_error(resp.status, error, resp.headers, "GetObject")
        return _LeanBody(resp)

    async def head_object(self, bucket: str, key: str) -> HeadObjectResult:
        base = await self._base(bucket)
        if base is None:
            fallback = await self._fallback()
            return await fallback.head_object(bucket, key)
        resp = await self._send("HEAD", base, bucket, key, (), {}, None, "HeadObject")
        async with resp:
            if resp.status >= 300:
                raise client_error(resp.status, b"", resp.headers, "HeadObject")
            h = resp.headers
            return HeadObjectResult(
                etag=h.get("ETag", ""),
                size=int(h.get("Content-Length", 0)),
                last_modified=_epoch_http(h.get("Last-Modified")),
                storage_class=h.get("x-amz-storage-class"),
                restore_status=restore_status(h.get("x-amz-restore")),
            )

    async def head_checksum(self, bucket: str, key: str) -> tuple[str, Optional[str]]:
        base = await self._base(bucket)
        if base is None:
            fallback = await self._fallback()
            return await fallback.head_checksum(bucket, key)
        headers = dict(GET_HEADERS)
        resp = await self._send(
            "HEAD", base, bucket, key, (), headers, None, "HeadObject"
        )
        async with resp:
            if resp.status >= 300:
                raise client_error(resp.status, b"", resp.headers, "HeadObject")
            return resp.headers.get("ETag", ""), expected_crc32(resp.headers)

    async def list_page(
        self,
        bucket: str,
        prefix: str,
        delimiter: str,
        max_keys: int,
        token: Optional[str],
        start_after: str = "",
        *,
        on_token: OnToken = None,
        preconnect: int = 0,
    ) -> tuple[ListObjectResult, Optional[str]]:
        base = await self._base(bucket)
        if base is None:
            fallback = await self._fallback()
            return await fallback.list_page(
                bucket,
                prefix,
                delimiter,
                max_keys,
                token,
                start_after,
                on_token=on_token,
                preconnect=preconnect,
            )
        query = [
            ("list-type", "2"),
            ("encoding-type", "url"),
            ("max-keys", str(max_keys)),
            ("prefix", prefix),
        ]
        if delimiter:
            query.append(("delimiter", delimiter))
        if token:
            query.append(("continuation-token", token))
        if start_after:
            query.append(("start-after", start_after))
        after_send: Optional[Callable[[], None]] = None
        if preconnect > 0 or not _listxml.prepared():
            after_send = functools.partial(self._while_listed, base[0], preconnect)
        resp = await self._send(
            "GET", base, bucket, "", query, {}, None, "ListObjectsV2", after_send
        )
        async with resp:
            body = await _read_capped(resp)
            if resp.status >= 300:
                raise client_error(resp.status, body, resp.headers, "ListObjectsV2")
        if on_token is not None:
            # The connection is back in the pool: the next page's request can reuse it
            # and be answered while this page is parsed.
            hint = _listxml.peek_token(body)
            if hint is not None:
                await on_token(hint)
        return parse_listing(body)

    def _while_listed(self, origin: str, preconnect: int) -> None:
        # Runs once a listing request is written, while the server answers it: open the
        # connections the caller's next requests need, then compile the scanner's patterns
        # (~1.5 ms of CPU), so neither delays the request nor waits for its answer.
        if preconnect > 0:
            self._http.preconnect(origin, preconnect)
        if not _listxml.prepared():
            asyncio.get_running_loop().call_soon(_listxml.prepare)

    async def _put(
        self,
        bucket: str,
        key: str,
        body: memoryview,
        query: Sequence[tuple[str, str]],
        headers: Mapping[str, str],
        operation: str,
    ) -> Optional[str]:
        base = await self._base(bucket)
        if base is None:
            return None
        resp = await self._send(
            "PUT", base, bucket, key, query, headers, body, operation
        )
        async with resp:
            data = await _read_capped(resp, _MAX_ERROR)
            if resp.status >= 300:
                raise client_error(resp.status, data, resp.headers, operation)
            return str(resp.headers.get("ETag", ""))

    async def put_object(
        self,
        bucket: str,
        key: str,
        body: memoryview,
        *,
        storage_class: Optional[str] = None,
        if_none_match: bool = False,
        extra_headers: Headers = None,
    ) -> str:
        headers: dict[str, str] = dict(extra_headers or {})
        if storage_class:
            headers["x-amz-storage-class"] = storage_class
        if if_none_match:
            headers["If-None-Match"] = "*"
        etag = await self._put(bucket, key, body, (), headers, "PutObject")
        if etag is not None:
            return etag
        fallback = await self._fallback()
        return await fallback.put_object(
            bucket,
            key,
            body,
            storage_class=storage_class,
            if_none_match=if_none_match,
            extra_headers=extra_headers,
        )

    async def upload_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        part_number: int,
        body: memoryview,
        *,
        extra_headers: Headers = None,
    ) -> str:
        query = [("partNumber", str(part_number)), ("uploadId", upload_id)]
        etag = await self._put(
            bucket, key, body, query, dict(extra_headers or {}), "UploadPart"
        )
        if etag is not None:
            return etag
        fallback = await self._fallback()
        return await fallback.upload_part(
            bucket, key, upload_id, part_number, body, extra_headers=extra_headers
        )

    async def upload_part_trailed(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        part_number: int,
        body: memoryview,
    ) -> Optional[tuple[str, str]]:
        """UploadPart with the body's CRC32 in a trailer, taken while it is sent.

        Returns the ETag and the base64 CRC32, or ``None`` where trailers are not used (see
        ``trailers``), or the bucket is not reached through this transport.
        """
        if not self.trailers or body.nbytes <= TRAILER_MIN_BYTES:
            return None
        base = await self._base(bucket)
        if base is None:
            return None
        headers = {
            "Content-Encoding": "aws-chunked",
            "x-amz-decoded-content-length": str(body.nbytes),
            "x-amz-trailer": CRC32_HEADER,
            "x-amz-sdk-checksum-algorithm": "CRC32",
        }
        query = [("partNumber", str(part_number)), ("uploadId", upload_id)]
        resp = await self._send(
            "PUT", base, bucket, key, query, headers, body, "UploadPart", trailer=True
        )
        async with resp:
            data = await _read_capped(resp, _MAX_ERROR)
            if resp.status >= 300:
                raise client_error(resp.status, data, resp.headers, "UploadPart")
            if resp.sent_crc32 is None:  # answered before the whole body: not a success
                raise S3Exception(
                    f"UploadPart of s3://{bucket}/{key}: answered before the body was sent"
                )
            return str(resp.headers.get("ETag", "")), crc32_to_b64(resp.sent_crc32)

    # The multipart control calls: small XML exchanges, here so that a client's first
    # multipart upload does not wait for botocore to open (~0.1-0.2 s before part 1).
    async def _control(
        self,
        method: str,
        bucket: str,
        key: str,
        query: Sequence[tuple[str, str]],
        headers: Mapping[str, str],
        body: Optional[bytes],
        operation: str,
    ) -> Optional[bytes]:
        """Send one control request; its (capped) answer body, ``None``: botocore's bucket.

        Raises:
            ClientError: S3 answered with an error, including a 200 whose body is an
                ``<Error>`` document (CompleteMultipartUpload may fail that way after its
                headers went out; botocore reads it as a 500, so it is retried alike).
        """
        base = await self._base(bucket)
        if base is None:
            return None
        view = None if body is None else memoryview(body)
        resp = await self._send(
            method, base, bucket, key, query, headers, view, operation
        )
        async with resp:
            data = await _read_capped(resp, _MAX_ERROR)
            status = resp.status
            if status >= 300:
                raise client_error(status, data, resp.headers, operation)
            if status == 200 and _is_error_document(data):
                raise client_error(500, data, resp.headers, operation)
            return data

    async def create_multipart_upload(
        self,
        bucket: str,
        key: str,
        *,
        storage_class: Optional[str] = None,
        extra_headers: Headers = None,
    ) -> str:
        headers: dict[str, str] = dict(extra_headers or {})
        if storage_class:
            headers["x-amz-storage-class"] = storage_class
        op = "CreateMultipartUpload"
        data = await self._control(
            "POST", bucket, key, [("uploads", "")], headers, None, op
        )
        if data is None:
            fallback = await self._fallback()
            return await fallback.create_multipart_upload(
                bucket, key, storage_class=storage_class, extra_headers=extra_headers
            )
        root = parse_xml(data)
        upload_id = None if root is None else text_of(root, "UploadId")
        if not upload_id:
            raise S3Exception(
                f"Client error: {op} of s3://{bucket}/{key} answered without an UploadId",
                bucket=bucket,
                key=key,
                operation=op,
            )
        return upload_id

    async def complete_multipart_upload(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        parts: Sequence[tuple[int, str]],
        *,
        if_none_match: bool = False,
        checksums: Optional[Mapping[int, str]] = None,
        extra_headers: Headers = None,
    ) -> str:
        headers: dict[str, str] = dict(extra_headers or {})
        if if_none_match:
            headers["If-None-Match"] = "*"
        data = await self._control(
            "POST",
            bucket,
            key,
            [("uploadId", upload_id)],
            headers,
            complete_body(parts, checksums),
            "CompleteMultipartUpload",
        )
        if data is None:
            fallback = await self._fallback()
            return await fallback.complete_multipart_upload(
                bucket,
                key,
                upload_id,
                parts,
                if_none_match=if_none_match,
                checksums=checksums,
                extra_headers=extra_headers,
            )
        root = parse_xml(data)
        return (None if root is None else text_of(root, "ETag")) or ""

    async def abort_multipart_upload(
        self, bucket: str, key: str, upload_id: str
    ) -> None:
        query = [("uploadId", upload_id)]
        op = "AbortMultipartUpload"
        if await self._control("DELETE", bucket, key, query, {}, None, op) is None:
            fallback = await self._fallback()
            await fallback.abort_multipart_upload(bucket, key, upload_id)

    async def list_multipart_uploads(
        self, bucket: str, prefix: str
    ) -> list[tuple[str, str]]:
        fallback = await self._fallback()
        return await fallback.list_multipart_uploads(bucket, prefix)

    async def delete_object(self, bucket: str, key: str) -> None:
        fallback = await self._fallback()
        await fallback.delete_object(bucket, key)

    async def copy_object(
        self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str
    ) -> None:
        fallback = await self._fallback()
        await fallback.copy_object(src_bucket, src_key, dst_bucket, dst_key)


def _is_aws(endpoint: Optional[str]) -> bool:
    """Whether requests go to AWS S3 itself (no endpoint, or an ``amazonaws.com`` host)."""
    if endpoint is None:
        return True
    host = (urlsplit(endpoint).hostname or "").lower()
    return host.endswith((".amazonaws.com", ".amazonaws.com.cn"))


def _trailers_wanted(tls: bool, aws: bool) -> bool:
    """Whether large uploads carry a trailing CRC32 (the variable below, else AWS over HTTPS).

    Other S3-compatible stores opt in: some reject ``aws-chunked`` bodies (botocore's switch
    to trailing checksums in 2025 broke uploads to several of them).

    Raises:
        ValueError: The variable is set to something else than 1/0, on/off, true/false, auto.
    """
    name = "S3TORCH_ASYNC_CHECKSUM_TRAILER"
    value = os.environ.get(name, "").strip().lower()
    if value in ("", "auto"):
        return tls and aws
    if value in ("1", "on", "true", "yes"):
        return True
    if value in ("0", "off", "false", "no"):
        return False
    raise ValueError(f"{name} must be 1, 0 or auto, got {value!r}")


async def _read_capped(resp: HTTPResponse, cap: int = _MAX_LISTING) -> bytes:
    """A body we parse, read as it arrives and refused beyond ``cap`` bytes."""
    out = bytearray()
    while True:
        chunk = await resp.readany()
        if not chunk:
            return bytes(out)
        out += chunk
        if len(out) > cap:
            raise S3Exception(
                f"Client error: response body larger than {cap} bytes was refused"
            )


def _xml_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def complete_body(
    parts: Sequence[tuple[int, str]], checksums: Optional[Mapping[int, str]]
) -> bytes:
    """The ``CompleteMultipartUpload`` document listing ``parts`` (and their CRC32s)."""
    out = ['<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">']
    for number, etag in parts:
        crc = ""
        if checksums is not None:
            crc = f"<ChecksumCRC32>{_xml_text(checksums[number])}</ChecksumCRC32>"
        out.append(
            f"<Part><ETag>{_xml_text(etag)}</ETag>{crc}"
            f"<PartNumber>{number}</PartNumber></Part>"
        )
    out.append("</CompleteMultipartUpload>")
    return "".join(out).encode()


def _is_error_document(body: bytes) -> bool:
    root = parse_xml(body) if b"<Error" in body[:512] else None
    return root is not None and local_name(root.tag) == "Error"


def _error_code(body: bytes) -> Optional[str]:
    if not body:
        return None
    root = parse_xml(body)
    return None if root is None else text_of(root, "Code")


def parse_listing(body: bytes) -> tuple[ListObjectResult, Optional[str]]:
    """One ListObjectsV2 page, whatever XML namespace the server answers under.

    The usual page is read by ``_listxml.scan``, anything else by ElementTree
    (:func:`parse_listing_tree`); both give the same result.

    Raises:
        ClientError: The body is not XML (HTTP 500, as botocore reports it).
        S3Exception: The body is not a ListBucketResult, or its ``KeyCount`` disagrees with
            the keys and prefixes in it.
    """
    page = _listxml.scan(body)
    if page is None:
        return parse_listing_tree(body)
    return _listing_result(page)


def parse_listing_tree(body: bytes) -> tuple[ListObjectResult, Optional[str]]:
    """:func:`parse_listing` with ElementTree only (every body XML allows)."""
    root = parse_xml(body)
    if root is None:
        # As botocore: a 200 whose body does not parse is an error S3 embedded in a 200,
        # handled exactly like a 500 (and retried as one).
        raise client_error(500, b"", {}, "ListObjectsV2")
    if local_name(root.tag) != "ListBucketResult":
        raise S3Exception(
            "Client error: the ListObjectsV2 response is not a ListBucketResult "
            f"(root element {local_name(root.tag)!r})"
        )
    return _listing_result(_listxml.tree(root))


def _listing_result(page: _listxml.Page) -> tuple[ListObjectResult, Optional[str]]:
    fields, columns, common = page
    keys, etags, sizes, stamps, classes = columns
    if fields.get("EncodingType") == "url":
        url = True
        joined = "".join(keys)  # one search per page, not two per key
        if "%" in joined or "+" in joined:
            keys = [_url_decode(key) for key in keys]
    else:
        url = False
    # One loop with the per-key steps written out (no call per key but int(), and
    # _epoch_iso once per minute of LastModified). Keys written together share their
    # LastModified (whole seconds in a listing), so a run of equal ones is converted once.
    infos: list[ObjectInfo] = []
    append = infos.append
    starts = _minute_starts
    previous: Optional[str] = None
    seconds = 0
    for key, etag, size, modified, storage_class in zip(
        keys, etags, sizes, stamps, classes
    ):
        if modified != previous:
            previous = modified
            if not modified:
                seconds = 0
            else:
                start = starts.get(modified[0:16])
                if start is None:
                    seconds = _epoch_iso(modified)
                else:
                    seconds = start + int(modified[17:19])
        # ObjectInfo(...), a frozen dataclass, sets its six fields one object.__setattr__
        # at a time; setting one __dict__ is about twice as cheap.
        info = _new_object(ObjectInfo)
        _set_attribute(
            info,
            "__dict__",
            {
                "key": key,
                "etag": etag,
                "size": int(size) if size else 0,
                "last_modified": seconds,
                "storage_class": storage_class,
                "restore_status": None,
            },
        )
        append(info)
    prefixes = [_url_decode(p or "") if url else (p or "") for p in common]
    check_key_count(fields.get("KeyCount"), len(infos), len(prefixes))
    truncated = (fields.get("IsTruncated") or "").lower() == "true"
    token = fields.get("NextContinuationToken") if truncated else None
    return ListObjectResult(infos, prefixes), token


_new_object = object.__new__
_set_attribute = object.__setattr__
_OBJECT_INFO_FIELDS = (
    "key",
    "etag",
    "size",
    "last_modified",
    "storage_class",
    "restore_status",
)
if tuple(f.name for f in dataclasses.fields(ObjectInfo)) != _OBJECT_INFO_FIELDS:
    raise ImportError("_listing_result is out of date with ObjectInfo's fields")


def _url_decode(text: str) -> str:
    # unquote_plus, without its cost for the usual key that has nothing to decode
    if "%" in text or "+" in text:
        return unquote_plus(text)
    return text
