"""OCI distribution-spec v1.1 conformance suite for Portside (and reference registries)."""
