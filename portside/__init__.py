"""Everything around the Lambda: the `portside` CLI and its API client, the local runtime
and the upload host's entry point. Nothing in chalicelib/ imports from here."""
