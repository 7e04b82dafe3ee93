"""ListObjectsV2 pages read without building an XML tree, when they have the shape S3 sends.

ElementTree builds ~7 elements per listed key, which made XML most of a listing's CPU.
:func:`scan` reads the usual page with one regular expression over the run of ``Contents``
elements (split into columns, no match objects) and a short loop over the few other
top-level elements. It returns ``None`` for anything it is not sure to read exactly as an
XML parser would: another encoding, a comment, CDATA, a DOCTYPE, a namespace prefix,
attributes other than the root's ``xmlns``, white space or unknown elements inside a
``Contents``, an entity other than XML's five and character references, a carriage
return (which XML normalises), a character XML forbids. The caller then parses the page with
ElementTree (:func:`tree`), so a malformed page is reported by one parser only.

Both return a :data:`Page`; the tests check they agree on generated and mutated bodies.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Optional, cast

if TYPE_CHECKING:
    import xml.etree.ElementTree as ET

__all__ = [
    "Columns",
    "Page",
    "Shape",
    "peek_token",
    "prepare",
    "prepared",
    "scan",
    "tree",
]

#: The ``Contents`` as columns, one item per key: ``(Key, ETag, Size, LastModified,
#: StorageClass)`` texts. An absent or empty Key / ETag / Size is ``""``; an absent
#: LastModified or StorageClass is ``None``. (Columns, not a tuple per key: 1,000 fewer
#: objects per page for the garbage collector to count.)
Columns = tuple[
    Sequence[str],
    Sequence[str],
    Sequence[str],
    Sequence[Optional[str]],
    Sequence[Optional[str]],
]
#: ``(top-level fields, columns, the Prefix of each CommonPrefixes)``. A field is ``None``
#: when its element is empty, a CommonPrefixes without a Prefix gives ``None``. The last of
#: repeated fields and Contents children counts, the first Prefix of a CommonPrefixes (as
#: ElementTree reads them).
Page = tuple[dict[str, Optional[str]], Columns, list[Optional[str]]]


class _Lazy:
    """A pattern compiled on first use, which then takes the placeholder's module global.

    Compiling these costs ~1.5 ms, paid at import by every program that never lists.
    """

    def __init__(self, name: str, pattern: str) -> None:
        self._name, self._pattern = name, pattern

    def __getattr__(self, attr: str) -> Any:
        compiled = re.compile(self._pattern)
        globals()[self._name] = compiled
        return getattr(compiled, attr)


def _lazy(name: str, pattern: str) -> re.Pattern[str]:
    _LAZY_NAMES.append(name)
    return cast("re.Pattern[str]", _Lazy(name, pattern))


_LAZY_NAMES: list[str] = []
_prepared = False


def prepared() -> bool:
    """Whether :func:`prepare` has run."""
    return _prepared


def prepare() -> None:
    """Compile every pattern now (~1-1.5 ms of CPU).

    A listing calls this while its first request is in flight, so that the first page's
    parse does not pay for it.
    """
    global _prepared
    for name in _LAZY_NAMES:
        pattern = globals()[name]
        if isinstance(pattern, _Lazy):
            pattern.pattern  # noqa: B018 - compiles it and replaces the placeholder
    _prepared = True


_NAME = r"[A-Za-z_][A-Za-z0-9_.-]*"
_S = r"[ \t\n]"  # XML's white space ("\r" never gets this far)
_PROLOG = _lazy(
    "_PROLOG",
    rf"(?:<\?xml{_S}+version=([\"'])1\.0\1"
    rf"(?:{_S}+encoding=([\"'])[Uu][Tt][Ff]-8\2)?"
    rf"(?:{_S}+standalone=([\"'])(?:yes|no)\3)?{_S}*\?>)?"
    rf"{_S}*<ListBucketResult(?:{_S}+xmlns=\"[^\"<&]*\")?{_S}*>",
)
# Bytes XML 1.0 forbids in a UTF-8 document, and "\r" (a parser turns "\r\n" into "\n").
_UNSURE_BYTES = bytes(range(0x09)) + b"\x0b\x0c" + bytes(range(0x0E, 0x20)) + b"\r"
# Each of them to NUL (one of them), every other byte to itself: a plain table pass and a
# memchr cost less than translate's deleting pass.
_TO_NUL = bytes.maketrans(_UNSURE_BYTES, bytes(len(_UNSURE_BYTES)))
# One Contents in S3's order (ListObjectsV2 API reference); five groups, so re.split gives
# a gap and five fields per element.
_CONTENTS = _lazy(
    "_CONTENTS",
    r"<Contents><Key>([^<]*)</Key>"
    r"<LastModified>([^<]*)</LastModified>"
    r"<ETag>([^<]*)</ETag>"
    r"(?:<ChecksumAlgorithm>[^<]*</ChecksumAlgorithm>)*"
    r"(?:<ChecksumType>[^<]*</ChecksumType>)?"
    r"<Size>([^<]*)</Size>"
    r"(?:<Owner>(?:<ID>[^<]*</ID>|<DisplayName>[^<]*</DisplayName>)*</Owner>)?"
    r"(?:<StorageClass>([^<]*)</StorageClass>)?"
    r"(?:<RestoreStatus>(?:<IsRestoreInProgress>[^<]*</IsRestoreInProgress>"
    r"|<RestoreExpiryDate>[^<]*</RestoreExpiryDate>)*</RestoreStatus>)?"
    r"</Contents>",
)
_GROUPS = 5
_LISTS = ("Contents", "CommonPrefixes")
# The start tags in one Contents, to read its shape (the names of its children).
_TAG = _lazy("_TAG", rf"<({_NAME})>")
# A page's Contents mostly share one shape (S3 sends the same children for every key of a
# page when its objects were written alike). A pattern for exactly that shape, with no
# optional parts, splits the run ~20 % faster than _CONTENTS. Shapes with children of
# their own (Owner, RestoreStatus) keep _CONTENTS. None: a page of that shape held others.
_CAPTURED = ("Key", "LastModified", "ETag", "Size", "StorageClass")
_LEAVES = frozenset(("ChecksumAlgorithm", "ChecksumType", *_CAPTURED))
#: A shape's key in :data:`_SHAPES`: the children's names, and whether the ETag is
#: ``&quot;...&quot;`` (S3's: its pattern then reads the text inside and adds the quotes).
Shape = tuple[tuple[str, ...], bool]
_SHAPES: dict[Shape, Optional[re.Pattern[str]]] = {}
_QUOT = "&quot;"
_MAX_SHAPES = 64
# The other top-level elements: a leaf, an empty element, or a CommonPrefixes of leaves.
_TOP = _lazy(
    "_TOP",
    rf"{_S}*(?:<({_NAME})>([^<]*)</\1>|<({_NAME}){_S}*/>"
    rf"|<CommonPrefixes>((?:{_S}*<{_NAME}>[^<]*</{_NAME}>)*){_S}*</CommonPrefixes>)",
)
_LEAF = _lazy("_LEAF", rf"<({_NAME})>([^<]*)</\1>")
_REF = _lazy("_REF", r"&(?:(amp|lt|gt|quot|apos)|#([0-9]+)|#x([0-9a-fA-F]+));")
_NAMED = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}
# An "&" that does not start "&quot;" (one regex pass beats counting both).
_OTHER_AMP = _lazy("_OTHER_AMP", r"&(?!quot;)")


class _Unsure(Exception):
    """The body is outside the shape :func:`scan` reads."""


def _ref(m: re.Match[str]) -> str:
    named, dec, hexa = m.groups()
    if named is not None:
        return _NAMED[named]
    code = int(dec) if dec is not None else int(hexa, 16)
    # XML 1.0 "Char": a reference to anything else is an error ElementTree reports.
    if (
        code in (0x9, 0xA, 0xD)
        or 0x20 <= code <= 0xD7FF
        or 0xE000 <= code <= 0xFFFD
        or 0x10000 <= code <= 0x10FFFF
    ):
        return chr(code)
    raise _Unsure


def _text(raw: str) -> str:
    """``raw`` with its entity and character references replaced."""
    if "&" not in raw:
        return raw
    if _OTHER_AMP.search(raw) is None:  # only &quot;: every S3 ETag
        return raw.replace("&quot;", '"')
    out, count = _REF.subn(_ref, raw)
    if count != raw.count("&"):
        raise _Unsure  # an entity XML does not define, or a bare "&"
    return out


def _texts(column: list[str]) -> list[str]:
    """:func:`_text` of each, in one pass (NUL cannot occur in the document)."""
    joined = "\0".join(column)
    return _text(joined).split("\0") if "&" in joined else column


def _check_refs(raw: str) -> None:
    """Raise :class:`_Unsure` unless every ``&`` in ``raw`` starts a valid reference."""
    if _OTHER_AMP.search(raw) is not None:
        _text(raw)


def _top(text: str, pos: int, end: int, page: Page) -> None:
    """Read the top-level elements other than Contents in ``text[pos:end]`` into ``page``."""
    fields, _, prefixes = page
    while True:
        m = _TOP.match(text, pos, end)
        if m is None:
            break
        pos = m.end()
        name, value, empty, common = m.groups()
        if name in _LISTS or empty in _LISTS:
            raise _Unsure  # a Contents out of the run, or an empty CommonPrefixes
        if name is not None:
            fields[name] = _text(value) or None
        elif empty is not None:
            fields[empty] = None
        else:
            leaves = _LEAF.findall(common)
            if common.count("<") != 2 * len(leaves):
                raise _Unsure  # a child whose end tag is another's
            found = [v for k, v in leaves if k == "Prefix"]
            prefixes.append(_text(found[0]) if found else None)
    if text[pos:end].strip(" \t\n"):
        raise _Unsure


def _shape_of(one: str) -> Optional[Shape]:
    """The shape of the Contents ``one``, if a shape pattern may read it."""
    m = _CONTENTS.fullmatch(one)
    if m is None:
        return None  # the general split will not read it either
    names = tuple(_TAG.findall(one, len("<Contents>")))
    if not _LEAVES.issuperset(names) or len(set(names) & set(_CAPTURED)) < _GROUPS:
        return None
    etag = m.group(3)
    quoted = (
        len(etag) >= 2 * len(_QUOT) and etag.startswith(_QUOT) and etag.endswith(_QUOT)
    )
    return names, quoted


def _shape_pattern(shape: Shape) -> re.Pattern[str]:
    """Exactly one Contents of this shape; :data:`_CONTENTS`'s groups, in order.

    The names come from a Contents that ``_CONTENTS`` matched, so this pattern matches a
    subset of what it matches, with the same groups (but for a quoted ETag, whose group is
    the text between the quotes). The children it does not capture hold no ``&``, so every
    reference in a run it splits is in a captured field or is one of the ETag's quotes.
    """
    names, quoted = shape
    fields = (
        f"<{n}>{_QUOT}([^<]*){_QUOT}</{n}>"
        if quoted and n == "ETag"
        else f"<{n}>([^<]*)</{n}>"
        if n in _CAPTURED
        else f"<{n}>[^<&]*</{n}>"
        for n in names
    )
    return re.compile(f"<Contents>{''.join(fields)}</Contents>")


def _split(run: str) -> tuple[list[str], bool, bool]:
    """``_CONTENTS.split(run)``, by the pattern of the first Contents' shape when it fits.

    Also returns whether every ``&`` of the run is in a captured field (the shape's pattern
    split it), so that checking those fields checks every reference, and whether the ETags
    were split without their ``&quot;`` quotes.
    """
    shape = _shape_of(run[: run.find("</Contents>") + len("</Contents>")])
    if shape is not None:
        names, quoted = shape
        # quoted ETags, then any: a page whose ETags differ in form keeps its names' pattern
        for candidate in ((names, True), (names, False)) if quoted else (shape,):
            if candidate in _SHAPES:
                # .get: another thread's clear() in between gives None (the general one)
                fast = _SHAPES.get(candidate)
            else:
                fast = _shape_pattern(candidate)
                if len(_SHAPES) >= _MAX_SHAPES:
                    _SHAPES.clear()
                _SHAPES[candidate] = fast
            if fast is not None:
                parts = fast.split(run)
                if not any(parts[0 :: _GROUPS + 1]):
                    return parts, True, candidate[1]
                _SHAPES[candidate] = None  # mixed shapes: not this pattern from now on
    return _CONTENTS.split(run), False, False


def _quoted(bare: Sequence[str]) -> list[str]:
    """Each text between double quotes (one join and one split, not a string per key)."""
    return ('"' + '"\0"'.join(bare) + '"').split("\0") if bare else []


def scan(body: bytes) -> Optional[Page]:
    """The page, or ``None`` when ``body`` is not in the shape this reads (use :func:`tree`)."""
    # "]" first: memchr finds a rare byte fast, "]]>" ends on XML's commonest one.
    if b"\0" in body.translate(_TO_NUL) or (b"]" in body and b"]]>" in body):
        return None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if "\ufffe" in text or "\uffff" in text:
        return None
    head = _PROLOG.match(text)
    end = text.rfind("</ListBucketResult>")
    if head is None or end < head.end():
        return None
    if text[end + len("</ListBucketResult>") :].strip(" \t\n"):
        return None  # text after the document
    start = head.end()
    page: Page = ({}, ([], [], [], [], []), [])
    try:
        first = text.find("<Contents>", start, end)
        if first < 0:
            _top(text, start, end, page)
            return page
        last = text.rfind("</Contents>", first, end) + len("</Contents>")
        _top(text, start, first, page)
        _top(text, last, end, page)
        run = text[first:last]
        parts, fields_only, bare_etags = _split(run)
        if any(parts[0 :: _GROUPS + 1]):
            return None  # something else between or inside the Contents elements
        step = _GROUPS + 1
        keys, modified, etags, sizes = (parts[i::step] for i in range(1, _GROUPS))
        classes: Sequence[Optional[str]] = parts[_GROUPS::step]
        if bare_etags:
            etags = _quoted(etags)
        if "&" in run:
            if not fields_only:
                _check_refs(run)  # in the fields read and in the others
            # each of these checks the references in its fields (an _Unsure if one is bad)
            keys, modified, etags, sizes = map(_texts, (keys, modified, etags, sizes))
            if "&" in "".join(
                filter(None, classes)
            ):  # rare: one pass, not one call each
                classes = [None if c is None else _text(c) for c in classes]
    except _Unsure:
        return None
    return page[0], (keys, etags, sizes, modified, classes), page[2]


_TRUNCATED = b"<IsTruncated>true</IsTruncated>"
_TOKEN_OPEN, _TOKEN_CLOSE = b"<NextContinuationToken>", b"</NextContinuationToken>"


def peek_token(body: bytes) -> Optional[str]:
    """The next page's token of a truncated page, found without parsing it; else ``None``.

    A hint only: the parsed page decides. No ``<`` can occur in a key's text, so the tags are
    found by a plain search (before the Contents in S3's answers, after them in some servers').
    """
    if body.find(_TRUNCATED) < 0:
        return None
    start = body.find(_TOKEN_OPEN) + len(_TOKEN_OPEN)
    end = body.find(_TOKEN_CLOSE, start)
    if start < len(_TOKEN_OPEN) or end < 0:
        return None
    try:
        token = _text(body[start:end].decode("utf-8"))
    except (UnicodeDecodeError, _Unsure):
        return None
    return token if token and "<" not in token else None


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def tree(root: ET.Element) -> Page:
    """The page from a parsed ``ListBucketResult`` element (any namespace)."""
    fields: dict[str, Optional[str]] = {}
    keys: list[str] = []
    etags: list[str] = []
    sizes: list[str] = []
    modified: list[Optional[str]] = []
    classes: list[Optional[str]] = []
    prefixes: list[Optional[str]] = []
    for child in root:
        name = _local(child.tag)
        if name == "Contents":
            values = {_local(c.tag): c.text or "" for c in child}
            keys.append(values.get("Key", ""))
            etags.append(values.get("ETag", ""))
            sizes.append(values.get("Size", ""))
            modified.append(values.get("LastModified"))
            classes.append(values.get("StorageClass"))
        elif name == "CommonPrefixes":
            found = [c.text or "" for c in child if _local(c.tag) == "Prefix"]
            prefixes.append(found[0] if found else None)
        else:
            fields[name] = child.text
    return fields, (keys, etags, sizes, modified, classes), prefixes
