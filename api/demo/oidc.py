"""OpenBao as the console's identity provider (demo and tests): userpass people in groups,
an OIDC provider, and a confidential client for the console. A real IdP, not a mock:
the browser signs in on OpenBao's own login page."""

from __future__ import annotations

from dataclasses import dataclass

import hvac

PROVIDER = "pii-console"
CLIENT = "pii-vault-console"


@dataclass(frozen=True)
class Person:
    username: str
    password: str
    email: str
    groups: tuple[str, ...]
    display_name: str = ""


DEMO_PEOPLE = (
    Person("agent", "agent-demo-pass", "agent@example.com", ("support-agents",), "Alex Agent"),
    Person(
        "privacy", "privacy-demo-pass", "privacy@example.com", ("privacy-office",), "Pat Privacy"
    ),
    Person("auditor", "auditor-demo-pass", "auditor@example.com", ("auditors",), "Ari Auditor"),
    Person("lead", "lead-demo-pass", "lead@example.com", ("approvers",), "Lee Lead"),
)


@dataclass(frozen=True)
class OidcClient:
    issuer: str
    client_id: str
    client_secret: str

    def __repr__(self) -> str:  # never print the secret
        return f"OidcClient(issuer={self.issuer!r}, client_id={self.client_id!r})"


def setup_oidc(
    client: hvac.Client, redirect_uri: str, people: tuple[Person, ...] = DEMO_PEOPLE
) -> OidcClient:
    """Idempotent set-up with a privileged token; returns the issuer and client credentials."""
    auths = client.sys.list_auth_methods()
    auths = auths.get("data", auths)
    if "userpass/" not in auths:
        client.sys.enable_auth_method("userpass")
    accessor = client.sys.list_auth_methods()
    accessor = accessor.get("data", accessor)["userpass/"]["accessor"]
    members: dict[str, list[str]] = {}
    entity_ids = []
    for person in people:
        client.write(f"auth/userpass/users/{person.username}", password=person.password)
        entity = client.write(
            f"identity/entity/name/{person.username}",
            metadata={"email": person.email, "name": person.display_name or person.username},
        )
        if not isinstance(entity, dict):  # an update answers 204: read the id instead
            entity = client.read(f"identity/entity/name/{person.username}")
        entity_id = entity["data"]["id"]
        entity_ids.append(entity_id)
        if not _has_alias(client, entity_id, accessor):  # the userpass login -> this entity
            client.write(
                "identity/entity-alias",
                name=person.username,
                canonical_id=entity_id,
                mount_accessor=accessor,
            )
        for group in person.groups:
            members.setdefault(group, []).append(entity_id)
    group_ids = []
    for group, ids in members.items():
        client.write(f"identity/group/name/{group}", member_entity_ids=ids)
        group_ids.append(client.read(f"identity/group/name/{group}")["data"]["id"])
    client.write(f"identity/oidc/key/{PROVIDER}", allowed_client_ids="*", algorithm="RS256")
    client.write(f"identity/oidc/assignment/{PROVIDER}", entity_ids=entity_ids, group_ids=group_ids)
    client.write(
        "identity/oidc/scope/groups", template='{"groups": {{identity.entity.groups.names}}}'
    )
    client.write(
        "identity/oidc/scope/email", template='{"email": {{identity.entity.metadata.email}}}'
    )
    client.write(
        "identity/oidc/scope/profile", template='{"name": {{identity.entity.metadata.name}}}'
    )
    client.write(
        f"identity/oidc/client/{CLIENT}",
        redirect_uris=[redirect_uri],
        assignments=[PROVIDER],
        key=PROVIDER,
        id_token_ttl="15m",  # noqa: S106 - a duration, not a secret
        # The console asks userinfo with it every few minutes: as long as a session lives.
        access_token_ttl="8h",  # noqa: S106
        client_type="confidential",
    )
    creds = client.read(f"identity/oidc/client/{CLIENT}")["data"]
    client.write(
        f"identity/oidc/provider/{PROVIDER}",
        allowed_client_ids=[creds["client_id"]],
        scopes_supported=["groups", "email", "profile"],
    )
    issuer = client.read(f"identity/oidc/provider/{PROVIDER}")["data"]["issuer"]
    return OidcClient(issuer, creds["client_id"], creds["client_secret"])


def _has_alias(client: hvac.Client, entity_id: str, accessor: str) -> bool:
    entity = client.read(f"identity/entity/id/{entity_id}")["data"]
    return any(a.get("mount_accessor") == accessor for a in entity.get("aliases") or [])
