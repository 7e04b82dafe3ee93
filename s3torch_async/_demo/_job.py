"""The demo's job: synthetic images on S3, one training epoch, two kinds of checkpoint.

Everything a DataLoader worker needs (``decode_sample``) is a module-level function, so the
workers start under ``fork``, ``spawn`` and ``forkserver`` alike.
"""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any, Dict, List, Optional, Tuple, cast

import torch
from torch import nn
from torch.utils.data import DataLoader

from .._config import S3ClientConfig
from .._core import AsyncS3Client
from ..s3checkpoint import S3Checkpoint
from ..s3iterable_dataset import S3IterableDataset
from ..s3reader import S3Reader

__all__ = [
    "CLASSES",
    "IMAGE_SHAPE",
    "Connection",
    "Step",
    "TinyNet",
    "checkpoint_round_trip",
    "dcp_round_trip",
    "decode_sample",
    "encode_sample",
    "train_one_epoch",
    "upload_dataset",
]

IMAGE_SHAPE = (3, 32, 32)
CLASSES = 10
_IMAGE_BYTES = IMAGE_SHAPE[0] * IMAGE_SHAPE[1] * IMAGE_SHAPE[2]
_UPLOAD_CONCURRENCY = 32


@dataclass(frozen=True)
class Connection:
    """Where the demo's objects go."""

    region: str
    endpoint: Optional[str]
    bucket: str
    prefix: str
    config: S3ClientConfig

    def uri(self, suffix: str) -> str:
        """``s3://bucket/prefix + suffix``."""
        return f"s3://{self.bucket}/{self.prefix}{suffix}"


@dataclass
class Step:
    """One timed step of the summary table."""

    name: str
    objects: int
    nbytes: int
    seconds: float


def encode_sample(index: int) -> bytes:
    """One synthetic image object: a label byte, then a 3x32x32 uint8 image.

    The image is noise around a per-class colour, so a small model can learn the label.
    """
    label = index % CLASSES
    gen = torch.Generator().manual_seed(index)
    noise = torch.randint(0, 96, IMAGE_SHAPE, generator=gen, dtype=torch.int16)
    colour = torch.tensor([(label * 37) % 160, (label * 71) % 160, (label * 13) % 160])
    image = (noise + colour.view(3, 1, 1)).clamp(0, 255).to(torch.uint8)
    body = bytearray(1 + _IMAGE_BYTES)
    body[0] = label
    # Filled through a tensor view of the buffer: no numpy needed (torch does not require it).
    torch.frombuffer(body, dtype=torch.uint8, offset=1).copy_(image.flatten())
    return bytes(body)


def decode_sample(reader: S3Reader) -> Tuple[torch.Tensor, int]:
    """The dataset's transform: object bytes to ``(uint8 image, label)``."""
    data = reader.read()
    if len(data) != 1 + _IMAGE_BYTES:
        raise ValueError(
            f"{reader.bucket}/{reader.key}: expected {1 + _IMAGE_BYTES} bytes, "
            f"got {len(data)}"
        )
    image = torch.frombuffer(bytearray(data[1:]), dtype=torch.uint8)
    return image.view(IMAGE_SHAPE), data[0]


def upload_dataset(conn: Connection, samples: int, progress: Any) -> Step:
    """Write ``samples`` image objects with the async client, many in flight."""
    started = time.perf_counter()
    nbytes = asyncio.run(_upload(conn, samples, progress))
    return Step(
        "upload (AsyncS3Client)", samples, nbytes, time.perf_counter() - started
    )


async def _upload(conn: Connection, samples: int, progress: Any) -> int:
    sent = 0
    indices = iter(range(samples))

    async def uploader(client: AsyncS3Client) -> None:
        nonlocal sent
        for index in indices:  # the shared iterator hands each index out once
            body = encode_sample(index)
            await client.put_object_bytes(
                conn.bucket, f"{conn.prefix}train/{index:06d}.bin", body
            )
            sent += len(body)
            progress.update(1)

    async with AsyncS3Client(
        conn.region, endpoint=conn.endpoint, s3client_config=conn.config
    ) as client:
        await asyncio.gather(
            *(uploader(client) for _ in range(min(_UPLOAD_CONCURRENCY, samples)))
        )
    return sent


class TinyNet(nn.Module):
    """One strided convolution and two linear layers (about 0.27 M parameters)."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(3, 8, 5, stride=2, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(8 * 8 * 8, 512),
            nn.ReLU(),
            nn.Linear(512, CLASSES),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of float images."""
        out: torch.Tensor = self.layers(x)
        return out


