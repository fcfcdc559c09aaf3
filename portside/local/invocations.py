"""Asynchronous Lambda invocations the app makes, run by the local runtime.

moto cannot run Lambda (FACTS.md), so the invocation of ``verify-direct-upload`` that a
completed large direct upload triggers on AWS runs here: the function is found from the
handler string of the app's template (so a handler that is not a module attribute fails as
it would with ``Runtime.HandlerNotFound``) and invoked in a thread with the event AWS
would deliver and a Lambda-like context.
"""

from __future__ import annotations

from typing import Any

from chalicelib.adapters.verification import ThreadVerificationQueue

from .schedules import LambdaContext
from .stepfunctions import app_functions

VERIFY_FUNCTION = "verify-direct-upload"


def local_verification_queue(app: Any) -> ThreadVerificationQueue:
    """What stands in for the asynchronous invocation of ``verify-direct-upload``."""
    handler = app_functions(app)[VERIFY_FUNCTION]

    def invoke(upload_id: str) -> object:
        context = LambdaContext(function_name=VERIFY_FUNCTION, timeout_seconds=900.0)
        return handler({"upload_id": upload_id}, context)

    return ThreadVerificationQueue(invoke)
