"""The CloudFront origin-response function (Lambda@Edge) that undoes API Gateway's remapping."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from chalicelib.http import chalice_views
from portside_edge import origin_response
from portside_edge.origin_response import handler

EDGE_DIR = Path(origin_response.__file__).resolve().parent
CHALLENGE = 'Bearer realm="https://registry.example/v2/token",service="portside"'


def cf_event(
    headers: dict[str, str | list[str]], method: str = "GET", status: int = 401
) -> dict[str, Any]:
    """An origin-response event as CloudFront sends it: lower-case keys, [{key, value}] lists."""
    cf_headers: dict[str, list[dict[str, str]]] = {}
    for name, values in headers.items():
        for value in [values] if isinstance(values, str) else values:
            cf_headers.setdefault(name.lower(), []).append({"key": name, "value": value})
    return {
        "Records": [
            {
                "cf": {
                    "config": {"eventType": "origin-response", "distributionId": "EXAMPLE"},
                    "request": {"method": method, "uri": "/v2/", "querystring": "", "headers": {}},
                    "response": {
                        "status": str(status),
                        "statusDescription": "Unauthorized",
                        "headers": cf_headers,
                    },
                }
            }
        ]
    }


def values(response: dict[str, Any], name: str) -> list[str]:
    return [entry["value"] for entry in response["headers"].get(name, [])]


def test_restores_the_bearer_challenge_api_gateway_renamed_on_a_401() -> None:
    response = handler(cf_event({"x-amzn-Remapped-WWW-Authenticate": CHALLENGE}), None)
    assert response["status"] == "401"
    assert response["headers"]["www-authenticate"] == [
        {"key": "WWW-Authenticate", "value": CHALLENGE}
    ]
    assert "x-amzn-remapped-www-authenticate" not in response["headers"]


def test_restores_the_challenge_from_the_lambdas_copy_when_x_amzn_headers_are_hidden() -> None:
    # Older CloudFront documentation hid every X-Amzn-* header from edge functions.
    response = handler(cf_event({"Portside-Original-WWW-Authenticate": CHALLENGE}), None)
    assert values(response, "www-authenticate") == [CHALLENGE]
    assert "portside-original-www-authenticate" not in response["headers"]


def test_keeps_every_challenge_and_never_duplicates_one_already_there() -> None:
    basic = 'Basic realm="portside"'
    both = handler(cf_event({"x-amzn-Remapped-WWW-Authenticate": [CHALLENGE, basic]}), None)
    assert values(both, "www-authenticate") == [CHALLENGE, basic]

    present = handler(
        cf_event({"WWW-Authenticate": CHALLENGE, "Portside-Original-WWW-Authenticate": CHALLENGE}),
        None,
    )
    assert values(present, "www-authenticate") == [CHALLENGE]


def test_head_answer_gets_the_length_the_lambda_declared_instead_of_api_gateways_zero() -> None:
    event = cf_event(
        {
            "Content-Length": "0",
            "x-amzn-Remapped-Content-Length": "104857600",
            "Portside-Original-Content-Length": "104857600",
            "Docker-Content-Digest": "sha256:" + "a" * 64,
        },
        method="HEAD",
        status=200,
    )
    response = handler(event, None)
    assert response["headers"]["content-length"] == [
        {"key": "Content-Length", "value": "104857600"}
    ]
    assert values(response, "docker-content-digest") == ["sha256:" + "a" * 64]
    assert not [name for name in response["headers"] if name.startswith("portside-original-")]
    assert "x-amzn-remapped-content-length" not in response["headers"]


def test_head_falls_back_to_api_gateways_remapped_length() -> None:
    event = cf_event({"Content-Length": "0", "x-amzn-Remapped-Content-Length": "1234"}, "HEAD", 200)
    assert values(handler(event, None), "content-length") == ["1234"]


def test_a_get_keeps_the_length_cloudfront_frames_and_drops_the_carrier() -> None:
    event = cf_event({"Content-Length": "92", "Portside-Original-Content-Length": "92"})
    response = handler(event, None)
    assert values(response, "content-length") == ["92"]
    assert "portside-original-content-length" not in response["headers"]


def test_a_length_that_is_not_a_decimal_number_is_not_copied() -> None:
    for bogus in ("-1", "12abc", "\u0661\u0662", ""):
        event = cf_event({"Content-Length": "0", "Portside-Original-Content-Length": bogus}, "HEAD")
        assert values(handler(event, None), "content-length") == ["0"], bogus


def test_an_answer_without_remapped_headers_passes_unchanged() -> None:
    event = cf_event({"Content-Type": "application/json", "Content-Length": "2"}, status=200)
    expected = event["Records"][0]["cf"]["response"]["headers"].copy()
    assert handler(event, None)["headers"] == expected


def test_the_lambda_sends_its_copies_under_the_names_the_edge_function_reads() -> None:
    assert chalice_views.CARRIED_PREFIX.lower() == origin_response.CARRIED_PREFIX
    assert set(chalice_views.CARRIED_HEADERS) == {
        origin_response.WWW_AUTHENTICATE,
        origin_response.CONTENT_LENGTH,
    }


def test_the_asset_directory_imports_with_the_standard_library_alone() -> None:
    """``origin_response.handler`` resolves from ``portside_edge/`` with no site-packages and
    nothing else of this repository on the path, as in the Lambda@Edge runtime."""
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "import origin_response, gateway_responses;"
        "assert callable(origin_response.handler);"
        "print(sorted(m for m in sys.modules if m.startswith(('portside', 'chalice'))))"
    )
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", script, str(EDGE_DIR)],
        capture_output=True,
        text=True,
        check=False,
        cwd="/",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
