"""Runs the app's Step Functions state machines locally.

moto stores state machines and executions but runs nothing, so the local runtime does what
Step Functions would: it creates the state machine of
infra/state_machines/garbage_collection.asl.json in moto (the very file the CDK stack
deploys), watches moto for running executions, and interprets each one with the small
Amazon States Language interpreter below. Lambda tasks resolve the function by its Chalice
name to the handler string `chalice package` writes into the template and call it the way
the Lambda runtime does (import, attribute lookup: see schedules.resolve_handler), with a
JSON round trip of the payload and the result.

The interpreter covers what the definitions use: Task (``lambda:invoke`` and
``states:startExecution``) with Retry and Catch, Choice, Wait, Pass, Succeed and Fail;
InputPath, Parameters (paths, the context object ``$$``, and the intrinsics
States.Format, States.MathAdd, States.JsonToString and States.StringToJson), ResultSelector,
ResultPath and OutputPath. Local accelerations, on purpose: a Wait and a retry's back-off
last at most ``max_wait`` seconds (2 s by default), jitter is not applied, and a Task's
TimeoutSeconds is not enforced.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import threading
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .schedules import LambdaContext, resolve_handler

log = logging.getLogger("portside.local")

REPO_ROOT = Path(__file__).resolve().parents[2]
GC_DEFINITION = REPO_ROOT / "infra" / "state_machines" / "garbage_collection.asl.json"
GC_STATE_MACHINE_NAME = "portside-local-gc"
# Placeholders of the definition -> the Chalice name of the function each one stands for
# (the CDK stack substitutes the deployed functions' ARNs for the same placeholders).
GC_FUNCTIONS = {"GcStepFunctionArn": "gc-step", "GcFailedFunctionArn": "gc-failed"}
ARN_ENV = "PORTSIDE_GC_STATE_MACHINE_ARN"
LOCAL_ROLE = "arn:aws:iam::000000000000:role/portside-local-states"
DEFAULT_MAX_WAIT = 2.0

LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
START_EXECUTION = "arn:aws:states:::states:startExecution"

Handler = Callable[[Any, Any], Any]
Starter = Callable[[str, str, str], str]  # (state machine ARN, name, input JSON) -> ARN


# ------------------------------------------------------------------------ definitions


def load_definition(
    path: Path = GC_DEFINITION, substitutions: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The definition with ``${Name}`` placeholders replaced (what CloudFormation's
    DefinitionSubstitutions does); an unreplaced placeholder is an error."""
    text = path.read_text()
    for name, value in (substitutions or {}).items():
        text = text.replace("${" + name + "}", value)
    left = re.findall(r"\$\{([A-Za-z0-9_]+)\}", text)
    if left:
        raise ValueError(f"{path.name}: no substitution for {sorted(set(left))}")
    definition: dict[str, Any] = json.loads(text)
    return definition


def local_function_arn(name: str, region: str = "us-east-1") -> str:
    return f"arn:aws:lambda:{region}:000000000000:function:{name}"


def function_name(arn_or_name: str) -> str:
    """The function a lambda:invoke FunctionName names (a name, or an ARN, possibly with a
    version or alias)."""
    if ":function:" in arn_or_name:
        return arn_or_name.split(":function:", 1)[1].split(":", 1)[0]
    return arn_or_name


def gc_definition() -> dict[str, Any]:
    return load_definition(
        GC_DEFINITION, {key: local_function_arn(name) for key, name in GC_FUNCTIONS.items()}
    )


# ----------------------------------------------------------------------------- errors


class TaskError(Exception):
    """A named States error (what Retry and Catch match on)."""

    def __init__(self, error: str, cause: str = "") -> None:
        super().__init__(f"{error}: {cause}")
        self.error = error
        self.cause = cause


class RuntimeFailure(TaskError):
    """States.Runtime: a path that does not resolve, a bad definition. Neither Retry nor
    Catch sees it; the execution fails."""

    def __init__(self, cause: str) -> None:
        super().__init__("States.Runtime", cause)


class Cancelled(Exception):
    """The local runtime is shutting down."""


def _matches(error: str, names: list[str]) -> bool:
    if error == "States.Runtime":
        return False
    if error in names or "States.ALL" in names:
        return True
    return "States.TaskFailed" in names and error != "States.Timeout"


# ------------------------------------------------------------------------------ paths

_STEP = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]")


