"""The one S3 error table: every error code with its HTTP status and default message.

Handlers raise ``S3Error("NoSuchKey", key=...)``; the router turns it into the XML body
AWS sends (Code, Message, Resource, RequestId, plus extra fields such as BucketName/Key).
"""
from __future__ import annotations

from typing import Any

# code -> (HTTP status, default message). Messages follow the AWS S3 error reference.
ERRORS: dict[str, tuple[int, str]] = {
    "AccessDenied": (403, "Access Denied"),
    "AccountProblem": (403, "There is a problem with your AWS account."),
    "AuthorizationHeaderMalformed": (400, "The authorization header is malformed."),
    "AuthorizationQueryParametersError": (400, "Query-string authentication parameters are invalid."),
    "BadDigest": (400, "The Content-MD5 you specified did not match what we received."),
    "BucketAlreadyExists": (409, ("The requested bucket name is not available. The bucket namespace is "
                                 "shared by all users of the system. Please select a different name "
                                 "and try again.")),
    "BucketAlreadyOwnedByYou": (409, ("Your previous request to create the named bucket succeeded and "
                                     "you already own it.")),
    "BucketNotEmpty": (409, "The bucket you tried to delete is not empty"),
    "ConditionalRequestConflict": (409, ("A conflicting operation occurred. If using PutObject you can "
                                        "retry the request. If using multipart upload you should "
                                        "initiate another CreateMultipartUpload request and re-upload "
                                        "each part.")),
    "EntityTooLarge": (400, "Your proposed upload exceeds the maximum allowed size"),
    "EntityTooSmall": (400, "Your proposed upload is smaller than the minimum allowed object size."),
    "ExpiredToken": (400, "The provided token has expired."),
    "IllegalLocationConstraintException": (400, ("The unspecified location constraint is incompatible "
                                                "for the region specific endpoint this request was "
                                                "sent to.")),
    "IllegalVersioningConfigurationException": (400, ("The versioning configuration specified "
                                                      "in the request is invalid.")),
    "IncompleteBody": (400, ("You did not provide the number of bytes specified by the Content-Length "
                            "HTTP header.")),
    "InternalError": (500, "We encountered an internal error. Please try again."),
    "InvalidAccessKeyId": (403, "The AWS Access Key Id you provided does not exist in our records."),
    "InvalidArgument": (400, "Invalid Argument"),
    "InvalidBucketName": (400, "The specified bucket is not valid."),
    "InvalidBucketState": (409, "The request is not valid with the current state of the bucket."),
    "InvalidDigest": (400, "The Content-MD5 you specified is not valid."),
    "InvalidLocationConstraint": (400, "The specified location constraint is not valid."),
    "InvalidObjectState": (403, "The operation is not valid for the current state of the object."),
    "InvalidPart": (400, ("One or more of the specified parts could not be found.  The part may not "
                         "have been uploaded, or the specified entity tag may not match the part's "
                         "entity tag.")),
    "InvalidPartOrder": (400, ("The list of parts was not in ascending order. Parts must be ordered by "
                              "part number.")),
    "InvalidPolicyDocument": (400, ("The content of the form does not meet the conditions specified in "
                                   "the policy document.")),
    "InvalidPartNumber": (416, "The requested partnumber is not satisfiable"),
    "InvalidRange": (416, "The requested range is not satisfiable"),
    "InvalidRequest": (400, "Invalid Request"),
    "InvalidStorageClass": (400, "The storage class you specified is not valid"),
    "InvalidTag": (400, "The tag provided was not a valid tag."),
    "InvalidURI": (400, "Couldn't parse the specified URI."),
    "KeyTooLongError": (400, "Your key is too long"),
    "MalformedPolicy": (400, "Policies must be valid JSON and the first byte must be '{'"),
    "MalformedXML": (400, ("The XML you provided was not well-formed or did not validate against our "
                          "published schema")),
    "MaxMessageLengthExceeded": (400, "Your request was too big."),
    "MetadataTooLarge": (400, "Your metadata headers exceed the maximum allowed metadata size."),
    "MethodNotAllowed": (405, "The specified method is not allowed against this resource."),
    "MissingContentLength": (411, "You must provide the Content-Length HTTP header."),
    "MissingRequestBodyError": (400, "Request Body is empty"),
    "MissingSecurityHeader": (400, "Your request was missing a required header"),
    "NoSuchBucket": (404, "The specified bucket does not exist"),
    "NoSuchBucketPolicy": (404, "The bucket policy does not exist"),
    "NoSuchCORSConfiguration": (404, "The CORS configuration does not exist"),
    "NoSuchLifecycleConfiguration": (404, "The lifecycle configuration does not exist"),
    "NoSuchWebsiteConfiguration": (404, "The specified bucket does not have a website configuration"),
    "NoSuchPublicAccessBlockConfiguration": (404, "The public access block configuration was not found"),
    "ServerSideEncryptionConfigurationNotFoundError": (404, ("The server side encryption configuration "
                                                            "was not found")),
    "ReplicationConfigurationNotFoundError": (404, "The replication configuration was not found"),
    "ObjectLockConfigurationNotFoundError": (404, ("Object Lock configuration does not exist for this "
                                                  "bucket")),
    "OwnershipControlsNotFoundError": (404, "The bucket ownership controls were not found"),
    "NoSuchKey": (404, "The specified key does not exist."),
    "NoSuchObjectLockConfiguration": (404, ("The specified object does not have a ObjectLock "
                                            "configuration")),
    "NoSuchTagSet": (404, "The TagSet does not exist"),
    "NoSuchUpload": (404, ("The specified upload does not exist. The upload ID may be invalid, or the "
                          "upload may have been aborted or completed.")),
    "NoSuchVersion": (404, "The specified version does not exist."),
    "NotImplemented": (501, "A header you provided implies functionality that is not implemented"),
    "NotModified": (304, "Not Modified"),
    "PreconditionFailed": (412, "At least one of the pre-conditions you specified did not hold"),
    "RequestHeaderSectionTooLarge": (400, ("Your request header section exceeds the maximum allowed "
                                          "size.")),
    "RequestTimeTooSkewed": (403, ("The difference between the request time and the server's time is "
                                  "too large.")),
    "RequestTimeout": (400, ("Your socket connection to the server was not read from or written to "
                            "within the timeout period.")),
    "RequestURITooLong": (414, "The request URI is too long."),
    "ServiceUnavailable": (503, "Please reduce your request rate."),
    "SignatureDoesNotMatch": (403, ("The request signature we calculated does not match the signature "
                                   "you provided. Check your key and signing method.")),
    "SlowDown": (503, "Please reduce your request rate."),
    "TooManyBuckets": (400, "You have attempted to create more buckets than allowed"),
    "XAmzContentSHA256Mismatch": (400, ("The provided 'x-amz-content-sha256' header does not match "
                                       "what was computed.")),
    "InvalidChunkSizeError": (403, ("Only the last chunk is allowed to have a size less than 8192 "
                                   "bytes")),
    "BadRequest": (400, "Bad Request"),
}


class S3Error(Exception):
    """An S3 error response. ``fields`` become extra XML elements (BucketName, Key, ...)."""

    def __init__(self, code: str, message: str | None = None, *, resource: str | None = None,
                 headers: dict[str, str] | None = None, **fields: Any) -> None:
        if code not in ERRORS:
            raise ValueError(f"unknown S3 error code {code!r}")
        status, default = ERRORS[code]
        super().__init__(f"{code}: {message or default}")
        self.code = code
        self.status = status
        self.message = message or default
        self.resource = resource
        self.headers = headers or {}
        self.fields = fields
