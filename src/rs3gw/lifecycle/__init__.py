"""Bucket lifecycle: the rule model (``rules``, pure).

What it offers: ``Configuration`` and its parts, ``CONFIG_KIND`` (the bucket config kind the
configuration is stored under), ``due`` (AWS's day arithmetic). The S3 layer uses only the rule
model.
"""
from rs3gw.lifecycle.rules import (
    CONFIG_KIND,
    Configuration,
    Expiration,
    Filter,
    NoncurrentExpiration,
    Rule,
    due,
)

__all__ = [
    "CONFIG_KIND",
    "Configuration",
    "Expiration",
    "Filter",
    "NoncurrentExpiration",
    "Rule",
    "due",
]
