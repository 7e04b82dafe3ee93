"""``S3MapDataset``: index the objects of a prefix or a URI list as a torch map-style Dataset."""

from __future__ import annotations

import array
import logging
import operator
import os
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch.utils.data

from ._bridge import AheadBatch, Bridge
from ._config import S3ClientConfig
from ._core._planning import (
    LOOKAHEAD_ITEMS,
    LOOKAHEAD_MAX_BUSY,
    index_run,
    next_runs,
)
from ._core.prefetch import batch_cost, shuffle_rng
from ._dataset_source import PrefixSource, UriSource, build_dataset
from ._s3bucket_key_data import S3BucketKeyData
from ._s3client import S3Client
from ._s3dataset_common import (
    PREFETCHABLE_READERS,
    identity,
    reader_for,
)
from ._user_agent import UserAgent
from .s3iterable_dataset import DEFAULT_PREFETCH_BYTES
from .s3reader import S3Reader, S3ReaderConstructor
from .s3reader.protocol import S3ReaderConstructorProtocol

__all__ = ["S3MapDataset"]

logger = logging.getLogger(__name__)

#: A progress line is logged every this many listing pages (1000 keys each).
LISTING_PROGRESS_PAGES = 10
_LIST_PAGE_SIZE = 1000
_LISTING_PROGRESS_ITEMS = 10_000
#: Bytes one batch of ``__getitems__`` downloads ahead (the iterable dataset's window).
_BATCH_BUDGET = 64 * 1024 * 1024


