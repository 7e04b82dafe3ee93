"""Train a small CNN from S3 with a DataLoader, then checkpoint it to S3 and reload it.

Writes a synthetic image dataset (``--samples`` objects, each a ``torch.save``d dict with a
3x16x16 image and a label) under ``s3://BUCKET/PREFIX``, trains for ``--epochs`` with
``S3IterableDataset`` (sharded over ``--workers`` DataLoader workers, shuffled per epoch,
prefetching), saves model and optimizer with ``S3Checkpoint`` and loads them back.

    python examples/train_dataloader.py --bucket my-bucket [--endpoint http://127.0.0.1:9000]

The bucket must exist. The endpoint defaults to ``AWS_ENDPOINT_URL`` (else AWS).
"""

from __future__ import annotations

import argparse
import time
from typing import Optional

import torch
from torch.utils.data import DataLoader

from s3torch_async import S3Checkpoint, S3IterableDataset, S3Reader

IMAGE_SHAPE = (3, 16, 16)
CLASSES = 4


def decode(reader: S3Reader) -> tuple[torch.Tensor, int]:
    """The dataset's transform: a module-level function, so it pickles into workers."""
    sample = torch.load(reader, weights_only=True)
    return sample["image"].float() / 255, int(sample["label"])


def write_samples(
    checkpoint: S3Checkpoint, uri_prefix: str, count: int, seed: int = 0
) -> None:
    """Write ``count`` synthetic samples whose label is visible in the image."""
    generator = torch.Generator().manual_seed(seed)
    for i in range(count):
        label = i % CLASSES
        image = torch.randint(
            0, 64, IMAGE_SHAPE, generator=generator, dtype=torch.uint8
        )
        image[label % 3] += 128  # a learnable signal
        with checkpoint.writer(f"{uri_prefix}sample-{i:05d}.pt") as writer:
            torch.save({"image": image, "label": label}, writer)


def make_model() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(4),
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 4 * 4, CLASSES),
    )


def train(args: argparse.Namespace, endpoint: Optional[str]) -> None:
    uri_prefix = f"s3://{args.bucket}/{args.prefix.strip('/')}/"
    checkpoint = S3Checkpoint(region=args.region, endpoint=endpoint)
    if not args.skip_upload:
        started = time.perf_counter()
        write_samples(checkpoint, uri_prefix, args.samples)
        print(f"wrote {args.samples} samples in {time.perf_counter() - started:.1f} s")

    dataset = S3IterableDataset.from_prefix(
        uri_prefix,
        region=args.region,
        endpoint=endpoint,
        transform=decode,
        enable_sharding=True,
        shuffle=True,
        seed=0,
    )
    loader = DataLoader(dataset, batch_size=args.batch_size, num_workers=args.workers)
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = torch.nn.CrossEntropyLoss()

    for epoch in range(args.epochs):
        dataset.set_epoch(epoch)  # a new shuffled order each epoch
        started, seen, total_loss = time.perf_counter(), 0, 0.0
        for images, labels in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(images), labels)
            loss.backward()
            optimizer.step()
            seen += len(labels)
            total_loss += loss.item() * len(labels)
        elapsed = time.perf_counter() - started
        print(
            f"epoch {epoch}: {seen} samples, loss {total_loss / max(seen, 1):.3f}, "
            f"{seen / elapsed:.0f} samples/s"
        )
        if seen != args.samples and not args.skip_upload:
            raise SystemExit(f"expected {args.samples} samples, got {seen}")

    ckpt_uri = f"s3://{args.bucket}/{args.prefix.strip('/')}-checkpoints/last.pt"
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
    with checkpoint.writer(ckpt_uri) as writer:
        torch.save(state, writer)
    restored = make_model()
    with checkpoint.reader(ckpt_uri) as reader:
        loaded = torch.load(reader, weights_only=True)
    restored.load_state_dict(loaded["model"])
    same = all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), restored.state_dict().values())
    )
    print(f"checkpoint {ckpt_uri}: saved and reloaded, identical={same}")
    if not same:
        raise SystemExit("the reloaded model differs")


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bucket", default="my-bucket")
    parser.add_argument("--prefix", default="examples/train")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument(
        "--endpoint",
        default=None,
        help="S3 endpoint URL (default: AWS_ENDPOINT_URL, else AWS)",
    )
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument(
        "--skip-upload",
        action="store_true",
        help="train on what is already under the prefix",
    )
    args = parser.parse_args(argv)
    train(args, args.endpoint)


if __name__ == "__main__":
    main()
