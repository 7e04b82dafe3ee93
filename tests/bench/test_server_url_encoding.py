"""The benchmark server's listing key encoding: the same text as ``quote(key, safe="/")``.

Keys that quote() leaves unchanged skip it (a CPU shortcut of the server); every other key is
still quoted. Checked on the usual keys and on random keys over ASCII, controls and non-ASCII.
"""

from __future__ import annotations

import random
from urllib.parse import quote

from benchmarks.s3server import _url_encode

_ALPHABET = [chr(i) for i in range(300)] + ["é", "€", "😀", " ", "+", "%", "&", "<"]


def test_usual_keys_come_back_as_they_are():
    for key in ["", "l/000123", "a/b/c.txt", "Z~._-/09", "x" * 1024]:
        assert _url_encode(key) == key == quote(key, safe="/")


def test_every_key_is_encoded_as_quote_encodes_it():
    rng = random.Random(16)
    for _ in range(20_000):
        key = "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(0, 8)))
        assert _url_encode(key) == quote(key, safe="/"), repr(key)
