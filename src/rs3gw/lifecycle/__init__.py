"""Bucket lifecycle: the rule model (``rules``, pure) and the background scanner that executes
the rules through an ObjectStore (``scanner``, with its durable ``cursor``).

What it offers: ``Configuration`` and its parts, ``CONFIG_KIND`` (the bucket config kind the
configuration is stored under), ``due`` (AWS's day arithmetic), ``Scanner`` and ``CursorFile``.
The S3 layer uses only the rule model; the server builds and runs the scanner.
"""
from rs3gw.lifecycle.cursor import Cursor, CursorFile
from rs3gw.lifecycle.rules import (
    CONFIG_KIND,
    Configuration,
    Expiration,
    Filter,
    NoncurrentExpiration,
    Rule,
    due,
)
from rs3gw.lifecycle.scanner import Scanner, every_key

__all__ = [
    "CONFIG_KIND",
    "Configuration",
    "Cursor",
    "CursorFile",
    "Expiration",
    "Filter",
    "NoncurrentExpiration",
    "Rule",
    "Scanner",
    "due",
    "every_key",
]
