"""VerificationQueue implementations (registry.direct_uploads): where the background
verification of a large direct upload runs."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

import boto3

log = logging.getLogger("portside")


class LambdaVerificationQueue:
    """On AWS: an asynchronous invocation of the ``verify-direct-upload`` function
    (events.handlers.verify_direct_upload). Lambda retries a failed asynchronous
    invocation and may deliver one twice; the verification claims the session first, so a
    duplicate does nothing."""

    def __init__(self, client: Any, function_name: str) -> None:
        self.client = client
        self.function_name = function_name

    def submit(self, upload_id: str) -> None:
        self.client.invoke(
            FunctionName=self.function_name,
            InvocationType="Event",
            Payload=json.dumps({"upload_id": upload_id}).encode(),
        )


def lambda_client(endpoint_url: str | None = None, region: str | None = None) -> Any:
    return boto3.client("lambda", endpoint_url=endpoint_url, region_name=region)


class ThreadVerificationQueue:
    """In-process: each verification in a daemon thread of its own (the local runtime,
    where moto cannot run Lambda). ``run`` takes the upload id."""

    def __init__(self, run: Callable[[str], object]) -> None:
        self.run = run

    def submit(self, upload_id: str) -> None:
        threading.Thread(
            target=self._run, args=(upload_id,), name=f"verify-{upload_id}", daemon=True
        ).start()

    def _run(self, upload_id: str) -> None:
        try:
            self.run(upload_id)
        except Exception:  # a thread has nobody to report to but the log
            log.exception("verifying direct upload %s failed", upload_id)


class CollectedVerifications:
    """For tests: remembers what was submitted; ``drain`` runs them on demand."""

    def __init__(self, run: Callable[[str], object] | None = None) -> None:
        self.run = run
        self.submitted: list[str] = []

    def submit(self, upload_id: str) -> None:
        self.submitted.append(upload_id)

    def drain(self) -> None:
        assert self.run is not None
        while self.submitted:
            self.run(self.submitted.pop(0))
