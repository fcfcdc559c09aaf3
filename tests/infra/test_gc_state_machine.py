"""The garbage-collection engine as the stack deploys it: the Standard state machine of
infra/state_machines/garbage_collection.asl.json with the gc-step and gc-failed functions
substituted, logging its errors, and IAM that lets exactly the state machine invoke those
two functions and continue itself, and exactly the API and the collection schedule start
it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from portside_infra.stack import GC_DEFINITION, GC_PLACEHOLDERS

from portside.local.stepfunctions import GC_FUNCTIONS

from .conftest import Synth
from .test_template import (
    STAGE_NAMES,
    _grants,
    _resource_kind,
    actions_of,
    functions,
    role_statements,
    text,
)

ARN_ENV = "PORTSIDE_GC_STATE_MACHINE_ARN"
STARTERS = {"APIHandler", "ScheduledCollections"}
USERS = STARTERS | {"GcStep", "GcFailed"}  # functions that wire the garbage collector


def state_machine(synth: Synth) -> tuple[str, dict[str, Any]]:
    ((logical, resource),) = synth.of_type("AWS::StepFunctions::StateMachine").items()
    return logical, resource["Properties"]


def own_arn(stage: str) -> str:
    """The state machine's ARN as the stack writes it (a fixed name: no cycle)."""
    return text(
        {
            "Fn::Join": [
                "",
                [
                    "arn:",
                    {"Ref": "AWS::Partition"},
                    f":states:us-east-1:123456789012:stateMachine:portside-{stage}-gc",
                ],
            ]
        }
    )


def role_of(synth: Synth, logical: str) -> str:
    return str(functions(synth)[logical]["Properties"]["Role"]["Fn::GetAtt"][0])


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_a_standard_state_machine_runs_the_shared_definition_on_the_gc_functions(
    synths: dict[str, Synth], stage: str
) -> None:
    synth = synths[stage]
    _, props = state_machine(synth)
    assert props["StateMachineType"] == "STANDARD"
    assert props["StateMachineName"] == f"portside-{stage}-gc"
    # The very file the local runtime interprets, placeholders and all.
    deployed = json.loads(props["DefinitionString"])
    assert deployed == json.loads(GC_DEFINITION.read_text())
    assert set(deployed["States"]) == {
        "Step",
        "Next step",
        "Wait",
        "Continue as new",
        "Continued",
        "Done",
        "Fail",
        "Failed",
    }
    assert props["DefinitionSubstitutions"] == {
        "GcStepFunctionArn": {"Fn::GetAtt": ["GcStep", "Arn"]},
        "GcFailedFunctionArn": {"Fn::GetAtt": ["GcFailed", "Arn"]},
    }
    # The local runtime substitutes the same placeholders with the same functions.
    assert GC_PLACEHOLDERS == GC_FUNCTIONS
    logging = props["LoggingConfiguration"]
    assert logging["Level"] == "ERROR" and logging["IncludeExecutionData"] is False
    (destination,) = logging["Destinations"]
    group = destination["CloudWatchLogsLogGroup"]["LogGroupArn"]["Fn::GetAtt"][0]
    assert synth.resources[group]["Properties"]["LogGroupName"] == (
        f"/aws/vendedlogs/states/portside-{stage}-gc"
    )


def test_the_state_machine_may_invoke_its_two_functions_and_continue_itself_only(
    synths: dict[str, Synth],
) -> None:
    synth = synths["dev"]
    _, props = state_machine(synth)
    grants = _grants(synth, props["RoleArn"]["Fn::GetAtt"][0])
    assert grants.pop("lambda:InvokeFunction") == {
        text({"Fn::GetAtt": ["GcStep", "Arn"]}),
        text({"Fn::GetAtt": ["GcFailed", "Arn"]}),
    }
    assert grants.pop("states:StartExecution") == {own_arn("dev")}
    # What remains is CDK's log delivery (which only works on "*").
    assert all(action.startswith("logs:") for action in grants), grants


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_only_the_api_and_the_schedule_start_collections_and_every_user_knows_the_arn(
    synths: dict[str, Synth], stage: str
) -> None:
    synth = synths[stage]
    for logical, fn in functions(synth).items():
        grants = _grants(synth, role_of(synth, logical))
        states = {a: r for a, r in grants.items() if a.startswith("states:")}
        if logical in STARTERS:
            assert states == {"states:StartExecution": {own_arn(stage)}}, logical
        else:
            assert not states, logical
        variables = fn["Properties"]["Environment"]["Variables"]
        if logical in USERS:
            assert text(variables[ARN_ENV]) == own_arn(stage), logical
        else:
            assert ARN_ENV not in variables, logical


def test_gc_functions_get_their_own_grants_and_settings(synths: dict[str, Synth]) -> None:
    synth = synths["dev"]

    def grants(logical: str) -> dict[str, set[str]]:
        return {
            a: {_resource_kind(synth, r) for r in rs}
            for a, rs in _grants(synth, role_of(synth, logical)).items()
        }

    step = grants("GcStep")
    assert step["s3:DeleteObject"] == {"registries", "uploads"}
    assert step["s3:ListBucket"] == step["s3:ListBucketMultipartUploads"] == {"bucket"}
    assert step["dynamodb:Query"] == {"table", "index"}
    assert "s3:PutObject" not in step and "secretsmanager:GetSecretValue" not in step
    failed = grants("GcFailed")
    assert not [a for a in failed if a.startswith("s3:")]
    assert "dynamodb:DeleteItem" not in failed and "secretsmanager:GetSecretValue" not in failed
    scheduled = grants("ScheduledCollections")
    assert not [a for a in scheduled if a.startswith("s3:")]
    for logical in ("GcStep", "GcFailed", "ScheduledCollections"):
        assert (
            "PORTSIDE_SIGNING_KEY_SECRET_ARN"
            not in functions(synth)[logical]["Properties"]["Environment"]["Variables"]
        )
    props = functions(synth)["GcStep"]["Properties"]
    assert (props["Timeout"], props["MemorySize"]) == (300, 1024)
    assert functions(synth)["GcStep"]["Properties"]["Handler"] == (
        "chalicelib.events.handlers.gc_step"
    )
    assert functions(synth)["GcFailed"]["Properties"]["Handler"] == (
        "chalicelib.events.handlers.gc_failed"
    )


def test_failed_collections_raise_an_alarm(synths: dict[str, Synth]) -> None:
    synth = synths["dev"]
    logical, _ = state_machine(synth)
    (alarm,) = [
        a["Properties"]
        for k, a in synth.of_type("AWS::CloudWatch::Alarm").items()
        if k.startswith("GcExecutionsFailedAlarm")
    ]
    assert alarm["MetricName"] == "ExecutionsFailed"
    assert alarm["Dimensions"] == [{"Name": "StateMachineArn", "Value": {"Ref": logical}}]


def test_every_grant_of_the_engine_is_an_action_list_not_a_wildcard(
    synths: dict[str, Synth],
) -> None:
    synth = synths["dev"]
    _, props = state_machine(synth)
    role = props["RoleArn"]["Fn::GetAtt"][0]
    for statement in role_statements(synth, role):
        assert "*" not in actions_of(statement)
        if not all(a.startswith("logs:") for a in actions_of(statement)):
            assert statement["Resource"] != "*"
