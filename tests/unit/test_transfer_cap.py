"""The starter plan's transfer cap: once the metering marks a registry's month as over the
cap, the token endpoint refuses pull tokens for it and blob downloads answer 429
TOOMANYREQUESTS with a message docker prints; the next month or an upgrade lifts it."""

from __future__ import annotations

import base64
import io
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from chalicelib.adapters.memory import MemoryMetadataStore
from chalicelib.http.messages import HttpRequest, HttpResponse
from chalicelib.http.v2 import V2Api
from chalicelib.registry.auth import Authenticator, transfer_cap_refusal
from chalicelib.registry.records import RegistryRecord
from chalicelib.registry.service import RegistryService

from .builders import FakeClock, make_token, make_v2_api, push_image, sha256
from .conftest import ACCOUNT, REGISTRY, named

X = named(REGISTRY, "team/app")
DECEMBER = datetime(2026, 12, 2, 22, 0, tzinfo=UTC)
MESSAGE = (
    "registry 'acme' has used its 500 MiB of outbound transfer for 2026-12 on the Starter "
    "plan; pulls resume on 2027-01-01 or after an upgrade"
)


@pytest.fixture
def month_clock() -> FakeClock:
    return FakeClock(DECEMBER)


@pytest.fixture
def api(service: RegistryService, store: MemoryMetadataStore, month_clock: FakeClock) -> V2Api:
    return make_v2_api(service, store, Authenticator(store, clock=month_clock))


@pytest.fixture
def layer(service: RegistryService) -> str:
    push_image(service, X, "v1", "app")
    return sha256(b"layer of app" * 10)


def on_plan(store: MemoryMetadataStore, plan: str, capped_month: str | None) -> None:
    record = store.registries[REGISTRY]
    record.plan = plan
    record.egress_capped_month = capped_month


def call(
    api: V2Api, path: str, authorization: str, scopes: list[str] | None = None
) -> HttpResponse:
    request = HttpRequest(
        "GET",
        path,
        {},
        {"authorization": authorization},
        io.BytesIO(b""),
        0,
        "https://registry.example.test",
        query_lists={"scope": scopes} if scopes else {},
    )
    return api.handle(request)


def basic(secret: str) -> str:
    return "Basic " + base64.b64encode(f"{secret}:{secret}".encode()).decode()


def error(response: HttpResponse) -> dict[str, Any]:
    return dict(json.loads(response.body)["errors"][0])


def token_for(api: V2Api, secret: str, scope: str) -> HttpResponse:
    return call(api, "/v2/token", basic(secret), [scope])


# ====================================================================== the rule


@pytest.mark.parametrize(
    ("plan", "capped_month", "now", "capped"),
    [
        ("starter", "2026-12", DECEMBER, True),
        ("starter", "2026-11", DECEMBER, False),  # last month's mark: a new month is free
        ("starter", None, DECEMBER, False),
        ("basic", "2026-12", DECEMBER, False),  # upgraded: paid plans have no hard cap
        ("starter", "2026-12", datetime(2027, 1, 1, 0, 0, tzinfo=UTC), False),
    ],
)
def test_a_registry_is_capped_only_in_the_marked_month_on_a_capped_plan(
    plan: str, capped_month: str | None, now: datetime, capped: bool
) -> None:
    record = RegistryRecord(
        name="acme", account_id=ACCOUNT, plan=plan, egress_capped_month=capped_month
    )
    assert (transfer_cap_refusal(record, now) is not None) is capped


def test_the_refusal_names_the_cap_the_plan_the_month_and_when_pulls_resume() -> None:
    record = RegistryRecord(
        name="acme", account_id=ACCOUNT, plan="starter", egress_capped_month="2026-12"
    )
    refusal = transfer_cap_refusal(record, DECEMBER)
    assert refusal is not None
    assert (refusal.code, refusal.status, refusal.message) == ("TOOMANYREQUESTS", 429, MESSAGE)