def _steps(path: str) -> list[str | int]:
    rest = path[1:]
    steps: list[str | int] = []
    pos = 0
    while pos < len(rest):
        match = _STEP.match(rest, pos)
        if match is None:
            raise RuntimeFailure(f"unsupported path {path!r}")
        steps.append(match.group(1) if match.group(1) is not None else int(match.group(2)))
        pos = match.end()
    return steps


def read_path(path: str, data: Any, context: Mapping[str, Any] | None = None) -> Any:
    """``$``, ``$.a.b[0]``, and ``$$.`` (the context object)."""
    if path.startswith("$$"):
        data, path = context or {}, path[1:]
    if not path.startswith("$"):
        raise RuntimeFailure(f"not a path: {path!r}")
    value = data
    for step in _steps(path):
        try:
            value = value[step]
        except (KeyError, IndexError, TypeError):
            raise RuntimeFailure(f"path {path!r} does not match the input") from None
    return value


def write_path(path: str | None, data: Any, result: Any) -> Any:
    """ResultPath: where the result goes in (a copy of) the input; null keeps the input."""
    if path is None:
        return data
    steps = _steps(path)
    if not steps:
        return result
    out = copy.deepcopy(data) if isinstance(data, dict) else {}
    node = out
    for step in steps[:-1]:
        if not isinstance(step, str):
            raise RuntimeFailure(f"unsupported ResultPath {path!r}")
        node = node.setdefault(step, {})
        if not isinstance(node, dict):
            raise RuntimeFailure(f"ResultPath {path!r} crosses a non-object")
    node[steps[-1]] = result
    return out


# ------------------------------------------------------------------------- intrinsics

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<path>\$\$?[^,()\s]*)"
    r"|(?P<fn>States\.[A-Za-z]+)\(|(?P<close>\))|(?P<comma>,)|(?P<word>true|false|null))"
)


def _intrinsic_args(text: str, pos: int, data: Any, context: Mapping[str, Any]) -> tuple[Any, int]:
    """Parse one argument at ``pos``; return its value and the position after it."""
    match = _TOKEN.match(text, pos)
    if match is None:
        raise RuntimeFailure(f"cannot parse intrinsic {text!r} at {pos}")
    if match.group("str") is not None:
        raw = match.group("str")[1:-1]
        return re.sub(r"\\(.)", r"\1", raw), match.end()
    if match.group("num") is not None:
        number = match.group("num")
        return (float(number) if "." in number else int(number)), match.end()
    if match.group("path") is not None:
        return read_path(match.group("path"), data, context), match.end()
    if match.group("word") is not None:
        return json.loads(match.group("word")), match.end()
    if match.group("fn") is not None:
        name, pos = match.group("fn"), match.end()
        args: list[Any] = []
        while True:
            close = _TOKEN.match(text, pos)
            if close is not None and close.group("close") is not None:
                return _call_intrinsic(name, args), close.end()
            value, pos = _intrinsic_args(text, pos, data, context)
            args.append(value)
            sep = _TOKEN.match(text, pos)
            if sep is not None and sep.group("comma") is not None:
                pos = sep.end()
    raise RuntimeFailure(f"unexpected token in intrinsic {text!r} at {pos}")


def _call_intrinsic(name: str, args: list[Any]) -> Any:
    if name == "States.Format":
        template, values = (
            str(args[0]),
            [v if isinstance(v, str) else json.dumps(v) for v in args[1:]],
        )
        parts = template.split("{}")
        if len(parts) - 1 != len(values):
            raise RuntimeFailure(f"States.Format: {len(values)} values for {template!r}")
        return "".join(p + (values[i] if i < len(values) else "") for i, p in enumerate(parts))
    if name == "States.MathAdd":
        return args[0] + args[1]
    if name == "States.JsonToString":
        return json.dumps(args[0], separators=(",", ":"))
    if name == "States.StringToJson":
        return json.loads(args[0])
    raise RuntimeFailure(f"intrinsic {name} is not supported by the local interpreter")


def evaluate(template: Any, data: Any, context: Mapping[str, Any]) -> Any:
    """Parameters / ResultSelector: keys ending in ``.$`` take a path or an intrinsic."""
    if isinstance(template, dict):
        out: dict[str, Any] = {}
        for key, value in template.items():
            if key.endswith(".$"):
                if not isinstance(value, str):
                    raise RuntimeFailure(f"{key}: expected a path or an intrinsic")
                if value.startswith("States."):
                    out[key[:-2]], _ = _intrinsic_args(value, 0, data, context)
                else:
                    out[key[:-2]] = read_path(value, data, context)
            else:
                out[key] = evaluate(value, data, context)
        return out
    if isinstance(template, list):
        return [evaluate(v, data, context) for v in template]
    return template


