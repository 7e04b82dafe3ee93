"""``BotocoreTransport``: every S3 call through aiobotocore, one attempt each.

botocore runs with ``total_max_attempts=1``: the retrying is ``_retry.Attempts``'s, so the
same budget and classification hold on both transports. botocore follows a region redirect S3
names (``x-amz-bucket-region``) once, re-signed, as part of the attempt.

aiohttp follows HTTP redirects by itself, to any host and with every header (the session
token included); :class:`NoRedirectSession` turns that off, so a 3xx reaches botocore as an
error response and another host's bytes are never returned as the object. It also bounds
the wait for the first response from an endpoint (``first_answer_timeout``), as the lean
transport's HTTP pool does (see ``_http.NoResponseError``); here the time counts from the start
of the request, connecting included.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping, Sequence
from typing import Any, Optional
from urllib.parse import urlsplit

import aiohttp
from aiobotocore.httpsession import AIOHTTPSession

from .._errors import S3Exception
from .._types import HeadObjectResult, ListObjectResult, ObjectInfo
from ._checksum import expected_crc32
from ._http import ALONGSIDE, FIRST_ANSWER_BODY, NoResponseError, probe
from ._responses import check_key_count, client_error, epoch, restore_status
from ._transport import Headers, ObjectBody, OnToken, Transport

__all__ = [
    "BotocoreTransport",
    "NoRedirectSession",
    "no_redirect_session",
    "register_handlers",
]

# Smuggled through the API parameters into the request context (popped before validation).
_EXTRA_PARAM = "S3TorchAsyncExtraHeaders"


class _NoRedirects:
    """An ``aiohttp.ClientSession`` stand-in whose requests never follow redirects."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    def request(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["allow_redirects"] = False
        return self._session.request(*args, **kwargs)


def _body_size(body: Any) -> Optional[int]:
    if body is None:
        return 0
    if isinstance(body, (bytes, bytearray, str)):
        return len(body)
    if isinstance(body, memoryview):
        return body.nbytes
    return None  # a stream: size unknown


