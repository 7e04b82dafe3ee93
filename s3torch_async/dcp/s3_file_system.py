"""``torch.distributed.checkpoint`` on S3: ``S3FileSystem``, ``S3StorageWriter``, ``S3StorageReader``.

The storage classes are torch's ``FileSystemWriter``/``FileSystemReader`` with their file system
swapped for :class:`S3FileSystem`, so planning and file layout are torch's own. The commit is
not: torch writes ``.metadata.tmp``, deletes ``.metadata`` and renames, which on S3 (copy, then
delete) leaves moments with no ``.metadata`` and overwrites the data files of the checkpoint
being replaced before the new one commits. :class:`S3StorageWriter` instead

* writes ``.metadata`` last, with one PUT (S3 replaces an object atomically);
* on a path that already holds a checkpoint, names its data files ``{prefix}{token}_{n}.distcp``
  with a token new to this save, so the old checkpoint stays intact and loadable until the new
  ``.metadata`` replaces the old one, then deletes the data files only the old one used;
* keeps the reference's names (``{prefix}{n}.distcp``) on a fresh path;
* raises when any of its data files fails (torch drops the error of a write thread other than
  its first), deleting the files it wrote for the failed save.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import pickle
import posixpath
import random
import re
import threading
import time
import urllib.parse
import uuid
from collections.abc import Generator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Set, Union, overload

import torch
from torch.distributed.checkpoint.filesystem import (
    CURRENT_DCP_VERSION,
    FileSystemBase,
    FileSystemReader,
    FileSystemWriter,
)
from torch.distributed.checkpoint.metadata import Metadata
from torch.distributed.checkpoint.planner import (
    LoadPlan,
    LoadPlanner,
    ReadItem,
    SavePlan,
    SavePlanner,
    WriteItem,
)
from torch.distributed.checkpoint.storage import WriteResult
from torch.futures import Future

from .._config import S3ClientConfig
from .._errors import OBJECT_NOT_FOUND, S3Exception
from .._s3client import S3Client
from .._s3dataset_common import parse_s3_uri
from .._user_agent import UserAgent
from ..s3reader import (
    DCPS3ReaderConstructorProtocol,
    S3ReaderConstructor,
    S3ReaderConstructorProtocol,
)
from ._load import load_file
from ._save import can_write, write_plan
from .s3_prefix_strategy import DefaultPrefixStrategy, S3PrefixStrategyBase

__all__ = ["S3FileSystem", "S3StorageReader", "S3StorageWriter", "StorageMetadata"]

logger = logging.getLogger(__name__)

_DELETE_ATTEMPTS = 3
_DELETE_MAX_WAIT = 5.0
# Indirection so tests can observe the waits without sleeping.
_sleep = time.sleep

ReaderConstructor = Union[S3ReaderConstructorProtocol, DCPS3ReaderConstructorProtocol]


class S3FileSystem(FileSystemBase):
    """The ``FileSystemBase`` torch's DCP storage classes use, backed by S3.

    Paths are ``s3://bucket/key`` strings.

    Args:
        region: AWS region of the bucket.
        s3_client: Client to use as is; by default one is built from ``region``,
            ``s3client_config`` and ``endpoint`` with the DCP user agent.
        s3client_config: Client configuration; defaults to ``S3ClientConfig()``.
        reader_constructor: Reader factory used by ``create_stream(path, "rb")``; sequential by
            default (``S3StorageReader`` passes the DCP-optimized one).
        endpoint: Endpoint URL; defaults to ``AWS_ENDPOINT_URL_S3``, then ``AWS_ENDPOINT_URL``,
            then AWS. Not an argument of the reference connector.

    Raises:
        ValueError: ``endpoint`` is given together with ``s3_client``.
    """

    def __init__(
        self,
        region: str,
        s3_client: Optional[S3Client] = None,
        s3client_config: Optional[S3ClientConfig] = None,
        reader_constructor: Optional[ReaderConstructor] = None,
        *,
        endpoint: Optional[str] = None,
    ) -> None:
        self._path: Union[str, os.PathLike[str]] = ""
        # What "wb" streams did, so a writer sees failures torch's write threads drop.
        self._writes = _WriteTracker()
        self._reader_constructor: ReaderConstructor = (
            reader_constructor or S3ReaderConstructor.default()
        )
        if s3_client is not None:
            if endpoint is not None:
                raise ValueError(
                    "endpoint cannot be combined with s3_client; build the S3Client with "
                    "that endpoint instead"
                )
            self._client = s3_client
        else:
            reader_type = S3ReaderConstructor.get_reader_type_string(
                self._reader_constructor
            )
            user_agent = UserAgent(
                ["dcp", torch.__version__, f"md/reader_type#{reader_type}"]
            )
            self._client = S3Client(
                region,
                endpoint=endpoint,
                user_agent=user_agent,
                s3client_config=s3client_config,
            )

    @contextmanager
    def create_stream(
        self, path: Union[str, os.PathLike[str]], mode: str
    ) -> Generator[io.IOBase, None, None]:
        """Open an S3 object for writing (``"wb"``) or reading (``"rb"``).

        A write stream commits the object when the block exits normally; when it exits with
        an exception the upload is aborted and no object is written.

        Args:
            path: ``s3://bucket/key`` of the object.
            mode: ``"wb"`` or ``"rb"``.

        Yields:
            io.IOBase: An ``S3Writer`` or an ``S3Reader``.

        Raises:
            ValueError: ``path`` is not an ``s3://`` URI, or ``mode`` is neither ``"rb"`` nor
                ``"wb"``.
        """
        path_str = _path_to_str(path)
        bucket, key = parse_s3_uri(path_str)
        if mode == "wb":
            logger.debug("create_stream writable for %s", path_str)
            self._writes.begin()
            error: Optional[BaseException] = None
            try:
                with self._client.put_object(bucket, key) as writer:
                    yield writer
            except BaseException as exc:
                error = exc
                raise
            finally:
                self._writes.end(path_str, error)
        elif mode == "rb":
            logger.debug("create_stream readable for %s", path_str)
            with self._client.get_object(
                bucket, key, reader_constructor=self._reader_constructor
            ) as reader:
                yield reader
        else:
            raise ValueError(
                f"Invalid {mode=} mode argument: create_stream only supports rb (read mode) "
                "& wb (write mode)"
            )

    def concat_path(self, path: Union[str, os.PathLike[str]], suffix: str) -> str:
        """Join ``suffix`` to ``path``; ``s3://`` paths always use ``/``.

        Args:
            path: The base path.
            suffix: The part to append.

        Returns:
            str: The joined path.
        """
        path_str = os.fspath(path)
        if path_str.startswith("s3://"):
            return posixpath.join(path_str, suffix)
        return os.path.join(path_str, suffix)

    def init_path(
        self, path: Union[str, os.PathLike[str]]
    ) -> Union[str, os.PathLike[str]]:
        """Remember ``path`` as the checkpoint path and return it unchanged.

        Args:
            path: The checkpoint path.

        Returns:
            The same ``path``.
        """
        self._path = path
        return path

    def rename(
        self,
        old_path: Union[str, os.PathLike[str]],
        new_path: Union[str, os.PathLike[str]],
    ) -> None:
        """Rename an object: a server-side copy, then a delete of the source (not atomic).

        The delete makes at most ``max_attempts`` requests (the client's retry budget); with
        ``max_attempts=1`` it is tried 3 times, as the reference does, with a random
        exponential wait (at most 5 s) between tries.

        Args:
            old_path: ``s3://bucket/key`` of the existing object.
            new_path: ``s3://bucket/key`` to rename it to, in the same bucket.

        Raises:
            ValueError: The paths name different buckets, or are not ``s3://`` URIs.
            S3Exception: The copy failed (``Service error: The object was not found`` for a
                missing source), or the delete failed three times.
        """
        logger.debug("rename %s to %s", old_path, new_path)
        old_bucket, old_key = parse_s3_uri(_path_to_str(old_path))
        new_bucket, new_key = parse_s3_uri(_path_to_str(new_path))
        if old_bucket != new_bucket:
            raise ValueError(
                "Source and destination buckets cannot be different (rename does not "
                "support cross-buckets operations)"
            )
        # The client percent-encodes the copy source itself, so the key goes in raw: a key
        # passed through _escape_path here would be encoded twice.
        self._client.copy_object(
            src_bucket=old_bucket,
            src_key=old_key,
            dst_bucket=new_bucket,
            dst_key=new_key,
        )
        self._delete_with_retry(old_bucket, old_key)

    def mkdir(self, path: Union[str, os.PathLike[str]]) -> None:
        """Do nothing: S3 has no directories.

        Args:
            path: Ignored.
        """

    def exists(self, path: Union[str, os.PathLike[str]]) -> bool:
        """Whether the object exists (one HEAD request).

        Args:
            path: ``s3://bucket/key`` of the object.

        Returns:
            bool: False when S3 reports ``Service error: The object was not found``.

        Raises:
            S3Exception: Any other S3 error, unchanged.
            ValueError: ``path`` is not an ``s3://`` URI.
        """
        bucket, key = parse_s3_uri(_path_to_str(path))
        try:
            self._client.head_object(bucket, key)
        except S3Exception as exc:
            if str(exc) != OBJECT_NOT_FOUND:
                raise
            return False
        return True

    def rm_file(self, path: Union[str, os.PathLike[str]]) -> None:
        """Delete the object; S3 errors are logged, not raised (a missing key is no error).

        Args:
            path: ``s3://bucket/key`` of the object.

        Raises:
            ValueError: ``path`` is not an ``s3://`` URI.
        """
        bucket, key = parse_s3_uri(_path_to_str(path))
        try:
            self._client.delete_object(bucket, key)
        except S3Exception:
            logger.exception("Failed to remove object from S3")

    @classmethod
    def validate_checkpoint_id(
        cls, checkpoint_id: Union[str, os.PathLike[str]]
    ) -> bool:
        """Whether ``checkpoint_id`` can be used as a checkpoint path.

        Args:
            checkpoint_id: The candidate path.

        Returns:
            bool: True for any ``pathlib.Path`` and for a valid ``s3://bucket[/key]`` string.
        """
        if isinstance(checkpoint_id, Path):
            return True
        try:
            parse_s3_uri(_path_to_str(checkpoint_id))
        except ValueError:
            return False
        return True

    def _delete_with_retry(self, bucket_name: str, old_key: str) -> None:
        """``delete_object`` with up to 3 attempts, retrying only on ``S3Exception``."""
        started = time.monotonic()
        # One retry budget: a client that retries itself (max_attempts > 1) already spent
        # its max_attempts requests on a failed delete; only a non-retrying client gets the
        # reference's three tries here.
        tries = (
            _DELETE_ATTEMPTS if self._client.s3client_config.max_attempts == 1 else 1
        )
        for attempt in range(1, tries + 1):
            error = self._try_delete(bucket_name, old_key)
            if error is None:
                return
            last = attempt == tries
            logger.log(
                logging.ERROR if last else logging.WARNING,
                "DeleteObject s3://%s/%s failed after %.3f(s), this was the %s time "
                "calling it: %s",
                bucket_name,
                old_key,
                time.monotonic() - started,
                _ordinal(attempt),
                error,
            )
            if last:
                raise error
            wait = random.uniform(0, min(_DELETE_MAX_WAIT, 2.0 ** (attempt - 1)))
            logger.warning("Retrying DeleteObject in %.2f seconds", wait)
            _sleep(wait)

    def _try_delete(self, bucket_name: str, key: str) -> Optional[S3Exception]:
        try:
            self._client.delete_object(bucket_name, key)
        except S3Exception as exc:
            return exc
        return None

    @overload
    @staticmethod
    def _escape_path(string: str) -> str: ...

    @overload
    @staticmethod
    def _escape_path(string: None) -> None: ...

    @staticmethod
    def _escape_path(string: Optional[str]) -> Optional[str]:
        """Percent-encode each ``/``-separated segment; ``None`` and ``""`` pass through."""
        if not string:
            return string
        return "/".join(urllib.parse.quote(part, safe="") for part in string.split("/"))


@dataclass
class StorageMetadata:
    """Per-rank storage data of a save plan: the prefix of the rank's file names.

    Attributes:
        prefix: Prefix of the rank's data files, e.g. ``"__0_"``.
    """

    prefix: str


class S3StorageWriter(FileSystemWriter):
    """A ``torch.distributed.checkpoint`` storage writer that saves to S3.

    Args:
        region: AWS region of the bucket.
        path: ``s3://bucket/prefix`` of the checkpoint.
        s3client_config: Client configuration; defaults to ``S3ClientConfig()``. It is
            validated when the first request is sent.
        prefix_strategy: Where each rank's data files go; ``DefaultPrefixStrategy()`` (torch's
            ``__{rank}_``) by default.
        thread_count: Upload threads per rank; each writes its own file.
        endpoint: Endpoint URL; defaults to ``AWS_ENDPOINT_URL_S3``, then ``AWS_ENDPOINT_URL``,
            then AWS. Not an argument of the reference connector.
        **kwargs: Passed to torch's ``FileSystemWriter`` (``overwrite``,
            ``single_file_per_rank``, ``per_thread_copy_ahead``, ``_extensions``, ...);
            ``sync_files`` is always False.

    Example::

        storage_writer = S3StorageWriter(region, "s3://bucket/checkpoints/epoch_1")
        torch.distributed.checkpoint.save(model.state_dict(), storage_writer=storage_writer)
    """

    def __init__(
        self,
        region: str,
        path: str,
        s3client_config: Optional[S3ClientConfig] = None,
        prefix_strategy: Optional[S3PrefixStrategyBase] = None,
        thread_count: int = 1,
        *,
        endpoint: Optional[str] = None,
        **kwargs: Any,
    ) -> None:
        # sync_files=True would call os.fsync on the stream.
        super().__init__(
            path=path, sync_files=False, thread_count=thread_count, **kwargs
        )
        self.fs: S3FileSystem = S3FileSystem(  # type: ignore[assignment]
            region, s3client_config=s3client_config, endpoint=endpoint
        )
        self.path = self.fs.init_path(path)
        self.prefix_strategy = prefix_strategy or DefaultPrefixStrategy()
        # Whether this save replaces a checkpoint (found by torch's prepare_local_plan).
        self._replacing = False

    def _metadata_exists(self) -> bool:
        self._replacing = bool(super()._metadata_exists())
        return self._replacing

    def _generation(self) -> str:
        # Data files of a save that replaces a checkpoint get names no committed checkpoint uses.
        return f"{uuid.uuid4().hex[:12]}_" if self._replacing else ""

    def prepare_local_plan(self, plan: SavePlan) -> SavePlan:
        """Check for an existing checkpoint (torch's ``overwrite`` rule) and plan this rank.

        Args:
            plan: This rank's save plan.

        Returns:
            SavePlan: The plan; without collectives, replacing a checkpoint, this rank's file
            prefix gets a save token.
        """
        plan = super().prepare_local_plan(plan)
        if not self.use_collectives and self.rank is not None and self._replacing:
            # torch named this rank's files (``__{rank}_``); only a save token is added.
            prefix = plan.storage_data.prefix + self._generation()
            plan = dataclasses.replace(plan, storage_data=StorageMetadata(prefix))
        return plan

    def prepare_global_plan(self, plans: List[SavePlan]) -> List[SavePlan]:
        """Give each rank's plan the file prefix chosen by the prefix strategy.

        When the path already holds a checkpoint, a token new to this save follows the
        prefix, so no data file of that checkpoint is overwritten.

        Args:
            plans: The ranks' save plans, in rank order.

        Returns:
            List[SavePlan]: The plans with ``storage_data=StorageMetadata(prefix)``.
        """
        generation = self._generation()
        return [
            dataclasses.replace(
                plan,
                storage_data=StorageMetadata(self.prefix_strategy(rank) + generation),
            )
            for rank, plan in enumerate(plans)
        ]

    def write_data(
        self, plan: SavePlan, planner: SavePlanner
    ) -> Future[List[WriteResult]]:
        """Write this rank's data files; raise if any of them failed.

        Files, names and bytes are those of torch's ``FileSystemWriter``; tensors are
        serialised with checksums computed off the GIL (see ``_save``), so uploads overlap.

        Args:
            plan: This rank's final save plan.
            planner: The planner that resolves the data.

        Returns:
            Future[List[WriteResult]]: Done; one result per item of ``plan``.

        Raises:
            S3Exception: A data file could not be written. The files this rank wrote for this
                save are deleted (no committed checkpoint refers to them).
        """
        tracker = self.fs._writes  # noqa: SLF001 - same module
        tracker.reset()
        results: List[WriteResult] = []
        try:
            if can_write(self) is None:
                results = write_plan(
                    self.fs,
                    self.path,
                    plan,
                    planner,
                    self.thread_count,
                    self.single_file_per_rank,
                )
            else:
                results = super().write_data(plan, planner).wait()
        except BaseException as exc:
            tracker.fail(exc)  # raised outside a stream, or by torch's first thread
        # torch does not wait for its other write threads when one fails.
        written, errors = tracker.wait_idle()
        missing = _unwritten(plan.items, results)
        if errors or missing:
            for path in written:
                self.fs.rm_file(path)
            if errors:
                raise errors[0]
            raise S3Exception(
                f"{len(missing)} items of the checkpoint at {self.path} were not written"
            )
        future: Future[List[WriteResult]] = Future()
        future.set_result(results)
        return future

    def finish(self, metadata: Metadata, results: List[List[WriteResult]]) -> None:
        """Commit: write ``.metadata`` with one PUT, then delete superseded data files.

        Args:
            metadata: The checkpoint's metadata (storage data is filled in here).
            results: Every rank's write results.
        """
        metadata.version = CURRENT_DCP_VERSION
        storage_data = {}
        for rank_results in results:
            storage_data.update({r.index: r.storage_data for r in rank_results})
        metadata.storage_data = storage_data
        metadata.storage_meta = self.storage_meta()
        rank = None if self.use_collectives else self.rank
        metadata_path = self._get_metadata_path(rank)
        previous = self._files_of(metadata_path) if self._replacing else set()
        with self.fs.create_stream(metadata_path, "wb") as stream:
            pickle.dump(metadata, stream)
        current = {info.relative_path for info in storage_data.values()}
        superseded = previous - current
        if self._replacing and self.use_collectives:
            # (Without collectives each rank commits alone: other ranks' files are not ours.)
            superseded |= self._orphans(previous | current) - current
        for name in sorted(superseded):
            self.fs.rm_file(self.fs.concat_path(self.path, name))
        if superseded:
            logger.debug(
                "Deleted %d data files superseded at %s", len(superseded), self.path
            )

    def _orphans(self, names: Set[str]) -> Set[str]:
        """Data files of earlier failed saves in the folders of ``names`` (by name pattern).

        A save that failed on another rank leaves this rank's files behind: nothing refers
        to them. Only direct children of those folders whose names carry a save token match.
        """
        found: Set[str] = set()
        base = _path_to_str(self.path).rstrip("/")
        for folder in sorted({posixpath.dirname(name) for name in names}):
            bucket, prefix = parse_s3_uri(posixpath.join(base, folder, ""))
            listing = self.fs._client.list_objects(bucket, prefix, delimiter="/")  # noqa: SLF001 - same module
            for page in listing:
                for info in page.object_info:
                    name = info.key[len(prefix) :]
                    if _GENERATED_NAME.search(name):
                        found.add(posixpath.join(folder, name))
        return found

    def _files_of(self, metadata_path: Union[str, os.PathLike[str]]) -> Set[str]:
        """Data files the committed checkpoint at ``metadata_path`` refers to."""
        try:
            with self.fs.create_stream(metadata_path, "rb") as stream:
                old: Metadata = pickle.load(stream)
            return {info.relative_path for info in (old.storage_data or {}).values()}
        except Exception:  # an unreadable old checkpoint only means no cleanup
            logger.warning(
                "Could not read the checkpoint being replaced at %s; its data files are "
                "left in place",
                metadata_path,
                exc_info=True,
            )
            return set()

    @classmethod
    def validate_checkpoint_id(
        cls, checkpoint_id: Union[str, os.PathLike[str]]
    ) -> bool:
        """Whether ``checkpoint_id`` can be used as a checkpoint path (see ``S3FileSystem``).

        Args:
            checkpoint_id: The candidate path.

        Returns:
            bool: True for a ``pathlib.Path`` or a valid ``s3://`` URI.
        """
        return S3FileSystem.validate_checkpoint_id(checkpoint_id)


class S3StorageReader(FileSystemReader):
    """A ``torch.distributed.checkpoint`` storage reader that loads from S3.

    By default data files are read with the DCP-optimized reader: :meth:`prepare_local_plan`
    sorts the load plan by offset and hands its byte ranges to the reader constructor, so only
    the bytes of the requested items are fetched, neighbouring items in one request.

    Args:
        region: AWS region of the bucket.
        path: ``s3://bucket/prefix`` of the checkpoint.
        s3client_config: Client configuration; defaults to ``S3ClientConfig()``.
        reader_constructor: Reader factory; ``S3ReaderConstructor.dcp_optimized()`` by default.
            Use ``S3ReaderConstructor.default()`` for the generic sequential reader.
        endpoint: Endpoint URL; defaults to ``AWS_ENDPOINT_URL_S3``, then ``AWS_ENDPOINT_URL``,
            then AWS. Not an argument of the reference connector.

    Example::

        storage_reader = S3StorageReader(region, "s3://bucket/checkpoints/epoch_1")
        torch.distributed.checkpoint.load(state_dict, storage_reader=storage_reader)
    """

    def __init__(
        self,
        region: str,
        path: Union[str, os.PathLike[str]],
        s3client_config: Optional[S3ClientConfig] = None,
        reader_constructor: Optional[ReaderConstructor] = None,
        *,
        endpoint: Optional[str] = None,
    ) -> None:
        super().__init__(path)
        self.fs: S3FileSystem = S3FileSystem(  # type: ignore[assignment]
            region,
            s3client_config=s3client_config,
            reader_constructor=reader_constructor
            or S3ReaderConstructor.dcp_optimized(),
            endpoint=endpoint,
        )
        self.path = self.fs.init_path(path)
        self.sync_files = False

    @property
    def _reader_constructor(self) -> ReaderConstructor:
        # The file system's, so that a replaced ``fs`` (the reference's endpoint workaround)
        # receives the ranges its readers need.
        return self.fs._reader_constructor  # noqa: SLF001 - same module

    def prepare_local_plan(self, plan: LoadPlan) -> LoadPlan:
        """Sort the plan's items by storage offset and inject their ranges into the reader.

        The items are sorted in place, so each file is read front to back. A
        DCP-optimized reader constructor receives the byte range of every item.

        Args:
            plan: This rank's load plan.

        Returns:
            LoadPlan: The same plan object.
        """
        plan.items.sort(key=lambda item: self.storage_data[item.storage_index].offset)
        if isinstance(self._reader_constructor, DCPS3ReaderConstructorProtocol):
            self._reader_constructor.set_item_ranges_by_file(
                plan.items, self.storage_data, self.path
            )
        return plan

    def read_data(self, plan: LoadPlan, planner: LoadPlanner) -> Future[None]:
        """Load this rank's items, file by file, as their bytes arrive.

        With the DCP-optimized reader each file's planned items stream in (coalesced,
        fetched ahead by a bounded window) and every tensor's stored bytes are copied once,
        into the destination tensor itself when it matches the stored one; other readers
        and item kinds go through ``torch.load`` as in torch's ``FileSystemReader``.

        Args:
            plan: This rank's load plan (sorted by :meth:`prepare_local_plan`).
            planner: The planner that resolves and commits the destination tensors.

        Returns:
            Future[None]: Done.
        """
        if not isinstance(self._reader_constructor, DCPS3ReaderConstructorProtocol):
            result: Future[None] = super().read_data(plan, planner)
            return result
        per_file: dict[str, List[ReadItem]] = {}
        for read_item in plan.items:
            relative_path = self.storage_data[read_item.storage_index].relative_path
            per_file.setdefault(relative_path, []).append(read_item)
        for relative_path, reqs in per_file.items():
            path = self.fs.concat_path(self.path, relative_path)
            with self.fs.create_stream(path, "rb") as stream:
                load_file(
                    stream, reqs, planner, self.storage_data, self.transforms, path
                )
        future: Future[None] = Future()
        future.set_result(None)
        return future

    @classmethod
    def validate_checkpoint_id(
        cls, checkpoint_id: Union[str, os.PathLike[str]]
    ) -> bool:
        """Whether ``checkpoint_id`` can be used as a checkpoint path (see ``S3FileSystem``).

        Args:
            checkpoint_id: The candidate path.

        Returns:
            bool: True for a ``pathlib.Path`` or a valid ``s3://`` URI.
        """
        return S3FileSystem.validate_checkpoint_id(checkpoint_id)


class _WriteTracker:
    """Objects written, errors raised, and writes in flight through one ``S3FileSystem``."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._inflight = 0
        self._written: List[str] = []
        self._errors: List[BaseException] = []

    def reset(self) -> None:
        with self._cond:
            self._written, self._errors = [], []

    def begin(self) -> None:
        with self._cond:
            self._inflight += 1

    def end(self, path: str, error: Optional[BaseException]) -> None:
        with self._cond:
            self._inflight -= 1
            if error is None:
                self._written.append(path)
            else:
                self._errors.append(error)
            self._cond.notify_all()

    def fail(self, error: BaseException) -> None:
        with self._cond:
            if all(error is not seen for seen in self._errors):
                self._errors.append(error)

    def wait_idle(self) -> tuple[List[str], List[BaseException]]:
        """Wait until no write is in flight; the paths written and errors since ``reset``."""
        with self._cond:
            self._cond.wait_for(lambda: self._inflight == 0)
            return list(self._written), list(self._errors)


# "{prefix}{token}_{n}.distcp": the data files of a save that replaced a checkpoint.
_GENERATED_NAME = re.compile(r"_[0-9a-f]{12}_[0-9]+\.distcp$")


def _unwritten(items: List[WriteItem], results: List[WriteResult]) -> List[WriteItem]:
    written = {result.index for result in results}
    return [item for item in items if item.index not in written]


def _path_to_str(path: Union[str, os.PathLike[str]]) -> str:
    return path if isinstance(path, str) else str(path)


def _ordinal(n: int) -> str:
    suffix = {1: "st", 2: "nd", 3: "rd"}.get(n if n < 20 else n % 10, "th")
    return f"{n}{suffix}"
