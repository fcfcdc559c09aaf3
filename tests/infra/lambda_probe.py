"""Runs one Lambda function's handler the way the Lambda runtime does, in an interpreter that
has nothing else: started by tests/infra/test_handlers_in_zip.py as ``python -I -S
lambda_probe.py <spec.json>``, with ``spec["path"]`` (the unpacked deployment artifact and a
directory of the libraries the runtime provides) as the only entries before the standard
library. Standard library only, on purpose.

It resolves ``spec["handler"]`` by import and attribute lookup (a missing module is the
runtime's ``Runtime.ImportModuleError``, a missing attribute its
``Runtime.HandlerNotFound``), invokes it with each event of ``spec["events"]`` and a context
object, and writes what happened to ``spec["report"]``.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
import traceback
import uuid
from typing import Any


class LambdaContext:
    """The context object's attributes, as the Python runtime provides them."""

    def __init__(self, function_name: str, memory_mb: int, timeout_s: int) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = (
            f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
        )
        self.memory_limit_in_mb = memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "probe"
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(int((self._deadline - time.monotonic()) * 1000), 0)


def main() -> None:
    with open(sys.argv[1]) as spec_file:
        spec: dict[str, Any] = json.load(spec_file)
    sys.path[:0] = spec["path"]
    report: dict[str, Any] = {"import_error": None, "results": []}
    started = time.perf_counter()
    try:
        module_name, _, attribute = spec["handler"].rpartition(".")
        module = importlib.import_module(module_name)
        if not hasattr(module, attribute):
            raise LookupError(f"Runtime.HandlerNotFound: {spec['handler']}")
        handler = getattr(module, attribute)
    except Exception:
        report["import_error"] = traceback.format_exc()
    else:
        report["import_seconds"] = time.perf_counter() - started
        for case in spec["events"]:
            context = LambdaContext(spec["function_name"], spec["memory_mb"], spec["timeout_s"])
            try:
                result = handler(case["event"], context)
            except Exception:
                report["results"].append({"label": case["label"], "error": traceback.format_exc()})
            else:
                report["results"].append({"label": case["label"], "result": result})
    # This script stands in for the runtime's bootstrap; everything else must come from
    # spec["path"] or the standard library.
    files = {getattr(m, "__file__", None) or "" for m in list(sys.modules.values())}
    report["module_files"] = sorted(f for f in files if f and f != __file__)
    with open(spec["report"], "w") as out:
        json.dump(report, out, default=repr)


if __name__ == "__main__":
    main()