class S3MapDataset(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """A map-style dataset over S3 objects; ``dataset[i]`` is ``transform(S3Reader)``.

    Build it with :meth:`from_prefix` or :meth:`from_objects`. The first ``len()`` or index
    lists everything once and caches the list (a progress line is logged every 10 listing pages,
    so a large prefix does not look hung); the list is pickled to DataLoader workers with the
    dataset. Each access builds a new reader. Indexing works like a list's: negative indices
    count from the end and an out-of-range index raises ``IndexError``.

    Look-ahead (beyond the reference): when a ``DataLoader`` batch asks for consecutive indices
    (a sequential sampler, also with ``shuffle=True`` here, in one process or in each worker),
    the batches predicted to come next at the same stride are downloaded ahead, concurrently,
    while ``prefetch_bytes`` allows (at most 128 indices ahead; deeper while they still arrive
    late; none while the store answers so fast that waiting for it keeps this process busy,
    as on loopback; it starts after the second batch). A batch asked for is served
    from them when it was predicted; anything else (a shuffling sampler) is fetched as it
    would be without them, and a wrong guess is dropped (at most one batch is guessed before
    a prediction has come true). A prefetched GET that failed is repeated by the item's reader,
    which raises when that item is read. Memory: at most ``prefetch_bytes`` ahead, plus the
    batch being served (at most 64 MiB). ``set_epoch`` drops what is ahead.

    ``shuffle=True`` (beyond the reference) maps index ``i`` to a seeded permutation of the
    objects that changes with :meth:`set_epoch`, so a plain sequential sampler, or a
    ``DistributedSampler(shuffle=False)``, sees a shuffled order that is identical on every rank.

    Args:
        region: AWS region of the bucket.
        get_dataset_objects: ``get_dataset_objects(client)`` returns the ``S3BucketKeyData`` items.
        endpoint: Endpoint URL (S3-compatible stores).
        transform: Applied to each ``S3Reader``; must be a module-level function for
            spawn/forkserver DataLoader workers.
        s3client_config: Client configuration.
        reader_constructor: From ``S3ReaderConstructor``; sequential by default.
        shuffle: Permute the index mapping per epoch.
        seed: Permutation seed.
        prefetch_bytes: Byte budget of the look-ahead; 0 turns it off.

    Raises:
        ValueError: ``prefetch_bytes`` is negative.
    """

    def __init__(
        self,
        region: str,
        get_dataset_objects: Callable[[S3Client], Iterable[S3BucketKeyData]],
        endpoint: Optional[str] = None,
        transform: Callable[[S3Reader], Any] = identity,
        s3client_config: Optional[S3ClientConfig] = None,
        reader_constructor: Optional[S3ReaderConstructorProtocol] = None,
        *,
        shuffle: bool = False,
        seed: int = 0,
        prefetch_bytes: int = DEFAULT_PREFETCH_BYTES,
    ) -> None:
        if not isinstance(prefetch_bytes, int) or prefetch_bytes < 0:
            raise ValueError(
                f"prefetch_bytes must be an int >= 0, got {prefetch_bytes!r}"
            )
        self._region = region
        self._endpoint = endpoint
        self._get_dataset_objects = get_dataset_objects
        self._transform = transform
        self._s3client_config = s3client_config
        self._reader_constructor = reader_constructor or S3ReaderConstructor.default()
        self._shuffle = shuffle
        self._seed = seed
        self._epoch = 0
        self._client: Optional[S3Client] = None
        self._bucket_key_pairs: Optional[List[S3BucketKeyData]] = None
        self._permutation: Optional[array.array[int]] = None
        self._prefetch_bytes = prefetch_bytes
        self._lookahead: Optional[_Lookahead] = None

    @classmethod
    def from_objects(
        cls,
        object_uris: Union[str, Iterable[str]],
        *,
        region: str,
        endpoint: Optional[str] = None,
        transform: Callable[[S3Reader], Any] = identity,
        s3client_config: Optional[S3ClientConfig] = None,
        reader_constructor: Optional[S3ReaderConstructorProtocol] = None,
        shuffle: bool = False,
        seed: int = 0,
        prefetch_bytes: int = DEFAULT_PREFETCH_BYTES,
    ) -> S3MapDataset:
        """A dataset over the given object URIs, in that order.

        The URIs are parsed at the first ``len()`` or index.

        ``object_uris`` are ``s3://bucket/key`` URIs (a single string counts as one).
        The other arguments are the constructor's (see the class).

        Returns:
            The dataset.
        """
        return build_dataset(
            cls, UriSource(object_uris), "get_dataset_objects", locals()
        )

    @classmethod
    def from_prefix(
        cls,
        s3_uri: str,
        *,
        region: str,
        endpoint: Optional[str] = None,
        transform: Callable[[S3Reader], Any] = identity,
        s3client_config: Optional[S3ClientConfig] = None,
        reader_constructor: Optional[S3ReaderConstructorProtocol] = None,
        shuffle: bool = False,
        seed: int = 0,
        prefetch_bytes: int = DEFAULT_PREFETCH_BYTES,
    ) -> S3MapDataset:
        """A dataset over every object under ``s3_uri`` (recursive), in listing order.

        Listing happens at the first ``len()`` or index: an invalid URI raises ``ValueError``
        and a missing bucket ``S3Exception`` there; an empty prefix gives an empty dataset.

        The other arguments are the constructor's (see the class).

        Returns:
            The dataset.
        """
        return build_dataset(cls, PrefixSource(s3_uri), "get_dataset_objects", locals())

    @property
    def region(self) -> str:
        """The dataset's region."""
        return self._region

    @property
    def endpoint(self) -> Optional[str]:
        """The endpoint argument the dataset was built with."""
        return self._endpoint

    @property
    def epoch(self) -> int:
        """The epoch that seeds the permutation (see :meth:`set_epoch`)."""
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Choose the permutation for ``shuffle=True`` (no effect otherwise).

        DataLoader workers receive a copy of the dataset at each epoch unless
        ``persistent_workers=True``; in that case set the epoch before the workers start.

        Args:
            epoch: Epoch number.
        """
        if epoch != self._epoch:
            self._epoch = epoch
            self._permutation = None
            if self._lookahead is not None:
                self._lookahead.drop()

    def __getstate__(self) -> Dict[str, Any]:
        # Configuration and the listing (as the reference) only; no client.
        state = self.__dict__.copy()
        state["_client"] = None
        state["_permutation"] = None
        state["_lookahead"] = None
        return state

    def _get_client(self) -> S3Client:
        if self._client is None:
            reader_type = S3ReaderConstructor.get_reader_type_string(
                self._reader_constructor
            )
            self._client = S3Client(
                self._region,
                endpoint=self._endpoint,
                user_agent=UserAgent([f"md/dataset#map md/reader_type#{reader_type}"]),
                s3client_config=self._s3client_config,
            )
        return self._client

    @property
    def _dataset_bucket_key_pairs(self) -> List[S3BucketKeyData]:
        if self._bucket_key_pairs is None:
            self._bucket_key_pairs = self._list()
        return self._bucket_key_pairs

    def _list(self) -> List[S3BucketKeyData]:
        client = self._get_client()
        given = self._get_dataset_objects
        if isinstance(given, PrefixSource):
            bucket, prefix = given.bucket_prefix()
            progress = _ListingProgress(f"s3://{bucket}/{prefix}")
            items = client.bridge.list_all(
                bucket, prefix, max_keys=_LIST_PAGE_SIZE, on_page=progress
            )
            progress.done(len(items))
            if not items:
                logger.warning(
                    "S3MapDataset: %s lists no objects; the dataset is empty",
                    progress.where,
                )
            return items
        items = []
        source = f"{type(self).__name__}"
        for item in self._get_dataset_objects(client):
            items.append(item)
            if len(items) % _LISTING_PROGRESS_ITEMS == 0:
                logger.info("%s: %d objects listed so far", source, len(items))
        return items

    def _index(self, i: int) -> int:
        return self._permuted(self._position(i))

    def _position(self, i: int) -> int:
        n = len(self._dataset_bucket_key_pairs)
        i = operator.index(i)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("list index out of range")
        return i

    def _permuted(self, i: int) -> int:
        if not self._shuffle:
            return i
        n = len(self._dataset_bucket_key_pairs)
        if self._permutation is None or len(self._permutation) != n:
            perm = array.array("q", range(n))
            shuffle_rng(self._seed, self._epoch).shuffle(perm)  # type: ignore[arg-type]
            self._permutation = perm
        return self._permutation[i]

    def __getitem__(self, i: int) -> Any:
        item = self._dataset_bucket_key_pairs[self._index(i)]
        reader = self._get_client().get_object(
            item.bucket,
            item.key,
            object_info=item.object_info,
            reader_constructor=self._reader_constructor,
        )
        return self._transform(reader)

    def __getitems__(self, indices: Sequence[int]) -> List[Any]:
        """``[self[i] for i in indices]``, with the batch's objects downloaded concurrently.

        A ``DataLoader`` with a ``batch_size`` asks for a whole batch at once: the objects
        whose listing size is at most ``min(64 MiB / 4, part_size)`` are fetched together
        (at most 64 MiB per batch), or taken from the look-ahead (see the class), then each
        is transformed from its bytes. Others, and any whose download failed, are read by
        their reader as ``dataset[i]`` reads them (a failure raises there). The
        DCP-optimized reader reads every object itself.
        """
        pairs = self._dataset_bucket_key_pairs
        positions = [self._position(i) for i in indices]
        items = [pairs[self._permuted(p)] for p in positions]
        client = self._get_client()
        reader_type = S3ReaderConstructor.get_reader_type_string(
            self._reader_constructor
        )
        fetched: List[Optional[Tuple[bytes, str]]] = [None] * len(items)
        if len(items) > 1 and reader_type in PREFETCHABLE_READERS:
            max_size = min(_BATCH_BUDGET // 4, client.s3client_config.part_size)
            lookahead = self._get_lookahead()
            if lookahead is None:
                fetched = client.bridge.fetch_batch(
                    items, max_object_size=max_size, budget_bytes=_BATCH_BUDGET
                )
            else:
                fetched = lookahead.fetch(
                    client.bridge, positions, items, len(pairs), max_size
                )
        out = []
        for item, got in zip(items, fetched):
            data, etag = got if got is not None else (None, None)
            reader = reader_for(client, item, data, etag, self._reader_constructor)
            out.append(self._transform(reader))
        return out

    def __len__(self) -> int:
        return len(self._dataset_bucket_key_pairs)

    def _get_lookahead(self) -> Optional[_Lookahead]:
        if self._prefetch_bytes <= 0:
            return None
        ahead = self._lookahead
        if ahead is None or ahead.pid != os.getpid():
            if ahead is not None:
                # A forked copy starts clean. The parent's downloads belong to a loop that
                # never runs here: kept, never collected, as the runner keeps that loop.
                _INHERITED.append(ahead)
            ahead = self._lookahead = _Lookahead(self._prefetch_bytes, self._items_at)
        return ahead

    def _items_at(self, run: Tuple[int, int]) -> List[S3BucketKeyData]:
        pairs = self._dataset_bucket_key_pairs
        return [pairs[self._permuted(p)] for p in range(*run)]


_INHERITED: List[_Lookahead] = []


def _worker_count() -> int:
    info = torch.utils.data.get_worker_info()
    return 1 if info is None else int(info.num_workers)


class _Lookahead:
    """Batches of consecutive indices downloaded ahead of their turn, keyed by index run.

    The stride between the runs asked for predicts the next ones: before one has been seen,
    the run's length times the DataLoader's worker count (one batch is guessed). After a
    prediction came true, ``depth`` runs are kept ahead (as ``budget_bytes`` and
    ``LOOKAHEAD_ITEMS`` allow): one, and one more each time a predicted batch was still
    downloading when asked for. So a store close by (loopback) keeps one batch ahead, not
    hundreds of GETs on as many connections, and a store far away gets what its latency needs.
    Nothing is planned while the waits for batches fetched on demand kept the process busy
    for more than ``LOOKAHEAD_MAX_BUSY`` of them (CPU time over wall time, summed from the
    second batch: the first opens connections): then the store answers at once and
    downloading ahead only competes with the caller for the CPU.
    A request that was not predicted drops everything ahead. Thread-safe: the lock covers the
    bookkeeping and the (non-blocking) start of downloads, never a wait for one.
    """

    def __init__(
        self,
        budget_bytes: int,
        items_at: Callable[[Tuple[int, int]], List[S3BucketKeyData]],
    ) -> None:
        self.pid = os.getpid()
        self._budget = budget_bytes
        self._items_at = items_at
        self._lock = threading.Lock()
        self._ahead: Dict[Tuple[int, int], Tuple[AheadBatch, int]] = {}
        self._last: Optional[Tuple[int, int]] = None
        self._depth = 1
        self._pays = False  # known after the second batch
        self._cold = True  # the first batch opens the connections: not a measure
        self._waited_wall = self._waited_cpu = 0.0
        self.hits = 0

    def drop(self) -> None:
        """Cancel every download ahead and forget the stride."""
        with self._lock:
            self._drop_locked()

    def _drop_locked(self) -> None:
        ahead, self._ahead = self._ahead, {}
        self._last = None
        for batch, _cost in ahead.values():
            batch.close_soon()

    def fetch(
        self,
        bridge: Bridge,
        positions: Sequence[int],
        items: List[S3BucketKeyData],
        size: int,
        max_object_size: int,
    ) -> List[Optional[Tuple[bytes, str]]]:
        """``bridge.fetch_batch(items)``, served from ahead when predicted; plans what is next.

        ``positions`` are the (non-negative) indices asked for, ``size`` the dataset's length.
        """
        run = index_run(positions)
        with self._lock:
            hit = self._take_locked(run, items)
            self.hits += hit is not None
            if hit is not None and run is not None and self._pays:
                # planned before waiting, so the next downloads overlap this one
                self._plan_locked(bridge, run, True, size, max_object_size)
        if hit is not None:
            fetched, waited = bridge.await_batch(hit)
            if waited:
                with self._lock:  # the next plan looks further ahead
                    self._depth = min(self._depth + 1, LOOKAHEAD_ITEMS)
            return fetched
        wall, cpu = time.perf_counter(), time.process_time()
        fetched = bridge.fetch_batch(
            items, max_object_size=max_object_size, budget_bytes=_BATCH_BUDGET
        )
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        with self._lock:
            # Looking ahead pays when the waits for batches fetched on demand (nothing
            # else in flight) were mostly idle: first-byte latency. Waits that kept this
            # process busy (a store close by) leave nothing to hide; downloading ahead would
            # only compete with the caller's thread for the CPU.
            if self._cold:
                self._cold = False
            else:
                self._waited_wall += wall
                self._waited_cpu += cpu
                self._pays = self._waited_cpu <= self._waited_wall * LOOKAHEAD_MAX_BUSY
            if run is not None:
                if self._pays:
                    self._plan_locked(bridge, run, False, size, max_object_size)
                else:
                    self._last = run
        return fetched

    def _take_locked(
        self, run: Optional[Tuple[int, int]], items: List[S3BucketKeyData]
    ) -> Optional[AheadBatch]:
        if any(not batch.alive() for batch, _cost in self._ahead.values()):
            self._ahead, self._last = {}, None  # its loop is gone: nothing to cancel
        entry = self._ahead.pop(run, None) if run is not None else None
        # Identical items, not only indices: a new permutation makes it a miss.
        if entry is not None and all(a is b for a, b in zip(entry[0].items, items)):
            return entry[0]
        if entry is not None:
            entry[0].close_soon()
        self._drop_locked()
        return None

    def _plan_locked(
        self,
        bridge: Bridge,
        run: Tuple[int, int],
        predicted: bool,
        size: int,
        max_object_size: int,
    ) -> None:
        last, self._last = self._last, run
        if predicted and last is not None:
            stride = run[0] - last[0]
        else:
            stride = (run[1] - run[0]) * _worker_count()
        # Runs behind this one will not be asked for at this stride.
        for key in [k for k in self._ahead if k[0] < run[0]]:
            self._ahead.pop(key)[0].close_soon()
        length = run[1] - run[0]
        depth = min(self._depth, max(1, LOOKAHEAD_ITEMS // length)) if predicted else 1
        held = sum(cost for _batch, cost in self._ahead.values())
        todo: List[Tuple[Tuple[int, int], List[S3BucketKeyData], int]] = []
        for key in next_runs(run, stride, size, depth):
            if key in self._ahead:
                continue
            batch = self._items_at(key)
            cost = batch_cost(
                batch, max_object_size=max_object_size, budget_bytes=_BATCH_BUDGET
            )
            if held + cost > self._budget:
                break
            held += cost
            todo.append((key, batch, cost))
        if not todo:
            return
        started = bridge.start_batches(
            [batch for _key, batch, _cost in todo],
            max_object_size=max_object_size,
            budget_bytes=_BATCH_BUDGET,
        )
        for (key, _batch, cost), ahead in zip(todo, started):
            self._ahead[key] = (ahead, cost)


class _ListingProgress:
    """Logs a progress line every ``LISTING_PROGRESS_PAGES`` pages (called on the loop thread)."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.pages = 0

    def __call__(self, pages: int, objects: int) -> None:
        self.pages = pages
        if pages % LISTING_PROGRESS_PAGES == 0 and pages:
            logger.info(
                "S3MapDataset listing %s: %d objects in %d pages so far",
                self.where,
                objects,
                pages,
            )

    def done(self, objects: int) -> None:
        if self.pages >= LISTING_PROGRESS_PAGES:
            logger.info(
                "S3MapDataset listed %s: %d objects in %d pages",
                self.where,
                objects,
                self.pages,
            )
