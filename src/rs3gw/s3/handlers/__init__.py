"""One module per operation family; REGISTRY maps each AWS operation name to its handler."""
from __future__ import annotations

from collections.abc import Awaitable, Callable

from ...http.request import Response
from ...storage import BucketInfo
from ..common import Ctx
from . import buckets, copy, delete, lifecycle, listing, multipart, objectlock, objects, tagging

# The bucket is None only for the operations that have none (ListBuckets, CreateBucket).
HandlerFn = Callable[[Ctx, BucketInfo | None], Awaitable[Response]]

REGISTRY: dict[str, HandlerFn] = {
    "ListBuckets": buckets.list_buckets,
    "CreateBucket": buckets.create_bucket,
    "HeadBucket": buckets.head_bucket,
    "DeleteBucket": buckets.delete_bucket,
    "GetBucketLocation": buckets.get_bucket_location,
    "GetBucketVersioning": buckets.get_bucket_versioning,
    "PutBucketVersioning": buckets.put_bucket_versioning,
    "GetBucketTagging": buckets.get_bucket_tagging,
    "PutBucketTagging": buckets.put_bucket_tagging,
    "DeleteBucketTagging": buckets.delete_bucket_tagging,
    "GetBucketPolicy": buckets.get_bucket_policy,
    "PutBucketPolicy": buckets.put_bucket_policy,
    "DeleteBucketPolicy": buckets.delete_bucket_policy,
    "GetBucketLifecycleConfiguration": lifecycle.get_bucket_lifecycle_configuration,
    "PutBucketLifecycleConfiguration": lifecycle.put_bucket_lifecycle_configuration,
    "DeleteBucketLifecycle": lifecycle.delete_bucket_lifecycle,
    "GetBucketAcl": buckets.get_bucket_acl,
    "PutBucketAcl": buckets.put_acl,
    "PutObjectAcl": buckets.put_acl,
    "GetObjectAcl": tagging.get_object_acl,
    "Unsupported": buckets.unsupported,
    "ListObjects": listing.list_objects_v1,
    "ListObjectsV2": listing.list_objects_v2,
    "ListObjectVersions": listing.list_object_versions,
    "PutObject": objects.put_object,
    "GetObject": objects.get_object,
    "HeadObject": objects.head_object,
    "DeleteObject": objects.delete_object,
    "CopyObject": copy.copy_object,
    "DeleteObjects": delete.delete_objects,
    "GetObjectTagging": tagging.get_object_tagging,
    "PutObjectTagging": tagging.put_object_tagging,
    "DeleteObjectTagging": tagging.delete_object_tagging,
    "CreateMultipartUpload": multipart.create_multipart_upload,
    "UploadPart": multipart.upload_part,
    "UploadPartCopy": multipart.upload_part_copy,
    "CompleteMultipartUpload": multipart.complete_multipart_upload,
    "AbortMultipartUpload": multipart.abort_multipart_upload,
    "ListParts": multipart.list_parts,
    "ListMultipartUploads": multipart.list_multipart_uploads,
    "PutObjectLockConfiguration": objectlock.put_object_lock_configuration,
    "GetObjectLockConfiguration": objectlock.get_object_lock_configuration,
    "PutObjectRetention": objectlock.put_object_retention,
    "GetObjectRetention": objectlock.get_object_retention,
    "PutObjectLegalHold": objectlock.put_object_legal_hold,
    "GetObjectLegalHold": objectlock.get_object_legal_hold,
}