def make_loader(
    conn: Connection, batch_size: int, workers: int, start_method: Optional[str]
) -> DataLoader[Any]:
    """A DataLoader over the images, sharded across workers, shuffled and prefetched."""
    dataset = S3IterableDataset.from_prefix(
        conn.uri("train/"),
        region=conn.region,
        endpoint=conn.endpoint,
        s3client_config=conn.config,
        transform=decode_sample,
        enable_sharding=True,
        shuffle=True,
        seed=0,
        shuffle_buffer_size=512,
        prefetch_count=32,
    )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=workers,
        multiprocessing_context=start_method if workers else None,
    )


def train_one_epoch(
    model: TinyNet,
    optimizer: torch.optim.Optimizer,
    loader: DataLoader[Any],
    progress: Any,
) -> Tuple[Step, List[float], int]:
    """Train for one pass over ``loader``; returns the step, the losses and samples seen."""
    loss_fn = nn.CrossEntropyLoss()
    losses: List[float] = []
    seen = 0
    model.train()
    started = time.perf_counter()
    for images, labels in loader:
        optimizer.zero_grad()
        loss = loss_fn(model(images.float().div_(255.0)), labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        seen += len(labels)
        progress.update(len(labels))
    seconds = time.perf_counter() - started
    nbytes = seen * (1 + _IMAGE_BYTES)
    return Step("epoch (DataLoader)", seen, nbytes, seconds), losses, seen


def _tensors(state: Any, path: str = "") -> Iterator[Tuple[str, Any]]:
    if isinstance(state, dict):
        for name, value in state.items():
            yield from _tensors(value, f"{path}.{name}" if path else str(name))
    elif isinstance(state, (list, tuple)):
        for i, value in enumerate(state):
            yield from _tensors(value, f"{path}[{i}]")
    else:
        yield path, state


def same_state(left: Any, right: Any) -> bool:
    """``left`` and ``right`` hold the same leaves (tensors compared exactly)."""
    a, b = dict(_tensors(left)), dict(_tensors(right))
    if a.keys() != b.keys():
        return False
    for name, value in a.items():
        other = b[name]
        if isinstance(value, torch.Tensor):
            if not isinstance(other, torch.Tensor) or not torch.equal(value, other):
                return False
        elif value != other:
            return False
    return True


def checkpoint_round_trip(
    conn: Connection, state: Dict[str, Any], client_list: Any
) -> Tuple[Step, Step, bool]:
    """``torch.save`` through ``S3Checkpoint.writer``, then ``torch.load`` from its reader."""
    checkpoint = S3Checkpoint(
        conn.region, endpoint=conn.endpoint, s3client_config=conn.config
    )
    key = "checkpoints/s3checkpoint.pt"
    uri = conn.uri(key)
    started = time.perf_counter()
    with checkpoint.writer(uri) as writer:
        torch.save(state, cast("IO[bytes]", writer))
    saved = time.perf_counter() - started
    started = time.perf_counter()
    with checkpoint.reader(uri) as reader:
        loaded = torch.load(cast("IO[bytes]", reader), weights_only=True)
    load_seconds = time.perf_counter() - started
    _, nbytes = client_list(conn.prefix + key)
    return (
        Step("S3Checkpoint save", 1, nbytes, saved),
        Step("S3Checkpoint load", 1, nbytes, load_seconds),
        same_state(state, loaded),
    )


def dcp_round_trip(
    conn: Connection, model: TinyNet, client_list: Any
) -> Tuple[Step, Step, bool]:
    """``torch.distributed.checkpoint`` save to S3, then load into a fresh model."""
    from torch.distributed.checkpoint import state_dict_loader, state_dict_saver

    from ..dcp import S3StorageReader, S3StorageWriter

    uri = conn.uri("checkpoints/dcp/")
    state = {"model": model.state_dict()}
    with warnings.catch_warnings():
        # One process, no process group: torch says it assumes a single process.
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        warnings.filterwarnings("ignore", message=".*assum.*single.*process")
        started = time.perf_counter()
        state_dict_saver.save(
            state,
            storage_writer=S3StorageWriter(
                conn.region, uri, conn.config, endpoint=conn.endpoint
            ),
        )
        saved = time.perf_counter() - started
        fresh = TinyNet()
        target = {"model": fresh.state_dict()}
        started = time.perf_counter()
        state_dict_loader.load(
            target,
            storage_reader=S3StorageReader(
                conn.region, uri, conn.config, endpoint=conn.endpoint
            ),
        )
        fresh.load_state_dict(target["model"])
        load_seconds = time.perf_counter() - started
    objects, nbytes = client_list(f"{conn.prefix}checkpoints/dcp/")
    return (
        Step("DCP save", objects, nbytes, saved),
        Step("DCP load", objects, nbytes, load_seconds),
        same_state(state["model"], fresh.state_dict()),
    )
