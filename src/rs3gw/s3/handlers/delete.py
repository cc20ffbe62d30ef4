"""DeleteObjects: up to 1,000 keys (or versions) in one request, one store transaction (two when
the governance bypass is granted for some of its versions only)."""
from __future__ import annotations

from ...http.request import Response
from ...storage import BucketInfo, DeleteResult, valid_version_id
from ..common import MAX_KEY_BYTES, Ctx, xml_response
from ..errors import S3Error
from ..xml import document, parse, text
from .bodies import read_xml_body
from .objectlock import bypass_asked, governance_bypass

LOCKED_MESSAGE = "Access Denied because object protected by object lock."


async def delete_objects(ctx: Ctx, bucket: BucketInfo | None) -> Response:
    assert bucket is not None
    root = parse(await read_xml_body(ctx, require_integrity=True), "Delete")
    quiet = (text(root, "Quiet") or "false").strip().lower() == "true"
    objs = root.findall("Object")
    if not objs:
        raise S3Error("MalformedXML")
    if len(objs) > 1000:
        raise S3Error("MalformedXML", "The number of keys in a DeleteObjects request cannot exceed 1000")
    results: list[tuple[str, object]] = []
    todo: list[tuple[str, str | None]] = []
    for o in objs:
        key = text(o, "Key")
        if key is None:
            raise S3Error("MalformedXML")
        vid = text(o, "VersionId")
        if len(key.encode()) > MAX_KEY_BYTES:
            results.append(("Error", [("Key", key), ("Code", "KeyTooLongError"),
                                      ("Message", "Your key is too long")]))
            continue
        if vid is not None and not valid_version_id(vid):
            results.append(("Error", [("Key", key), ("VersionId", vid), ("Code", "NoSuchVersion"),
                                      ("Message", "The specified version does not exist.")]))
            continue
        try:
            ctx.access.check_access(ctx, bucket, "DeleteObject", key)
        except S3Error as e:
            results.append(("Error", [("Key", key), ("Code", e.code), ("Message", e.message)]))
            continue
        todo.append((key, vid))
    done = await _delete(ctx, bucket, todo)
    deleted: list[tuple[str, object]] = []
    for (key, vid), d in zip(todo, done, strict=True):
        if d.locked:
            results.append(("Error", [("Key", key), ("VersionId", vid), ("Code", "AccessDenied"),
                                      ("Message", LOCKED_MESSAGE)]))
        elif not quiet:
            fields: list[tuple[str, object]] = [("Key", key)]
            if vid is not None:
                fields.append(("VersionId", vid))
            if d.delete_marker:
                fields.append(("DeleteMarker", "true"))
                if vid is None and d.version_id is not None:
                    fields.append(("DeleteMarkerVersionId", d.version_id))
            deleted.append(("Deleted", fields))
    return xml_response(document("DeleteResult", deleted + results))


async def _delete(ctx: Ctx, bucket: BucketInfo, todo: list[tuple[str, str | None]],
                  ) -> list[DeleteResult]:
    """The store's deletes, in one transaction unless the governance bypass applies to some of
    the versions only (a policy may grant it per key): then one for those, one for the rest."""
    if not todo:
        return []
    asked = bypass_asked(ctx)
    # Only a delete by version id can meet a lock: the others go with either group.
    flags = [asked and vid is not None and governance_bypass(ctx, bucket, key)
             for key, vid in todo]
    versioned = [f for (_, vid), f in zip(todo, flags, strict=True) if vid is not None]
    if all(versioned) or not any(versioned):
        return await ctx.store.delete_objects(bucket.name, todo, owner_id=ctx.owner_id,
                                              bypass_governance=any(versioned))
    out: dict[int, DeleteResult] = {}
    for flag in (True, False):
        idx = [i for i, f in enumerate(flags) if f == flag]
        got = await ctx.store.delete_objects(bucket.name, [todo[i] for i in idx],
                                             owner_id=ctx.owner_id, bypass_governance=flag)
        out.update(zip(idx, got, strict=True))
    return [out[i] for i in range(len(todo))]
