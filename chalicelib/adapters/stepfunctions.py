"""CollectionEngine on AWS Step Functions: a collection is an execution of the state
machine infra/state_machines/garbage_collection.asl.json, which calls the gc-step Lambda
until the collection is done."""

from __future__ import annotations

import json
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError


def stepfunctions_client(endpoint_url: str | None = None, region: str | None = None) -> Any:
    config = Config(retries={"max_attempts": 5, "mode": "standard"})
    return boto3.client(
        "stepfunctions", endpoint_url=endpoint_url, region_name=region, config=config
    )


class StepFunctionsEngine:
    def __init__(self, state_machine_arn: str, client: Any) -> None:
        self.state_machine_arn = state_machine_arn
        self.client = client

    def start(self, registry_id: str, gc_uuid: str) -> None:
        """Start the collection's first execution, named after the collection: a retried
        start (a Lambda retry, a client retrying the API call) finds the execution already
        there and starts nothing more."""
        document = {
            "registry_id": registry_id,
            "gc_uuid": gc_uuid,
            "iterations": 0,
            "generation": 0,
        }
        try:
            self.client.start_execution(
                stateMachineArn=self.state_machine_arn,
                name=gc_uuid,
                input=json.dumps(document, sort_keys=True),
            )
        except ClientError as exc:
            # Same name, and either another input or a closed execution: this collection
            # was started before. Starting it twice must not run it twice.
            if exc.response.get("Error", {}).get("Code") != "ExecutionAlreadyExists":
                raise
