"""DeleteObjects: up to 1,000 keys (or versions) in one request, one store transaction."""
from __future__ import annotations

from ...http.request import Response
from ...storage import BucketInfo, valid_version_id
from ..common import MAX_KEY_BYTES, Ctx, xml_response
from ..errors import S3Error
from ..xml import document, parse, text
from .bodies import read_xml_body


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
    done = (await ctx.store.delete_objects(bucket.name, todo, owner_id=ctx.owner_id)
            if todo else [])
    deleted: list[tuple[str, object]] = []
    if not quiet:
        for (key, vid), d in zip(todo, done, strict=True):
            fields: list[tuple[str, object]] = [("Key", key)]
            if vid is not None:
                fields.append(("VersionId", vid))
            if d.delete_marker:
                fields.append(("DeleteMarker", "true"))
                if vid is None and d.version_id is not None:
                    fields.append(("DeleteMarkerVersionId", d.version_id))
            deleted.append(("Deleted", fields))
    return xml_response(document("DeleteResult", deleted + results))
