"""The local AWS stand-in keeps DynamoDB's guarantees that Portside relies on
(portside/local/moto_fixes.py): a cancelled transaction changes nothing, and undoes
nothing that other requests wrote."""

from __future__ import annotations

import boto3
import pytest

from .conftest import REGION, Aws

pytestmark = pytest.mark.integration


def test_a_cancelled_transaction_restores_its_items_and_keeps_other_writes(aws: Aws) -> None:
    client = boto3.client("dynamodb", endpoint_url=aws.endpoint, region_name=REGION)
    table = "moto-fixes"
    client.create_table(
        TableName=table,
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    counter = {"pk": {"S": "p"}, "sk": {"S": "counter"}}
    client.put_item(TableName=table, Item={**counter, "n": {"N": "1"}})
    client.put_item(TableName=table, Item={"pk": {"S": "p"}, "sk": {"S": "taken"}})

    with pytest.raises(client.exceptions.TransactionCanceledException):
        client.transact_write_items(
            TransactItems=[
                {
                    "Update": {
                        "TableName": table,
                        "Key": counter,
                        "UpdateExpression": "ADD n :one",
                        "ExpressionAttributeValues": {":one": {"N": "1"}},
                    }
                },
                {
                    "Put": {
                        "TableName": table,
                        "Item": {"pk": {"S": "p"}, "sk": {"S": "new"}},
                    }
                },
                {
                    "Put": {
                        "TableName": table,
                        "Item": {"pk": {"S": "p"}, "sk": {"S": "taken"}},
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
            ]
        )
    # Written by "another request" after the cancellation: must survive.
    client.put_item(TableName=table, Item={"pk": {"S": "q"}, "sk": {"S": "other"}})

    assert client.get_item(TableName=table, Key=counter)["Item"]["n"] == {"N": "1"}
    new = client.get_item(TableName=table, Key={"pk": {"S": "p"}, "sk": {"S": "new"}})
    assert "Item" not in new
    other = client.get_item(TableName=table, Key={"pk": {"S": "q"}, "sk": {"S": "other"}})
    assert "Item" in other