# ------------------------------------------------------------------------------ choice

_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "Equals": lambda a, b: a == b,
    "LessThan": lambda a, b: a < b,
    "GreaterThan": lambda a, b: a > b,
    "LessThanEquals": lambda a, b: a <= b,
    "GreaterThanEquals": lambda a, b: a >= b,
}
_KINDS: dict[str, Callable[[Any], bool]] = {
    "Numeric": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "String": lambda v: isinstance(v, str),
    "Boolean": lambda v: isinstance(v, bool),
    "Timestamp": lambda v: isinstance(v, str),
}


def choice_matches(rule: Mapping[str, Any], data: Any, context: Mapping[str, Any]) -> bool:
    if "And" in rule:
        return all(choice_matches(r, data, context) for r in rule["And"])
    if "Or" in rule:
        return any(choice_matches(r, data, context) for r in rule["Or"])
    if "Not" in rule:
        return not choice_matches(rule["Not"], data, context)
    variable = rule["Variable"]
    if "IsPresent" in rule:
        try:
            read_path(variable, data, context)
        except RuntimeFailure:
            return not rule["IsPresent"]
        return bool(rule["IsPresent"])
    value = read_path(variable, data, context)
    for key, expected in rule.items():
        if key in ("Variable", "Next"):
            continue
        if key == "IsNull":
            return (value is None) == bool(expected)
        for kind, is_kind in _KINDS.items():
            if not key.startswith(kind):
                continue
            operator = key[len(kind) :]
            if operator.endswith("Path"):
                operator, expected = operator[:-4], read_path(expected, data, context)
            if operator in _COMPARE:
                # A value of another type never matches (Step Functions does not coerce).
                return is_kind(value) and _COMPARE[operator](value, expected)
        raise RuntimeFailure(f"Choice operator {key} is not supported by the local interpreter")
    raise RuntimeFailure(f"Choice rule without a comparison: {rule}")


# ------------------------------------------------------------------------ interpreter


@dataclass
class Outcome:
    status: str  # "SUCCEEDED" | "FAILED"
    output: Any = None
    error: str | None = None
    cause: str | None = None
    states: list[str] = field(default_factory=list)  # the states entered, in order


