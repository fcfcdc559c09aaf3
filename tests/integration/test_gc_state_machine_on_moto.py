"""A collection started through StepFunctionsEngine (the adapter the Lambda uses) becomes a
moto execution of the real state machine definition, which the local runtime's runner
picks up and interprets: gc-step is called until the collection is done, a long collection
continues as a new execution, and the executions end."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

import chalicelib.events.handlers as handlers
from chalicelib.adapters.stepfunctions import StepFunctionsEngine, stepfunctions_client
from chalicelib.application import create_app
from portside.local.stepfunctions import (
    ARN_ENV,
    app_functions,
    install_state_machine,
    run_state_machines,
)

from .conftest import REGION, Aws

pytestmark = pytest.mark.integration


@dataclass
class Collector:
    """GarbageCollector's step/fail, answering ``steps_to_done - 1`` "not done" first."""

    steps_to_done: int
    steps: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def step(self, registry_id: str, gc_uuid: str) -> SimpleNamespace:
        with self.lock:
            self.steps.append(gc_uuid)
            done = len(self.steps) >= self.steps_to_done
        return SimpleNamespace(done=done, wait_seconds=0 if done else 1)

    def fail(self, registry_id: str, gc_uuid: str, error: str) -> None:
        self.failures.append(error)


@dataclass
class Machine:
    client: Any
    arn: str
    engine: StepFunctionsEngine


@pytest.fixture
def machine(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> Iterator[Machine]:
    monkeypatch.delenv(ARN_ENV, raising=False)
    client = stepfunctions_client(aws.endpoint, REGION)
    name = f"gc-it-{uuid.uuid4().hex[:8]}"
    arn = install_state_machine(client, name)
    assert os.environ[ARN_ENV] == arn  # what the app is wired with
    stop = threading.Event()
    runner = threading.Thread(
        target=run_state_machines,
        args=(stop, client, arn, app_functions(create_app())),
        kwargs={"poll": 0.1, "max_wait": 0.05},
        daemon=True,
    )
    runner.start()
    try:
        yield Machine(client, arn, StepFunctionsEngine(arn, client))
    finally:
        stop.set()
        runner.join(timeout=5)


def wait_until(predicate: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def running(machine: Machine) -> list[dict[str, Any]]:
    answer: list[dict[str, Any]] = machine.client.list_executions(
        stateMachineArn=machine.arn, statusFilter="RUNNING"
    )["executions"]
    return answer


def test_a_started_collection_is_stepped_until_done(
    machine: Machine, monkeypatch: pytest.MonkeyPatch
) -> None:
    collector = Collector(steps_to_done=4)
    monkeypatch.setattr(handlers.wiring, "garbage_collector", lambda: collector, raising=False)
    gc_uuid = str(uuid.uuid4())

    machine.engine.start("reg-it", gc_uuid)
    machine.engine.start("reg-it", gc_uuid)  # a retried start runs nothing twice

    wait_until(lambda: len(collector.steps) >= 4 and not running(machine))
    time.sleep(0.3)  # nothing runs after done
    assert collector.steps == [gc_uuid] * 4
    assert not collector.failures
    (execution,) = machine.client.list_executions(stateMachineArn=machine.arn)["executions"]
    assert execution["name"] == gc_uuid and execution["status"] != "RUNNING"
    # Starting it again after it ended is still not an error, and starts nothing.
    machine.engine.start("reg-it", gc_uuid)
    time.sleep(0.3)
    assert len(collector.steps) == 4


def test_a_long_collection_continues_in_new_executions(
    machine: Machine, monkeypatch: pytest.MonkeyPatch
) -> None:
    collector = Collector(steps_to_done=7)
    monkeypatch.setattr(handlers.wiring, "garbage_collector", lambda: collector, raising=False)
    monkeypatch.setattr(handlers, "STEPS_PER_EXECUTION", 3)
    gc_uuid = str(uuid.uuid4())

    machine.engine.start("reg-it", gc_uuid)

    wait_until(lambda: len(collector.steps) >= 7 and not running(machine))
    assert len(collector.steps) == 7
    names = sorted(
        e["name"] for e in machine.client.list_executions(stateMachineArn=machine.arn)["executions"]
    )
    assert names == sorted([gc_uuid, f"{gc_uuid}-1", f"{gc_uuid}-2"])
