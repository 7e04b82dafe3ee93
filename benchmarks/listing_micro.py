"""CPU per key of reading one ListObjectsV2 page: the scanner against ElementTree.

No server: the page is built as S3 sends it (1,000 keys, quoted ETags, url encoding), then
``parse_listing`` (the scanner, ElementTree for anything else) and ``parse_listing_tree``
(ElementTree only) read it; best process time of ``--repeat`` runs each, with the garbage
collector paused (a 1,000-key page allocates past its threshold, so where its passes fall
would move the best time by ~0.1 us/key between code versions; whole listings, with
collections, are ``listing_ab``'s). ``--same-second`` gives every key one ``LastModified``,
as objects written together have in S3's listings (whole seconds). Run::

    PYTHONPATH=$PWD python -m benchmarks.listing_micro [--keys 1000] [--repeat 30] [--same-second]
"""

from __future__ import annotations

import argparse
import gc
import time
from typing import Callable

from s3torch_async._core import _listxml
from s3torch_async._core._lean import parse_listing, parse_listing_tree


def s3_page(keys: int, same_second: bool = False) -> bytes:
    """A ListObjectsV2 page of ``keys`` objects in the shape S3 answers with."""
    contents = "".join(
        f"<Contents><Key>train/shard-{i:07d}.tar</Key>"
        f"<LastModified>2026-12-07T00:{0 if same_second else i // 60 % 60:02d}:"
        f"{0 if same_second else i % 60:02d}.000Z</LastModified>"
        "<ETag>&quot;ad69d3e5df452176994838ed64ad32fb&quot;</ETag>"
        "<ChecksumAlgorithm>CRC32</ChecksumAlgorithm><ChecksumType>FULL_OBJECT</ChecksumType>"
        f"<Size>{131072 + i}</Size><StorageClass>STANDARD</StorageClass></Contents>"
        for i in range(keys)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        f"<Name>bucket</Name><Prefix>train/</Prefix><KeyCount>{keys}</KeyCount>"
        "<MaxKeys>1000</MaxKeys><EncodingType>url</EncodingType>"
        "<IsTruncated>true</IsTruncated><NextContinuationToken>token</NextContinuationToken>"
        f"{contents}</ListBucketResult>"
    ).encode()


def best_seconds(parse: Callable[[bytes], object], body: bytes, repeat: int) -> float:
    """The lowest process time of ``repeat`` calls of ``parse(body)``."""
    best = float("inf")
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeat):
            started = time.process_time()
            parse(body)
            best = min(best, time.process_time() - started)
    finally:
        if was_enabled:
            gc.enable()
    return best


def main() -> None:
    """CLI entry point."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.listing_micro")
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--same-second", action="store_true")
    args = parser.parse_args()
    body = s3_page(args.keys, args.same_second)
    if _listxml.scan(body) is None:
        raise SystemExit("the page is not in the scanner's shape")
    # The scanner is timed before ElementTree first runs: what ElementTree leaves on the heap
    # moved the scanner's best time by up to 0.15 us/key, in either direction.
    scanner = best_seconds(parse_listing, body, args.repeat)
    if parse_listing(body) != parse_listing_tree(body):
        raise SystemExit("the two parsers disagree")
    tree = best_seconds(parse_listing_tree, body, args.repeat)
    per_key = 1e6 / args.keys
    print(f"parse_listing (scanner)      {scanner * per_key:6.2f} us/key")
    print(f"parse_listing_tree (ET only) {tree * per_key:6.2f} us/key")
    print(f"ratio                        {tree / scanner:6.2f}x")


if __name__ == "__main__":
    main()