@dataclass
class Interpreter:
    """Runs one execution of ``definition``. ``functions`` maps a Lambda function's name to
    its handler (``handler(event, context)``); ``start_execution`` starts an execution of
    a state machine (the ``states:startExecution`` integration)."""

    definition: Mapping[str, Any]
    functions: Mapping[str, Handler]
    start_execution: Starter
    max_wait: float = DEFAULT_MAX_WAIT
    stop: threading.Event = field(default_factory=threading.Event)

    def run(
        self,
        execution_input: Any,
        execution_arn: str = "arn:aws:states:us-east-1:000000000000:execution:local:run",
        state_machine_arn: str = "arn:aws:states:us-east-1:000000000000:stateMachine:local",
    ) -> Outcome:
        context: dict[str, Any] = {
            "Execution": {
                "Id": execution_arn,
                "Name": execution_arn.rsplit(":", 1)[-1],
                "Input": execution_input,
                "StartTime": _now(),
            },
            "StateMachine": {"Id": state_machine_arn, "Name": state_machine_arn.rsplit(":", 1)[-1]},
        }
        states: list[str] = []
        name: str = self.definition["StartAt"]
        data = execution_input
        try:
            while True:
                states.append(name)
                state = self.definition["States"][name]
                context["State"] = {"Name": name, "EnteredTime": _now(), "RetryCount": 0}
                kind = state["Type"]
                if kind == "Succeed":
                    return Outcome(
                        "SUCCEEDED",
                        self._output(state, self._input(state, data, context)),
                        states=states,
                    )
                if kind == "Fail":
                    return Outcome("FAILED", None, state.get("Error"), state.get("Cause"), states)
                if kind == "Choice":
                    effective = self._input(state, data, context)
                    following = next(
                        (
                            rule["Next"]
                            for rule in state["Choices"]
                            if choice_matches(rule, effective, context)
                        ),
                        state.get("Default"),
                    )
                    if following is None:
                        raise TaskError("States.NoChoiceMatched", f"no choice matched in {name}")
                    data, name = self._output(state, effective), following
                    continue
                if kind == "Wait":
                    effective = self._input(state, data, context)
                    if "SecondsPath" in state:
                        seconds = float(read_path(state["SecondsPath"], effective, context))
                    else:
                        seconds = float(state.get("Seconds", 0))
                    self._sleep(seconds)
                    data = self._output(state, effective)
                elif kind == "Pass":
                    effective = self._input(state, data, context)
                    if "Parameters" in state:
                        effective = evaluate(state["Parameters"], effective, context)
                    result = state.get("Result", effective)
                    data = self._output(
                        state, write_path(state.get("ResultPath", "$"), data, result)
                    )
                elif kind == "Task":
                    data, caught = self._task(name, state, data, context)
                    if caught is not None:
                        name = caught
                        continue
                else:
                    raise RuntimeFailure(f"state type {kind} is not supported locally")
                if state.get("End"):
                    return Outcome("SUCCEEDED", data, states=states)
                name = state["Next"]
        except TaskError as exc:
            return Outcome("FAILED", None, exc.error, exc.cause, states)

    # -- states

    def _task(
        self, name: str, state: Mapping[str, Any], data: Any, context: dict[str, Any]
    ) -> tuple[Any, str | None]:
        """Run a Task with its retriers; the new data, and the state to go to when a
        catcher took the error (None when the task succeeded)."""
        attempts = [0 for _ in state.get("Retry", [])]
        while True:
            try:
                effective = self._input(state, data, context)
                if "Parameters" in state:
                    effective = evaluate(state["Parameters"], effective, context)
                result = self._call(state["Resource"], effective)
                if "ResultSelector" in state:
                    result = evaluate(state["ResultSelector"], result, context)
                return self._output(
                    state, write_path(state.get("ResultPath", "$"), data, result)
                ), None
            except RuntimeFailure:
                raise
            except TaskError as exc:
                error = exc
            delay = self._retry_delay(state.get("Retry", []), attempts, error.error)
            if delay is not None:
                context["State"]["RetryCount"] = sum(attempts)
                log.info("state %s: retrying %s in %.1f s", name, error.error, delay)
                self._sleep(delay)
                continue
            for catcher in state.get("Catch", []):
                if _matches(error.error, catcher["ErrorEquals"]):
                    caught = {"Error": error.error, "Cause": error.cause}
                    return write_path(catcher.get("ResultPath", "$"), data, caught), catcher["Next"]
            raise error

    def _retry_delay(
        self, retriers: list[Mapping[str, Any]], attempts: list[int], error: str
    ) -> float | None:
        for i, retrier in enumerate(retriers):
            if not _matches(error, retrier["ErrorEquals"]):
                continue
            if attempts[i] >= int(retrier.get("MaxAttempts", 3)):
                return None
            delay = (
                float(retrier.get("IntervalSeconds", 1))
                * float(retrier.get("BackoffRate", 2.0)) ** attempts[i]
            )
            if "MaxDelaySeconds" in retrier:
                delay = min(delay, float(retrier["MaxDelaySeconds"]))
            attempts[i] += 1
            return delay
        return None

    def _call(self, resource: str, parameters: Any) -> Any:
        if resource == LAMBDA_INVOKE or resource.startswith("arn:aws:lambda:"):
            target = parameters["FunctionName"] if resource == LAMBDA_INVOKE else resource
            payload = parameters.get("Payload") if resource == LAMBDA_INVOKE else parameters
            answer = self._invoke(function_name(target), payload)
            if resource == LAMBDA_INVOKE:
                return {"ExecutedVersion": "$LATEST", "Payload": answer, "StatusCode": 200}
            return answer
        if resource == START_EXECUTION:
            document = parameters.get("Input", {})
            text = document if isinstance(document, str) else json.dumps(document)
            name = parameters.get("Name") or str(uuid.uuid4())
            arn = self.start_execution(parameters["StateMachineArn"], name, text)
            return {"ExecutionArn": arn, "StartDate": _now()}
        raise RuntimeFailure(f"Task resource {resource} is not supported by the local interpreter")

    def _invoke(self, name: str, payload: Any) -> Any:
        handler = self.functions.get(name)
        if handler is None:
            raise TaskError("Lambda.ResourceNotFoundException", f"Function not found: {name}")
        event = json.loads(json.dumps(payload))  # what Lambda delivers is JSON
        try:
            result = handler(event, LambdaContext(function_name=name))
        except Exception as exc:
            # The Lambda runtime's error document; Step Functions names the error by type.
            cause = {
                "errorMessage": str(exc),
                "errorType": type(exc).__name__,
                "stackTrace": traceback.format_exception(exc)[-5:],
            }
            raise TaskError(type(exc).__name__, json.dumps(cause)) from exc
        return json.loads(json.dumps(result))

    # -- paths

    def _input(self, state: Mapping[str, Any], data: Any, context: Mapping[str, Any]) -> Any:
        if "InputPath" in state and state["InputPath"] is None:
            return {}
        return read_path(state.get("InputPath", "$"), data, context)

    def _output(self, state: Mapping[str, Any], data: Any) -> Any:
        if "OutputPath" in state and state["OutputPath"] is None:
            return {}
        return read_path(state.get("OutputPath", "$"), data)

    def _sleep(self, seconds: float) -> None:
        # The local acceleration: never longer than max_wait.
        if self.stop.wait(max(min(seconds, self.max_wait), 0.0)):
            raise Cancelled()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ------------------------------------------------------------------- the local runner


