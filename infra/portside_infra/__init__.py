"""Portside's AWS CDK app: the stack (stack.py), its IAM (policies.py) and the Lambda
package (lambda_bundle.py). Stages are configured in infra/stages.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

INFRA_DIR = Path(__file__).resolve().parent.parent


def cdk_context() -> dict[str, Any]:
    """The feature flags of cdk.json, for apps built in-process (tests)."""
    context: dict[str, Any] = json.loads((INFRA_DIR / "cdk.json").read_text())["context"]
    return context
