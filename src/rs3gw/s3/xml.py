"""S3 XML: a small builder for responses and a guarded parser for request bodies."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from typing import Union

from .errors import S3Error

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
XML_DECL = '<?xml version="1.0" encoding="UTF-8"?>\n'

_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;",
                          "\r": "&#13;"})

# A node is (tag, text-or-children). None values are skipped, so optional fields read naturally.
Child = Union["tuple[str, object]", "Raw", None]


_NEEDS_ESCAPE = re.compile(r"[&<>\"'\r]")


def esc(s: str) -> str:
    # Most keys, ETags and dates need nothing; one regex scan is much cheaper than translate().
    if _NEEDS_ESCAPE.search(s) is None:
        return s
    return s.translate(_ESCAPES)


class Raw(str):
    """Already serialised XML (a listing's entries, built in one f-string each): emitted as is."""


def _emit(out: list[str], tag: str, value: object) -> None:
    if value is None:
        return
    if isinstance(value, Raw):
        out.append(value)
    elif isinstance(value, bool):
        out.append(f"<{tag}>{'true' if value else 'false'}</{tag}>")
    elif isinstance(value, (list, tuple)):
        out.append(f"<{tag}>")
        for child in value:
            if child is not None:
                _emit(out, child[0], child[1])
        out.append(f"</{tag}>")
    else:
        out.append(f"<{tag}>{esc(str(value))}</{tag}>")


def document(root: str, children: Iterable[Child], *, ns: bool = True) -> bytes:
    """Serialise ``<root xmlns=S3>children</root>`` with the XML declaration."""
    out = [XML_DECL, f'<{root} xmlns="{S3_NS}">' if ns else f"<{root}>"]
    for child in children:
        if isinstance(child, Raw):
            out.append(child)
        elif child is not None:
            _emit(out, child[0], child[1])
    out.append(f"</{root}>")
    return "".join(out).encode()


MAX_XML_BYTES = 2 << 20


def parse(body: bytes, expected_root: str | None = None) -> ET.Element:
    """Parse a request body; namespaces are stripped so handlers look up plain tag names.

    DOCTYPE declarations are refused outright: S3 bodies never need them and they are the
    vehicle for entity-expansion attacks.
    """
    if not body.strip():
        raise S3Error("MalformedXML")
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise S3Error("MalformedXML")
    try:
        root = ET.fromstring(body)
    except ET.ParseError as e:
        raise S3Error("MalformedXML") from e
    for el in root.iter():
        if isinstance(el.tag, str) and "}" in el.tag:
            el.tag = el.tag.split("}", 1)[1]
    if expected_root is not None and root.tag != expected_root:
        raise S3Error("MalformedXML")
    return root


def text(el: ET.Element, tag: str, default: str | None = None) -> str | None:
    child = el.find(tag)
    if child is None:
        return default
    return child.text or ""
