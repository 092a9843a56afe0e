"""Issue 22 (4): a service signs in with a JWT from OpenBao's identity tokens.

The real issuer: an OpenBao AppRole login gives the service an entity, whose metadata
names its principal; ``identity/oidc/token/<role>`` signs a JWT with it. The vault
checks the signature against the issuer's JWKS, the issuer, the audience and the expiry,
and takes the principal's roles from its own row — a token names, it never grants.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hvac
import pytest
import requests
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey

from access.errors import AuthenticationFailed
from access.runtime import Runtime, compose
from access.service_tokens import ServiceTokens
from api.app import AppConfig, create_app
from tests.api_support import PERSON
from tests.conftest import Database, OpenBaoServer
from tests.helpers import SENSITIVE_CONSENTS
from vault.config import Settings
from vault.errors import ConfigError

AUDIENCE = "pii-vault-test"
SERVICE = "svc:registration-service"


@dataclass
class Issuer:
    root: hvac.Client
    url: str
    role: str

    def token(self, principal: str | None, *, role: str | None = None) -> str:
        """A JWT for an AppRole service whose entity names ``principal`` (None: no claim)."""
        name = f"app-{uuid.uuid4().hex[:8]}"
        self.root.write(f"auth/approle/role/{name}", token_policies="pii-vault-oidc-test")
        role_id = self.root.read(f"auth/approle/role/{name}/role-id")["data"]["role_id"]
        secret_id = self.root.write(f"auth/approle/role/{name}/secret-id")["data"]["secret_id"]
        login = self.root.write("auth/approle/login", role_id=role_id, secret_id=secret_id)
        if principal is not None:
            self.root.write(
                f"identity/entity/id/{login['auth']['entity_id']}",
                metadata={"pii_vault_principal": principal},
            )
        service = hvac.Client(self.root.url, token=login["auth"]["client_token"])
        token: str = service.read(f"identity/oidc/token/{role or self.role}")["data"]["token"]
        return token


@pytest.fixture(scope="module")
def issuer(openbao: OpenBaoServer) -> Issuer:
    root = hvac.Client(openbao.addr, token=openbao.server.root_token)
    if "approle/" not in root.sys.list_auth_methods():
        root.sys.enable_auth_method("approle")
    root.write("identity/oidc/key/pii-vault-services", allowed_client_ids="*", algorithm="RS256")
    template = '{"pii_vault_principal": {{identity.entity.metadata.pii_vault_principal}}}'
    for role, audience, ttl in (
        ("pii-vault-service", AUDIENCE, "5m"),
        ("another-relying-party", "someone-else", "5m"),
        ("short-lived", AUDIENCE, "2s"),
    ):
        root.write(
            f"identity/oidc/role/{role}",
            key="pii-vault-services",
            ttl=ttl,
            client_id=audience,
            template=template,
        )
    root.sys.create_or_update_policy(
        "pii-vault-oidc-test", 'path "identity/oidc/token/*" { capabilities = ["read"] }'
    )
    return Issuer(root, f"{openbao.addr}/v1/identity/oidc", "pii-vault-service")


@pytest.fixture
def rt(database: Database, openbao: OpenBaoServer, issuer: Issuer) -> Iterator[Runtime]:
    runtime = compose(
        database.engine,
        openbao.provider(),
        service_tokens=ServiceTokens(issuer.url, AUDIENCE, leeway=0),
    )
    runtime.policy.seed_default()
    runtime.principals.create(SERVICE, ["registration-service"])
    yield runtime
    runtime.vault.cache.clear()


def _client(rt: Runtime, tmp_path: Path) -> Any:
    return create_app(AppConfig(Settings(home=tmp_path), runtime=rt)).test_client()


def _register(client: Any, credential: str) -> Any:
    return client.post(
        "/v1/subjects",
        headers={"Authorization": f"Bearer {credential}"},
        json={
            "purpose": "account_registration",
            "external_id": f"ext-{uuid.uuid4().hex[:8]}",
            "fields": PERSON,
            "consents": SENSITIVE_CONSENTS,
        },
    )


def test_a_service_signs_in_with_an_openbao_issued_jwt(
    rt: Runtime, issuer: Issuer, tmp_path: Path
) -> None:
    client = _client(rt, tmp_path)
    token = issuer.token(SERVICE)
    r = _register(client, token)
    assert r.status_code == 201, r.json
    event = rt.audit.events(limit=1)[0]
    assert event["principal"] == SERVICE
    assert token not in json.dumps(rt.audit.events(limit=50))
    ready = client.get("/readyz").json
    assert ready["identity_provider"] == "ok"


def test_the_token_names_a_principal_and_never_grants_a_role(
    rt: Runtime, issuer: Issuer, tmp_path: Path
) -> None:
    client = _client(rt, tmp_path)
    # No such principal, a person's name, no claim at all: refused alike.
    for named in ("svc:nobody", "user:alice", None):
        r = _register(client, issuer.token(named))
        assert r.status_code == 401 and r.json["code"] == "unauthenticated", named
    # A principal whose role cannot register: the row's roles decide, not the token.
    rt.principals.create("svc:support-agent", ["support-agent"])
    assert _register(client, issuer.token("svc:support-agent")).status_code == 403
    # Disabled: out, however valid the token.
    token = issuer.token(SERVICE)
    assert _register(client, token).status_code == 201
    rt.principals.disable(SERVICE)
    assert _register(client, token).status_code == 401


def test_wrong_audience_tampered_forged_and_expired_tokens_are_refused(
    rt: Runtime, issuer: Issuer, openbao: OpenBaoServer
) -> None:
    verify = rt.principals.authenticate
    assert verify(issuer.token(SERVICE)).name == SERVICE
    with pytest.raises(AuthenticationFailed):  # a token for another relying party
        verify(issuer.token(SERVICE, role="another-relying-party"))
    good = issuer.token("svc:support-agent-x")
    head, body, sig = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["pii_vault_principal"] = SERVICE
    forged_body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(AuthenticationFailed):  # the claim changed, the signature kept
        verify(f"{head}.{forged_body}.{sig}")
    # Signed with the issuer's *public* key as an HMAC secret, and unsigned.
    jwks = requests.get(f"{issuer.url}/.well-known/keys", timeout=5).json()
    public = json.dumps(jwks["keys"][0]).encode()
    kid = jwks["keys"][0]["kid"]
    hs = jwt.encode({"alg": "HS256", "kid": kid}, claims, OctKey.import_key(public))
    with pytest.raises(AuthenticationFailed):
        verify(hs)
    none_head = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
    unsigned = f"{none_head}.{forged_body}."
    with pytest.raises(AuthenticationFailed):
        verify(unsigned)
    # A key of our own, with the issuer's kid: the signature does not verify.
    own = RSAKey.generate_key(2048, parameters={"kid": kid})
    with pytest.raises(AuthenticationFailed):
        verify(jwt.encode({"alg": "RS256", "kid": kid}, claims, own))
    # Expired (the role's ttl is 2 s; this verifier allows no clock leeway).
    short = issuer.token(SERVICE, role="short-lived")
    assert verify(short).name == SERVICE
    time.sleep(3)
    with pytest.raises(AuthenticationFailed):
        verify(short)


def test_an_unreachable_issuer_fails_closed(
    database: Database, openbao: OpenBaoServer, issuer: Issuer, tmp_path: Path
) -> None:
    runtime = compose(
        database.engine,
        openbao.provider(),
        service_tokens=ServiceTokens("http://127.0.0.1:9/v1/identity/oidc", AUDIENCE, timeout=1),
    )
    runtime.policy.seed_default()
    runtime.principals.create(SERVICE, ["registration-service"])
    client = _client(runtime, tmp_path)
    r = _register(client, issuer.token(SERVICE))
    assert r.status_code == 503 and r.json["code"] == "identity_provider_unavailable"
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json["identity_provider"] == "unavailable"
    # API keys keep working while the issuer is down.
    _, key = runtime.principals.create("svc:registration-2", ["registration-service"])
    assert _register(client, key).status_code == 201


def test_service_oidc_configuration_is_checked_at_start_up(tmp_path: Path) -> None:
    base = {"PII_VAULT_HOME": str(tmp_path)}
    with pytest.raises(ConfigError, match="AUDIENCE"):
        Settings.from_env({**base, "PII_VAULT_SERVICE_OIDC_ISSUER": "https://idp.example/x"})
    with pytest.raises(ConfigError, match="ISSUER"):
        Settings.from_env({**base, "PII_VAULT_SERVICE_OIDC_AUDIENCE": "pii-vault"})
    with pytest.raises(ConfigError, match="URL"):
        Settings.from_env(
            {
                **base,
                "PII_VAULT_SERVICE_OIDC_ISSUER": "idp.example",
                "PII_VAULT_SERVICE_OIDC_AUDIENCE": "pii-vault",
            }
        )
    settings = Settings.from_env(
        {
            **base,
            "PII_VAULT_SERVICE_OIDC_ISSUER": "https://idp.example/x/",
            "PII_VAULT_SERVICE_OIDC_AUDIENCE": "pii-vault",
        }
    )
    assert settings.service_oidc_issuer == "https://idp.example/x"
    assert settings.service_oidc_claim == "pii_vault_principal"