def app_functions(app: Any) -> dict[str, Handler]:
    """The app's pure Lambda functions by Chalice name, each resolved from its handler
    string as the Lambda runtime would (so a handler that is not a module attribute fails
    here as it would on AWS)."""
    return {
        function.name: resolve_handler(function.handler_string)
        for function in app.pure_lambda_functions
    }


def install_state_machine(client: Any, name: str = GC_STATE_MACHINE_NAME) -> str:
    """Create (idempotently) the collection state machine in moto and publish its ARN to
    the app through the environment, as the stack does for the deployed functions. Call it
    before the app is wired (settings are read once)."""
    arn: str = client.create_state_machine(
        name=name,
        definition=json.dumps(gc_definition()),
        roleArn=LOCAL_ROLE,
        type="STANDARD",
    )["stateMachineArn"]
    os.environ[ARN_ENV] = arn
    return arn


def run_state_machines(
    stop: threading.Event,
    client: Any,
    state_machine_arn: str,
    functions: Mapping[str, Handler],
    definition: Mapping[str, Any] | None = None,
    poll: float = 0.5,
    max_wait: float = DEFAULT_MAX_WAIT,
) -> None:
    """Interpret every execution of the state machine that moto reports running, once
    each, in a thread of its own, until ``stop`` is set. An interpreted execution is then
    stopped in moto (moto has no way to mark it succeeded), so it is not picked again."""
    machine = definition or gc_definition()
    handled: set[str] = set()

    def starter(arn: str, name: str, document: str) -> str:
        try:
            answer = client.start_execution(stateMachineArn=arn, name=name, input=document)
        except client.exceptions.ExecutionAlreadyExists as exc:
            raise TaskError("StepFunctions.ExecutionAlreadyExistsException", str(exc)) from exc
        except Exception as exc:
            raise TaskError("StepFunctions.SdkClientException", str(exc)) from exc
        return str(answer["executionArn"])

    def execute(arn: str) -> None:
        interpreter = Interpreter(machine, functions, starter, max_wait, stop)
        try:
            document = json.loads(client.describe_execution(executionArn=arn)["input"] or "{}")
            outcome = interpreter.run(document, arn, state_machine_arn)
        except Cancelled:
            return
        except Exception:
            log.exception("state machine execution %s could not be interpreted", arn)
            outcome = Outcome("FAILED", error="States.Runtime", cause="local interpreter error")
        if outcome.status == "FAILED":
            log.warning("execution %s failed: %s %s", arn, outcome.error, outcome.cause)
        try:
            client.stop_execution(
                executionArn=arn,
                error=(outcome.error or outcome.status)[:256],
                cause=(outcome.cause or "interpreted by the local runtime")[:32768],
            )
        except Exception:
            log.exception("could not close execution %s in moto", arn)

    while not stop.is_set():
        try:
            listing = client.list_executions(
                stateMachineArn=state_machine_arn, statusFilter="RUNNING"
            )["executions"]
        except Exception:
            log.exception("listing executions of %s failed", state_machine_arn)
            listing = []
        for execution in listing:
            arn = execution["executionArn"]
            if arn in handled:
                continue
            handled.add(arn)
            threading.Thread(
                target=execute, args=(arn,), name=f"sfn-{execution['name']}", daemon=True
            ).start()
        stop.wait(poll)
