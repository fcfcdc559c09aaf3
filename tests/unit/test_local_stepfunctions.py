"""The garbage-collection state machine (the ASL file the stack deploys), run by the local
runtime's interpreter with fake Lambda handlers: it loops until the collection is done,
waits when asked, retries a failing step then hands the error to gc-failed, and continues
as a new execution after many steps; and the gc-step / gc-failed handlers answer what the
definition reads."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

import chalicelib.events.handlers as handlers
from chalicelib.application import create_app
from portside.local.stepfunctions import (
    GC_DEFINITION,
    GC_FUNCTIONS,
    Interpreter,
    RuntimeFailure,
    TaskError,
    app_functions,
    evaluate,
    gc_definition,
    load_definition,
)

SM_ARN = "arn:aws:states:us-east-1:000000000000:stateMachine:portside-local-gc"
START = {"registry_id": "reg-1", "gc_uuid": "gc-1", "iterations": 0, "generation": 0}


@dataclass
class Collector:
    """Stands in for GarbageCollector: ``plan`` is what each step answers, in order
    (StepOutcome-like (done, wait_seconds)), or an exception to raise."""

    plan: list[Any]
    steps: list[tuple[str, str]] = field(default_factory=list)
    failures: list[tuple[str, str, str]] = field(default_factory=list)

    def step(self, registry_id: str, gc_uuid: str) -> SimpleNamespace:
        self.steps.append((registry_id, gc_uuid))
        answer = self.plan.pop(0) if self.plan else (True, 0)
        if isinstance(answer, Exception):
            raise answer
        done, wait = answer
        return SimpleNamespace(done=done, wait_seconds=wait)

    def fail(self, registry_id: str, gc_uuid: str, error: str) -> None:
        self.failures.append((registry_id, gc_uuid, error))


@dataclass
class Sleeps:
    """Records the waits instead of sleeping (the interpreter's stop event)."""

    seconds: list[float] = field(default_factory=list)

    def event(self) -> threading.Event:
        recorder = self

        class Recording(threading.Event):
            def wait(self, timeout: float | None = None) -> bool:
                recorder.seconds.append(float(timeout or 0))
                return False

        return Recording()


@pytest.fixture
def collector(monkeypatch: pytest.MonkeyPatch) -> Collector:
    fake = Collector(plan=[])
    monkeypatch.setattr(handlers.wiring, "garbage_collector", lambda: fake, raising=False)
    return fake


def interpreter(
    starts: list[tuple[str, str, str]], sleeps: Sleeps, max_wait: float = 2.0
) -> Interpreter:
    def start(arn: str, name: str, document: str) -> str:
        starts.append((arn, name, document))
        return f"{arn.replace(':stateMachine:', ':execution:')}:{name}"

    # The real handlers, found from their handler strings as the local runtime finds them.
    return Interpreter(
        gc_definition(), app_functions(create_app()), start, max_wait, sleeps.event()
    )


def test_the_definition_names_only_the_apps_functions_and_every_placeholder_is_filled() -> None:
    text = GC_DEFINITION.read_text()
    assert set(GC_FUNCTIONS) == {"GcStepFunctionArn", "GcFailedFunctionArn"}
    for placeholder in GC_FUNCTIONS:
        assert "${" + placeholder + "}" in text
    assert set(GC_FUNCTIONS.values()) <= set(app_functions(create_app()))
    with pytest.raises(ValueError, match="GcFailedFunctionArn"):
        load_definition(GC_DEFINITION, {"GcStepFunctionArn": "x"})


def test_steps_until_the_collection_is_done(collector: Collector) -> None:
    collector.plan = [(False, 0), (False, 0), (True, 0)]
    starts: list[tuple[str, str, str]] = []
    sleeps = Sleeps()
    outcome = interpreter(starts, sleeps).run(dict(START), state_machine_arn=SM_ARN)

    assert outcome.status == "SUCCEEDED"
    assert collector.steps == [("reg-1", "gc-1")] * 3
    assert outcome.output["done"] is True and outcome.output["iterations"] == 3
    assert outcome.states[-1] == "Done"
    assert not starts and not sleeps.seconds and not collector.failures


def test_waits_as_long_as_the_step_asks_capped_locally(collector: Collector) -> None:
    collector.plan = [(False, 1), (False, 300), (True, 0)]
    sleeps = Sleeps()
    outcome = interpreter([], sleeps, max_wait=2.0).run(dict(START))

    assert outcome.status == "SUCCEEDED"
    assert outcome.states.count("Wait") == 2
    assert sleeps.seconds == [1.0, 2.0]  # 300 s shortened to the local maximum
    assert len(collector.steps) == 3


def test_a_failing_step_is_retried_then_gc_failed_records_the_error(
    collector: Collector,
) -> None:
    collector.plan = [RuntimeError("dynamo is down")] * 10
    sleeps = Sleeps()
    outcome = interpreter([], sleeps, max_wait=100.0).run(dict(START))

    assert outcome.status == "FAILED"
    assert outcome.error == "GarbageCollectionFailed"
    # One attempt and three retries (States.TaskFailed: 5 s, x2 back-off).
    assert len(collector.steps) == 4
    assert sleeps.seconds == [5.0, 10.0, 20.0]
    assert collector.failures == [("reg-1", "gc-1", "RuntimeError: dynamo is down")]
    assert outcome.states[-2:] == ["Fail", "Failed"]


def test_a_step_that_recovers_within_its_retries_goes_on(collector: Collector) -> None:
    collector.plan = [RuntimeError("throttled"), (False, 0), (True, 0)]
    outcome = interpreter([], Sleeps()).run(dict(START))
    assert outcome.status == "SUCCEEDED"
    assert not collector.failures and len(collector.steps) == 3


def test_after_many_steps_it_continues_as_a_new_execution_with_a_name_of_its_own(
    collector: Collector,
) -> None:
    collector.plan = [(False, 0)] * 500
    starts: list[tuple[str, str, str]] = []
    first = interpreter(starts, Sleeps()).run(dict(START), state_machine_arn=SM_ARN)

    assert first.status == "SUCCEEDED" and first.states[-1] == "Continued"
    assert len(collector.steps) == handlers.STEPS_PER_EXECUTION
    ((arn, name, document),) = starts
    assert arn == SM_ARN and name == "gc-1-1"
    assert json.loads(document) == {
        "registry_id": "reg-1",
        "gc_uuid": "gc-1",
        "iterations": 0,
        "generation": 1,
    }
    # The continuation continues with the next generation's name.
    collector.plan = [(False, 0)] * 500
    second = interpreter(starts, Sleeps()).run(json.loads(document), state_machine_arn=SM_ARN)
    assert second.status == "SUCCEEDED" and starts[-1][1] == "gc-1-2"


def test_a_continuation_that_already_exists_ends_this_execution_quietly(
    collector: Collector,
) -> None:
    collector.plan = [(False, 0)] * 500

    def already(arn: str, name: str, document: str) -> str:
        raise TaskError("StepFunctions.ExecutionAlreadyExistsException", name)

    machine = Interpreter(gc_definition(), app_functions(create_app()), already, 0.0)
    outcome = machine.run(dict(START))
    assert outcome.status == "SUCCEEDED" and outcome.states[-1] == "Continued"
    assert not collector.failures


def test_gc_step_without_iterations_starts_counting_at_one(collector: Collector) -> None:
    collector.plan = [(False, 7)]
    answer = handlers.gc_step({"registry_id": "r", "gc_uuid": "g"}, None)
    assert answer == {
        "registry_id": "r",
        "gc_uuid": "g",
        "done": False,
        "wait_seconds": 7,
        "iterations": 1,
        "restart": False,
        "generation": 0,
    }


def test_gc_failed_keeps_the_lambda_error_short_and_readable(collector: Collector) -> None:
    cause = json.dumps({"errorType": "ConflictError", "errorMessage": "x" * 2000})
    handlers.gc_failed(
        {"registry_id": "r", "gc_uuid": "g", "error": {"Error": "ConflictError", "Cause": cause}},
        None,
    )
    ((_, _, text),) = collector.failures
    assert text.startswith("ConflictError: xxx") and len(text) == handlers.ERROR_TEXT_LIMIT
    handlers.gc_failed(
        {"registry_id": "r", "gc_uuid": "g", "error": {"Error": "States.Timeout", "Cause": ""}},
        None,
    )
    assert collector.failures[-1][2] == "States.Timeout"


def test_parameters_paths_context_and_intrinsics() -> None:
    data = {"a": {"b": [1, 2]}, "n": 4, "s": "x"}
    context = {"StateMachine": {"Id": "arn:sm"}}
    template = {
        "static": {"k": 1},
        "path.$": "$.a.b[1]",
        "ctx.$": "$$.StateMachine.Id",
        "name.$": "States.Format('{}-{}', $.s, States.MathAdd($.n, 1))",
        "json.$": "States.JsonToString($.a)",
    }
    assert evaluate(template, data, context) == {
        "static": {"k": 1},
        "path": 2,
        "ctx": "arn:sm",
        "name": "x-5",
        "json": '{"b":[1,2]}',
    }
    with pytest.raises(RuntimeFailure):
        evaluate({"missing.$": "$.nope"}, data, context)


def test_a_path_that_does_not_resolve_fails_the_execution_uncaught(
    collector: Collector,
) -> None:
    """States.Runtime is neither retried nor caught, as on AWS."""

    def bad_step(event: Any, context: Any) -> dict[str, Any]:
        return {"registry_id": "r"}  # no "done": the Choice cannot read it

    functions = {**app_functions(create_app()), "gc-step": bad_step}
    machine = Interpreter(gc_definition(), functions, lambda *a: "", 0.0)
    outcome = machine.run(dict(START))
    assert (outcome.status, outcome.error) == ("FAILED", "States.Runtime")
    assert outcome.states == ["Step", "Next step"]
    assert not collector.failures
