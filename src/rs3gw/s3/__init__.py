"""The S3 protocol layer: routing, SigV4, XML, errors, and one handler module per family.

What it offers: ``S3App`` (app.py: one request in, one response out, over a storage.ObjectStore)
and ``AccessControl`` (access.py: users, the root, bucket policies); sigv4 and errors for the
admin surface's signed calls. It never imports the cluster or the admin surface."""
