"""A client for the OCI distribution protocol, behind ``portside push`` and ``portside pull``.

Works with any OCI registry (``registry``: the Bearer token dance or HTTP Basic, blobs,
manifests), reads images from OCI layouts, ``docker save`` archives and the docker daemon
(``sources``), writes OCI layouts (``layout``), and moves blobs in parallel (``transfer``)
through an upload strategy (``uploaders``): the standard protocol, or Portside's direct
uploads to S3 when the registry advertises them.
Only ``requests`` and the standard library.
"""

from __future__ import annotations

from .errors import DigestMismatch, RegistryError
from .reference import Reference, parse_reference

__all__ = ["DigestMismatch", "Reference", "RegistryError", "parse_reference"]