class NoRedirectSession(AIOHTTPSession):  # type: ignore[misc]
    """aiobotocore's HTTP session with aiohttp's redirect following turned off.

    ``first_answer_timeout`` (set by :func:`no_redirect_session`): seconds a request to an
    origin that has not answered this session yet may take to get its response; then the
    origin is probed as on the lean transport, and ``NoResponseError`` raised if it is
    silent too. Requests with bodies over 1 MiB (or of unknown size), and requests sent
    through a proxy, are exempt. A request that accompanies another (``_http.ALONGSIDE``)
    does not wait for the origin's first-answer turn.
    """

    first_answer_timeout: Optional[float] = None
    _answered: Optional[set[str]] = None
    # Until an origin has answered, one request at a time goes to it (its turn); the others
    # wait for that request's outcome, so a burst of first requests to a slow but working
    # server does not time out all at once (as on the lean transport).
    _turns: Optional[dict[str, asyncio.Future[Optional[BaseException]]]] = None
    _probes: Optional[dict[str, asyncio.Future[Optional[bool]]]] = None

    async def _get_session(self, proxy_url: Any) -> Any:
        return _NoRedirects(await super()._get_session(proxy_url))

    async def send(self, request: Any) -> Any:
        first = self.first_answer_timeout
        if self._answered is None:
            self._answered, self._turns = set(), {}
        answered = self._answered
        parts = urlsplit(request.url)
        origin = f"{parts.scheme}://{parts.netloc}"
        if first is None or origin in answered or self._proxied(request.url):
            return await self._send_one(request)
        size = _body_size(request.body)
        if size is None or size > FIRST_ANSWER_BODY:
            return await self._send_one(request)
        if ALONGSIDE.get():  # goes with a request already out (see _http.ALONGSIDE)
            return await self._send_first(request, origin, first)
        if not await self._take_turn(origin):
            return await self._send_one(request)
        outcome: Optional[BaseException] = None
        try:
            return await self._send_first(request, origin, first)
        except BaseException as exc:
            outcome = exc
            raise
        finally:
            self._end_turn(origin, outcome)

    async def _take_turn(self, origin: str) -> bool:
        """Wait until ``origin`` answered (``False``) or it is our turn to try it (``True``)."""
        assert self._answered is not None
        assert self._turns is not None
        while origin not in self._answered:
            turn = self._turns.get(origin)
            if turn is None:
                self._turns[origin] = asyncio.get_running_loop().create_future()
                return True
            outcome = await asyncio.shield(turn)
            if isinstance(outcome, NoResponseError):
                raise NoResponseError(str(outcome))
        return False

    def _end_turn(self, origin: str, outcome: Optional[BaseException]) -> None:
        assert self._turns is not None
        turn = self._turns.pop(origin, None)
        if turn is not None and not turn.done():
            turn.set_result(outcome)

    async def _send_first(self, request: Any, origin: str, first: float) -> Any:
        assert self._answered is not None
        task = asyncio.ensure_future(self._send_one(request))
        try:
            done, _ = await asyncio.wait((task,), timeout=first)
            # No answer yet: a probe tells a live but slow server (wait on, under the read
            # timeout) from a silent one (fail).
            if not done and origin not in self._answered:
                alive = await self._probe(origin, urlsplit(request.url), first)
                if alive:
                    self._answered.add(origin)
                elif alive is False and origin not in self._answered and task.cancel():
                    await asyncio.wait((task,))
                    if not task.cancelled():
                        task.exception()  # ended otherwise meanwhile: seen, superseded
                    raise NoResponseError(
                        f"no HTTP response from {origin} within {first:g} s, "
                        "to the request or to a probe: is this an S3 endpoint?"
                    )
            return await task
        except BaseException:
            task.cancel()
            raise

    async def _probe(self, origin: str, parts: Any, timeout: float) -> Optional[bool]:
        """Probe ``origin``; concurrent callers (a request and its companion) share one."""
        if self._probes is None:
            self._probes = {}
        task = self._probes.get(origin)
        if task is None:
            task = asyncio.ensure_future(_probe_origin(parts, timeout))
            self._probes[origin] = task
            probes = self._probes

            def forget(done: asyncio.Future[Optional[bool]]) -> None:
                if probes.get(origin) is done:
                    del probes[origin]

            task.add_done_callback(forget)
        return await asyncio.shield(task)

    def _proxied(self, url: str) -> bool:
        # Through an HTTP(S) proxy the probe (a direct connection) would prove nothing.
        config = getattr(self, "_proxy_config", None)
        return config is not None and bool(config.proxy_url_for(url))

    async def _send_one(self, request: Any) -> Any:
        response = await super().send(request)
        sent, got = urlsplit(request.url), urlsplit(str(response.url))
        if self._answered is not None:
            self._answered.add(f"{sent.scheme}://{sent.netloc}")  # any answer proves it
        # Belt and braces: never hand botocore a response from another origin.
        if (sent.scheme, sent.netloc) != (got.scheme, got.netloc):
            response.raw.release()
            raise S3Exception(
                f"Client error: a redirect to another origin ({got.scheme}://"
                f"{got.hostname}) was refused"
            )
        status = response.status_code
        if 300 <= status < 400 and "x-amz-bucket-region" not in response.headers:
            # An HTTP redirect that does not name the bucket's region is an error, as on the
            # lean transport (botocore's region redirector would otherwise ask HeadBucket,
            # which a redirecting server answers with a redirect, and so on without end).
            body = await response.content
            raise client_error(status, body, response.headers, "S3")
        return response


async def _probe_origin(parts: Any, timeout: float) -> Optional[bool]:
    """``_http.probe`` for the origin of a parsed URL."""
    https = parts.scheme.lower() == "https"
    port = parts.port or (443 if https else 80)
    context = ssl.create_default_context() if https else None
    return await probe(parts.hostname or "", port, context, parts.netloc, timeout)


def no_redirect_session(
    first_answer_timeout: Optional[float],
) -> type[NoRedirectSession]:
    """The :class:`NoRedirectSession` class for a client, with its first-answer timeout."""
    return type(
        "NoRedirectSession",
        (NoRedirectSession,),
        {"first_answer_timeout": first_answer_timeout},
    )


