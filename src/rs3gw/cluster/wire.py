"""The codec behind cluster/messages.py: frozen dataclasses <-> msgpack-ready maps, checked field
by field against their type annotations.

A record is any dataclass whose fields use the types below; its wire form is a map keyed by field
name, plus ``"v"``: the record's VERSION. Decoding checks every field and names the first one that
is wrong (``WireError("Staged.sid: expected str, got int")``), so a malformed message is refused at
the boundary and never fails deep inside a handler. Map keys the decoder does not know are ignored:
a later release may add optional fields (with defaults) without a version bump, and this release
still decodes what it sends. A change an older node cannot read bumps VERSION; a version outside
[MIN_VERSION, VERSION] is refused with UnsupportedVersion, which names what this node speaks.

Field types: str, int, float, bool, bytes, Any (any msgpack value), ``X | None``, ``list[X]``,
``dict[str, X]``, nested dataclasses (storage's ObjectMeta, UploadInfo, ...), and the types with a
registered codec (``register_codec``: replication events keep their own versioned encoding).
Strings may hold lone surrogates (S3 keys from invalid UTF-8): the transport packs them with
``surrogatepass``, so they need nothing here.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from typing import Any, ClassVar, Protocol, TypeVar

VERSION_KEY = "v"


class WireError(ValueError):
    """A map that is not a valid record of the expected type (the message says where)."""


class UnsupportedVersion(WireError):
    def __init__(self, name: str, version: Any, low: int, high: int) -> None:
        super().__init__(f"{name} version {version!r} is not spoken here (versions {low}..{high})")
        self.high = high


class _Bad(Exception):
    """A value that does not convert; ``path`` grows as it propagates out through the records,
    lists and maps it sits in (built only on failure: decoding stays cheap)."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what
        self.path: list[str] = []


class Record(Protocol):
    """A dataclass instance: what encode() takes."""
    __dataclass_fields__: ClassVar[dict[str, Any]]


R = TypeVar("R")
Encode = Callable[[Any], Any]
Decode = Callable[[Any], Any]

_CODECS: dict[type, tuple[Encode, Decode]] = {}
# Per record class: [(field name, encode, decode, has default)], built on first use.
_PLANS: dict[type, list[tuple[str, Encode, Decode, bool]]] = {}


def register_codec(tp: type, encode: Encode, decode: Callable[[Any], Any]) -> None:
    """``decode`` raises ValueError/TypeError for a bad value; WireError is raised in its name."""
    def dec(v: Any) -> Any:
        try:
            return decode(v)
        except (ValueError, TypeError) as e:
            raise _Bad(str(e)) from e
    _CODECS[tp] = (encode, dec)


def encode(rec: Record) -> dict[str, Any]:
    cls = type(rec)
    out: dict[str, Any] = {VERSION_KEY: getattr(cls, "VERSION", 1)}
    for name, enc, _dec, _opt in _plan(cls):
        out[name] = enc(getattr(rec, name))
    return out


def decode(cls: type[R], body: Any) -> R:
    """An instance of ``cls`` from its wire map; WireError (or UnsupportedVersion) if it is not."""
    if not isinstance(body, dict):
        raise WireError(f"{cls.__name__}: expected a map, got {type(body).__name__}")
    high = getattr(cls, "VERSION", 1)
    low = getattr(cls, "MIN_VERSION", 1)
    v = body.get(VERSION_KEY)
    if type(v) is not int or not low <= v <= high:
        raise UnsupportedVersion(cls.__name__, v, low, high)
    try:
        return _decode_record(cls, body)
    except _Bad as e:
        where = cls.__name__ + "".join(reversed(e.path))
        raise WireError(f"{where}: {e.what}") from e


def _decode_record(cls: type[R], body: Any) -> R:
    if not isinstance(body, dict):
        raise _Bad(f"expected a map, got {type(body).__name__}")
    kwargs = {}
    for name, _enc, dec, optional in _plan(cls):
        if name in body:
            try:
                kwargs[name] = dec(body[name])
            except _Bad as e:
                e.path.append(f".{name}")
                raise
        elif not optional:
            bad = _Bad("missing")
            bad.path.append(f".{name}")
            raise bad
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:      # a dataclass's own __post_init__ checks
        raise _Bad(str(e)) from e


def _plan(cls: type) -> list[tuple[str, Encode, Decode, bool]]:
    plan = _PLANS.get(cls)
    if plan is None:
        hints = typing.get_type_hints(cls)
        plan = []
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            enc, dec = _converter(hints[f.name])
            optional = (f.default is not dataclasses.MISSING
                        or f.default_factory is not dataclasses.MISSING)
            plan.append((f.name, enc, dec, optional))
        _PLANS[cls] = plan
    return plan


def _same(v: Any) -> Any:
    return v


def _scalar(tp: type) -> tuple[Encode, Decode]:
    def dec(v: Any) -> Any:
        # type(), not isinstance(): a bool is an int in Python, never on the wire.
        if type(v) is tp:
            return v
        if tp is float and type(v) is int:
            return float(v)
        if tp is bytes and type(v) is bytearray:
            return bytes(v)
        raise _Bad(f"expected {tp.__name__}, got {type(v).__name__}")
    return _same, dec


def _converter(tp: Any) -> tuple[Encode, Decode]:
    if tp is Any:
        return _same, _same
    if tp in (str, int, float, bool, bytes):
        return _scalar(tp)
    if tp in _CODECS:
        return _CODECS[tp]
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if len(inner) != 1 or len(args) != 2:
            raise TypeError(f"wire: only X | None unions are supported, not {tp}")
        ienc, idec = _converter(inner[0])
        return (lambda v: None if v is None else ienc(v),
                lambda v: None if v is None else idec(v))
    if origin is list:
        eenc, edec = _converter(args[0])

        def dec_list(v: Any) -> Any:
            if not isinstance(v, list):
                raise _Bad(f"expected a list, got {type(v).__name__}")
            out = []
            for i, x in enumerate(v):
                try:
                    out.append(edec(x))
                except _Bad as e:
                    e.path.append(f"[{i}]")
                    raise
            return out
        if eenc is _same:
            return list, dec_list
        return (lambda v: [eenc(x) for x in v]), dec_list
    if origin is dict:
        if args[0] is not str:
            raise TypeError(f"wire: dict keys must be str, not {args[0]}")
        venc, vdec = _converter(args[1])

        def dec_dict(v: Any) -> Any:
            if not isinstance(v, dict):
                raise _Bad(f"expected a map, got {type(v).__name__}")
            out = {}
            for k, x in v.items():
                if not isinstance(k, str):
                    raise _Bad(f"key {k!r} is not text")
                try:
                    out[k] = vdec(x)
                except _Bad as e:
                    e.path.append(f"[{k!r}]")
                    raise
            return out
        if venc is _same:
            return dict, dec_dict
        return (lambda v: {k: venc(x) for k, x in v.items()}), dec_dict
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        cls = tp

        def enc_rec(v: Any) -> Any:
            return {name: enc(getattr(v, name)) for name, enc, _d, _o in _plan(cls)}
        return enc_rec, lambda v: _decode_record(cls, v)
    raise TypeError(f"wire: no converter for {tp!r}")


__all__ = ["UnsupportedVersion", "WireError", "decode", "encode", "register_codec"]
