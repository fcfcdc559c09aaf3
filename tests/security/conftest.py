"""Two accounts, three registries, five tokens, on a Portside with a known signing key.

Account ``local`` (the bootstrap account) owns registries A and B; account 2, onboarded
through ``POST /api/v1/accounts`` with the bootstrap token (also the operator's), owns C.
Tokens: ``pull_a``, ``push_a`` and ``admin_a`` are account-1 tokens limited to A, ``admin1``
is account 1's unrestricted admin (the bootstrap token) and ``admin2`` account 2's. X names a
registry that does not exist. Each existing registry holds ``<registry>/app:v1``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.api.helpers import V2, Api, Image, unique
from tests.support.server import RunningRegistry, start_registry

SIGNING_KEY = "security-suite-signing-key-" + "k" * 24


@dataclass(frozen=True)
class TokenInfo:
    key: str
    secret: str
    account: str
    scopes: frozenset[str]
    registries: frozenset[str] | None  # registry keys ("A", ...); None: the whole account


@dataclass
class World:
    server: RunningRegistry
    names: dict[str, str]  # "A" -> registry name, ... "X" -> a name that does not exist
    owners: dict[str, str]  # registry key -> account
    tokens: dict[str, TokenInfo]
    images: dict[str, Image] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url

    def owner_token(self, reg: str) -> str:
        owner = self.owners.get(reg, "local")
        return self.tokens["admin1" if owner == "local" else "admin2"].secret

    def owner_v2(self, reg: str) -> V2:
        return V2.basic(self.url, self.owner_token(reg))

    def owner_api(self, reg: str) -> Api:
        return Api(self.url, self.owner_token(reg), check=False)

    def visible(self, token: str, reg: str) -> bool:
        info = self.tokens[token]
        if reg not in self.owners or self.owners[reg] != info.account:
            return False
        return info.registries is None or reg in info.registries


def build_world(server: RunningRegistry) -> World:
    names = {key: unique(f"sec-{key.lower()}") for key in ("A", "B", "C", "X")}
    admin1 = Api(server.url, server.token)
    onboarded = admin1.post("/api/v1/accounts", json={"name": "account 2"}, expect=201).json()
    account2, admin2_secret = onboarded["account"]["id"], onboarded["token"]["token"]
    owners = {"A": "local", "B": "local", "C": account2}
    admin1.create_registry(names["A"])
    admin1.create_registry(names["B"])
    Api(server.url, admin2_secret).create_registry(names["C"])
    tokens = {
        "admin1": TokenInfo("admin1", server.token, "local", frozenset({"admin"}), None),
        "admin2": TokenInfo("admin2", admin2_secret, account2, frozenset({"admin"}), None),
    }
    for scope in ("pull", "push", "admin"):
        created = admin1.create_token([scope], [names["A"]], name=f"{scope}-a")
        tokens[f"{scope}_a"] = TokenInfo(
            f"{scope}_a", created["token"], "local", frozenset({scope}), frozenset({"A"})
        )
    world = World(server, names, owners, tokens)
    for reg in ("A", "B", "C"):
        world.images[reg] = world.owner_v2(reg).push_image(f"{names[reg]}/app", "v1", (700,))
    return world


@pytest.fixture(scope="session")
def sec_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    env = {"PORTSIDE_SIGNING_KEY": SIGNING_KEY, "POWERTOOLS_LOG_LEVEL": "DEBUG"}
    with start_registry(
        tmp_path_factory.mktemp("security-server"), registry="sec-bootstrap", extra_env=env
    ) as running:
        yield running


@pytest.fixture(scope="session")
def world(sec_server: RunningRegistry) -> World:
    return build_world(sec_server)