def _pop_extra_headers(params: Any, context: Any, **_: Any) -> None:
    if isinstance(params, dict) and _EXTRA_PARAM in params:
        context[_EXTRA_PARAM] = params.pop(_EXTRA_PARAM)


def _add_extra_headers(request: Any, **_: Any) -> None:
    extra = request.context.get(_EXTRA_PARAM)
    if extra:
        for name, value in extra.items():
            request.headers[name] = value


def _add_requester_pays(request: Any, **_: Any) -> None:
    request.headers["x-amz-request-payer"] = "requester"


def register_handlers(s3: Any, *, requester_pays: bool) -> None:
    """Hook per-request extra headers (and the request-payer header) into ``s3``."""
    events = s3.meta.events
    events.register("before-parameter-build.s3", _pop_extra_headers)
    events.register("before-sign.s3", _add_extra_headers)
    if requester_pays:
        events.register("before-sign.s3", _add_requester_pays)


class _AiohttpBody(ObjectBody):
    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.etag = str(raw.get("ETag", ""))
        self.content_range = raw.get("ContentRange")
        self.content_length = int(raw.get("ContentLength", 0))
        self.checksum_crc32 = expected_crc32(raw["ResponseMetadata"]["HTTPHeaders"])
        self._body = raw["Body"]
        self._stream = raw["Body"].raw_stream.content

    async def readinto(self, view: memoryview) -> int:
        pos, size = 0, len(view)
        while True:
            chunk = await self._stream.readany()
            if not chunk:
                return pos
            n = len(chunk)
            if pos + n > size:
                raise S3Exception(
                    f"response body longer than the requested {size} bytes"
                )
            view[pos : pos + n] = chunk
            pos += n
            if pos == size and self._stream.at_eof():
                return pos

    async def readany(self) -> bytes:
        return bytes(await self._stream.readany())

    def release(self) -> None:
        self._body.close()


def _as_body(data: memoryview) -> bytes:
    # botocore hands a bytearray/memoryview straight to aiohttp, which warns (ResourceWarning)
    # about raw bodies over 1 MiB; immutable bytes are sent as-is.
    obj = data.obj
    if isinstance(obj, bytes) and data.nbytes == len(obj):
        return obj
    return data.tobytes()


def _extra(params: dict[str, Any], extra_headers: Headers) -> dict[str, Any]:
    if extra_headers:
        params[_EXTRA_PARAM] = dict(extra_headers)
    return params


