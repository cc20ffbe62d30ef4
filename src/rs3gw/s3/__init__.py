"""The S3 protocol layer: routing, SigV4, XML, errors, and one handler module per family."""
