"""Request logging and EMF metrics (aws-lambda-powertools) for every /v2/ request.

The metrics feed the CloudWatch alarms of the deployment (5xx rate, latency). They are
flushed per request because Chalice handlers do not get powertools' decorator lifecycle.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from .messages import HttpRequest, HttpResponse

logger = Logger(service="portside")
metrics = Metrics(namespace="Portside", service="portside")


def record_request(
    request: HttpRequest, response: HttpResponse, route: str, elapsed_ms: float
) -> None:
    metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
    if response.status >= 500:
        metrics.add_metric(name="ServerErrors", unit=MetricUnit.Count, value=1)
    elif response.status >= 400:
        metrics.add_metric(name="ClientErrors", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="Latency", unit=MetricUnit.Milliseconds, value=elapsed_ms)
    metrics.flush_metrics()
    # Never the query string: upload Locations carry a capability in ``_state``.
    logger.debug(
        "request",
        extra={
            "method": request.method,
            "route": route,
            "status": response.status,
            "elapsed_ms": round(elapsed_ms, 2),
        },
    )