class BotocoreTransport(Transport):
    """Every call through the opened aiobotocore client ``s3`` (one attempt each)."""

    name = "botocore"

    def __init__(self, s3: Any, endpoint: Optional[str]) -> None:
        self._s3 = s3
        self.endpoint = endpoint or "AWS"

    def __repr__(self) -> str:
        return f"BotocoreTransport(endpoint={self.endpoint!r})"

    async def aclose(self) -> None:
        # The aiobotocore client is closed by its owner (the client's exit stack).
        self._s3 = None

    async def open_get(
        self,
        bucket: str,
        key: str,
        *,
        range_header: Optional[str] = None,
        if_match: Optional[str] = None,
        extra_headers: Headers = None,
    ) -> ObjectBody:
        params: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if range_header:
            params["Range"] = range_header
        if if_match:
            params["IfMatch"] = if_match
        raw = await self._s3.get_object(**_extra(params, extra_headers))
        return _AiohttpBody(raw)

    async def head_object(self, bucket: str, key: str) -> HeadObjectResult:
        resp = await self._s3.head_object(Bucket=bucket, Key=key)
        return HeadObjectResult(
            etag=resp.get("ETag", ""),
            size=int(resp.get("ContentLength", 0)),
            last_modified=epoch(resp.get("LastModified")),
            storage_class=resp.get("StorageClass"),
            restore_status=restore_status(resp.get("Restore")),
        )

    async def head_checksum(self, bucket: str, key: str) -> tuple[str, Optional[str]]:
        resp = await self._s3.head_object(
            Bucket=bucket, Key=key, ChecksumMode="ENABLED"
        )
        headers = resp["ResponseMetadata"]["HTTPHeaders"]
        return str(resp.get("ETag", "")), expected_crc32(headers)

    async def list_page(
        self,
        bucket: str,
        prefix: str,
        delimiter: str,
        max_keys: int,
        token: Optional[str],
        start_after: str = "",
        *,
        on_token: OnToken = None,  # botocore parses before we see the token
        preconnect: int = 0,  # botocore's pool opens connections when it needs them
    ) -> tuple[ListObjectResult, Optional[str]]:
        params: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
        params["MaxKeys"] = max_keys
        if delimiter:
            params["Delimiter"] = delimiter
        if token:
            params["ContinuationToken"] = token
        if start_after:
            params["StartAfter"] = start_after
        resp = await self._s3.list_objects_v2(**params)
        contents = resp.get("Contents", ())
        infos = [
            ObjectInfo(
                key=item["Key"],
                etag=item.get("ETag", ""),
                size=int(item.get("Size", 0)),
                last_modified=epoch(item.get("LastModified")),
                storage_class=item.get("StorageClass"),
                restore_status=restore_status(item.get("RestoreStatus")),
            )
            for item in contents
        ]
        prefixes = [p["Prefix"] for p in resp.get("CommonPrefixes", ())]
        check_key_count(resp.get("KeyCount"), len(infos), len(prefixes))
        truncated = resp.get("IsTruncated")
        return ListObjectResult(infos, prefixes), (
            resp.get("NextContinuationToken") if truncated else None
        )

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
        params: dict[str, Any] = {"Bucket": bucket, "Key": key, "Body": _as_body(body)}
        if storage_class:
            params["StorageClass"] = storage_class
        if if_none_match:
            params["IfNoneMatch"] = "*"
        resp = await self._s3.put_object(**_extra(params, extra_headers))
        return str(resp.get("ETag", ""))

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
        params: dict[str, Any] = {
            "Bucket": bucket,
            "Key": key,
            "UploadId": upload_id,
            "PartNumber": part_number,
            "Body": _as_body(body),
        }
        resp = await self._s3.upload_part(**_extra(params, extra_headers))
        return str(resp["ETag"])

    async def create_multipart_upload(
        self,
        bucket: str,
        key: str,
        *,
        storage_class: Optional[str] = None,
        extra_headers: Headers = None,
    ) -> str:
        params: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if storage_class:
            params["StorageClass"] = storage_class
        resp = await self._s3.create_multipart_upload(**_extra(params, extra_headers))
        return str(resp["UploadId"])

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
        listed: list[dict[str, Any]] = []
        for n, e in parts:
            listed.append({"PartNumber": n, "ETag": e})
            if checksums is not None:
                listed[-1]["ChecksumCRC32"] = checksums[n]
        params: dict[str, Any] = {
            "Bucket": bucket,
            "Key": key,
            "UploadId": upload_id,
            "MultipartUpload": {"Parts": listed},
        }
        if if_none_match:
            params["IfNoneMatch"] = "*"
        resp = await self._s3.complete_multipart_upload(**_extra(params, extra_headers))
        return str(resp.get("ETag", ""))

    async def abort_multipart_upload(
        self, bucket: str, key: str, upload_id: str
    ) -> None:
        await self._s3.abort_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id
        )

    async def list_multipart_uploads(
        self, bucket: str, prefix: str
    ) -> list[tuple[str, str]]:
        resp = await self._s3.list_multipart_uploads(Bucket=bucket, Prefix=prefix)
        return [(u["Key"], u["UploadId"]) for u in resp.get("Uploads", ())]

    async def delete_object(self, bucket: str, key: str) -> None:
        await self._s3.delete_object(Bucket=bucket, Key=key)

    async def copy_object(
        self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str
    ) -> None:
        await self._s3.copy_object(
            Bucket=dst_bucket,
            Key=dst_key,
            CopySource={"Bucket": src_bucket, "Key": src_key},
        )
