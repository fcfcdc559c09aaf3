"""Fires the app's schedules locally the way EventBridge and Lambda do on AWS.

moto does not fire EventBridge schedules, so the local runtime does. It does so through
the same path AWS takes: the schedules come from the Chalice app's registered event
sources (what `chalice package` turns into the template), each handler is found from its
handler string by import and attribute lookup (what the Lambda runtime does, so a handler
that is not a module attribute fails here as it would with `Runtime.HandlerNotFound`), and
it is invoked with an EventBridge "Scheduled Event" and a Lambda-like context.
"""

from __future__ import annotations

import importlib
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from chalice.app import Chalice, Rate, ScheduledEventConfig

log = logging.getLogger("portside.local")

LOCAL_ACCOUNT_ID = "000000000000"
SECONDS_PER_UNIT = {"minute": 60.0, "hour": 3600.0, "day": 86400.0}
RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")


@dataclass(frozen=True)
class Schedule:
    """One schedule of the app: its Chalice name, handler string and period."""

    name: str
    handler_string: str
    expression: str
    interval: float  # seconds between runs


def rate_seconds(expression: str) -> float:
    """The period of an EventBridge ``rate(...)`` expression."""
    match = RATE.match(expression)
    if match is None:
        # cron() needs a calendar; nothing in the app uses one yet.
        raise ValueError(f"the local runtime fires rate() schedules only, not {expression!r}")
    return int(match.group(1)) * SECONDS_PER_UNIT[match.group(2).rstrip("s")]


def app_schedules(
    app: Chalice, local_intervals: Mapping[str, float] | None = None
) -> list[Schedule]:
    """Every schedule the app registers, as the deployed template names it.

    ``local_intervals`` replaces the period of the named schedules (seconds): the local
    runtime fires some jobs sooner than AWS would, for a user who is watching.
    """
    overrides = dict(local_intervals or {})
    schedules = []
    for source in app.event_sources:
        if not isinstance(source, ScheduledEventConfig):
            continue
        expression = source.schedule_expression
        text = expression.to_string() if isinstance(expression, Rate) else str(expression)
        schedules.append(
            Schedule(
                name=source.name,
                handler_string=source.handler_string,
                expression=text,
                interval=(
                    overrides.pop(source.name) if source.name in overrides else rate_seconds(text)
                ),
            )
        )
    if overrides:
        raise ValueError(
            f"local intervals for schedules the app does not have: {sorted(overrides)}"
        )
    return schedules


def resolve_handler(handler_string: str) -> Callable[[dict[str, Any], Any], Any]:
    """What the Lambda runtime does with a function's ``Handler``: import the module,
    read the attribute. Raises when either is missing."""
    module_name, _, attribute = handler_string.rpartition(".")
    if not module_name:
        raise ValueError(f"handler {handler_string!r} names no module")
    module = importlib.import_module(module_name)
    handler = getattr(module, attribute, None)
    if not callable(handler):
        raise LookupError(f"Runtime.HandlerNotFound: {handler_string} is not in {module_name}")
    return handler  # type: ignore[no-any-return]


def scheduled_event(
    rule_name: str,
    region: str = "us-east-1",
    account: str = LOCAL_ACCOUNT_ID,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The event EventBridge delivers to a schedule's target."""
    when = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account,
        "time": when,
        "region": region,
        "resources": [f"arn:aws:events:{region}:{account}:rule/{rule_name}"],
        "detail": {},
    }


@dataclass
class LambdaContext:
    """The attributes of the Lambda runtime's context object that code commonly reads."""

    function_name: str
    timeout_seconds: float = 300.0
    memory_limit_in_mb: int = 512
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:{LOCAL_ACCOUNT_ID}:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        elapsed = time.monotonic() - self.started
        return max(int((self.timeout_seconds - elapsed) * 1000), 0)


def fire(schedule: Schedule) -> Any:
    """One run of a schedule, as EventBridge + Lambda would do it."""
    handler = resolve_handler(schedule.handler_string)
    return handler(scheduled_event(schedule.name), LambdaContext(function_name=schedule.name))


def run_schedules(
    stop: threading.Event,
    schedules: list[Schedule],
    invoke: Callable[[Schedule], object] = fire,
    tick: float = 1.0,
) -> None:
    """Fire each schedule every ``interval`` seconds until ``stop`` is set (the first run
    comes at once, as a freshly deployed rule's first run comes within its period). A
    failing run is logged and the schedule keeps running, as on AWS."""
    next_run = [0.0 for _ in schedules]
    clock = 0.0
    while True:
        for i, schedule in enumerate(schedules):
            if clock >= next_run[i]:
                next_run[i] = clock + schedule.interval
                try:
                    invoke(schedule)
                except Exception:
                    log.exception("scheduled job %s failed", schedule.name)
        if stop.wait(tick):
            return
        clock += tick