def test_the_month_is_the_utc_month() -> None:
    record = RegistryRecord(
        name="acme", account_id=ACCOUNT, plan="starter", egress_capped_month="2026-12"
    )
    # Still December 31 in New York, already January in UTC: the cap is lifted.
    new_york = datetime(2026, 12, 31, 19, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert transfer_cap_refusal(record, new_york) is None
    assert transfer_cap_refusal(record, datetime(2026, 12, 31, 23, 59, tzinfo=UTC)) is not None


# ====================================================================== the token endpoint


def test_a_pull_token_for_a_capped_registry_is_refused_with_429_and_the_message(
    api: V2Api, store: MemoryMetadataStore
) -> None:
    on_plan(store, "starter", "2026-12")
    secret = make_token(store, ACCOUNT, {"pull"})
    response = token_for(api, secret, f"repository:{X}:pull")
    assert response.status == 429
    assert error(response)["code"] == "TOOMANYREQUESTS"
    assert error(response)["message"] == MESSAGE


def test_a_pull_token_is_issued_after_an_upgrade_or_in_the_next_month(
    api: V2Api, store: MemoryMetadataStore, month_clock: FakeClock
) -> None:
    secret = make_token(store, ACCOUNT, {"pull"})
    on_plan(store, "starter", "2026-11")
    assert token_for(api, secret, f"repository:{X}:pull").status == 200
    on_plan(store, "basic", "2026-12")
    assert token_for(api, secret, f"repository:{X}:pull").status == 200


def test_a_push_token_for_a_capped_registry_is_issued_but_its_blob_downloads_are_refused(
    api: V2Api, store: MemoryMetadataStore, layer: str
) -> None:
    on_plan(store, "starter", "2026-12")
    secret = make_token(store, ACCOUNT, {"push"})
    response = token_for(api, secret, f"repository:{X}:pull,push")
    assert response.status == 200
    jwt = f"Bearer {json.loads(response.body)['token']}"
    # Pushing needs HEADs of blobs and manifests; those still work.
    assert call(api, f"/v2/{X}/manifests/v1", jwt).status == 200
    download = call(api, f"/v2/{X}/blobs/{layer}", jwt)
    assert download.status == 429
    assert error(download)["message"] == MESSAGE


def test_a_push_token_issued_while_capped_downloads_again_once_the_month_is_over(
    api: V2Api, store: MemoryMetadataStore, layer: str, month_clock: FakeClock
) -> None:
    on_plan(store, "starter", "2026-12")
    secret = make_token(store, ACCOUNT, {"push"})
    response = token_for(api, secret, f"repository:{X}:pull,push")
    jwt = f"Bearer {json.loads(response.body)['token']}"
    month_clock.now = datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert call(api, f"/v2/{X}/blobs/{layer}", jwt).status == 429
    month_clock.now = datetime(2027, 1, 1, 0, 0, 1, tzinfo=UTC)
    assert call(api, f"/v2/{X}/blobs/{layer}", jwt).status == 307


def test_a_pull_token_issued_before_the_cap_still_downloads_until_it_expires(
    api: V2Api, store: MemoryMetadataStore, layer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The documented lag: a JWT is checked by its signature only, no registry read."""
    secret = make_token(store, ACCOUNT, {"pull"})
    response = token_for(api, secret, f"repository:{X}:pull")
    jwt = f"Bearer {json.loads(response.body)['token']}"
    on_plan(store, "starter", "2026-12")
    reads: list[str] = []
    read = store.get_registry

    def counted(name: str) -> RegistryRecord | None:
        reads.append(name)
        return read(name)

    monkeypatch.setattr(store, "get_registry", counted)
    assert call(api, f"/v2/{X}/blobs/{layer}", jwt).status == 307
    assert reads == []


# ====================================================================== Basic-auth downloads


def test_a_basic_auth_blob_download_from_a_capped_registry_is_refused_with_429(
    api: V2Api, store: MemoryMetadataStore, layer: str
) -> None:
    secret = make_token(store, ACCOUNT, {"pull"})
    assert call(api, f"/v2/{X}/blobs/{layer}", basic(secret)).status == 307
    on_plan(store, "starter", "2026-12")
    refused = call(api, f"/v2/{X}/blobs/{layer}", basic(secret))
    assert refused.status == 429
    assert error(refused) == {
        "code": "TOOMANYREQUESTS",
        "message": MESSAGE,
        "detail": {"registry": "acme", "month": "2026-12", "plan": "Starter"},
    }
    # Manifests and HEADs move no blob bytes through S3: still answered.
    assert call(api, f"/v2/{X}/manifests/v1", basic(secret)).status == 200


def test_a_basic_auth_blob_download_resumes_after_an_upgrade(
    api: V2Api, store: MemoryMetadataStore, layer: str
) -> None:
    secret = make_token(store, ACCOUNT, {"pull"})
    on_plan(store, "professional", "2026-12")
    assert call(api, f"/v2/{X}/blobs/{layer}", basic(secret)).status == 307
