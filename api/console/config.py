"""Console settings from the environment: the identity provider, roles, cookies, timers.

The console is off unless ``PII_VAULT_CONSOLE_ISSUER`` is set. Bad values stop the
service at start-up, like every other setting.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from vault.config import secret as read_secret
from vault.errors import ConfigError

DEFAULT_ROLE_MAP = {
    "support-agents": "support-agent",
    "privacy-office": "privacy-officer",
    "auditors": "auditor",
    "approvers": "approver",
}


def loopback_host(host: str) -> bool:
    """Whether a host name or address is this machine's loopback (``serve`` uses it too)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _loopback(url: str) -> bool:
    return loopback_host(urlsplit(url).hostname or "")


def _seconds(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name) or ""
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"{name} must be a positive number of seconds")
    return int(raw)


@dataclass(frozen=True)
class ConsoleSettings:
    issuer: str
    client_id: str
    client_secret: str = field(repr=False)
    public_url: str  # where browsers reach the service: the redirect URI is built from it
    roles_claim: str = "groups"
    role_map: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_ROLE_MAP))
    secure_cookies: bool = True
    idle_timeout: int = 900
    step_up_seconds: int = 300
    reveal_seconds: int = 30
    # A session ends this long after sign-in whatever its activity (the idle timeout aside).
    session_lifetime: int = 8 * 3600
    # The identity provider is asked again (userinfo) this often: a person removed from a
    # group or deleted there is out at their next request after it.
    revalidate_seconds: int = 120

    @property
    def redirect_uri(self) -> str:
        return f"{self.public_url.rstrip('/')}/console/auth/callback"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ConsoleSettings | None:
        env = os.environ if env is None else env
        issuer = (env.get("PII_VAULT_CONSOLE_ISSUER") or "").rstrip("/")
        if not issuer:
            return None
        client_id = env.get("PII_VAULT_CONSOLE_CLIENT_ID") or ""
        secret = read_secret(env, "PII_VAULT_CONSOLE_CLIENT_SECRET") or ""
        public_url = (env.get("PII_VAULT_CONSOLE_URL") or "").rstrip("/")
        if not client_id or not secret or not public_url:
            raise ConfigError(
                "the console needs PII_VAULT_CONSOLE_CLIENT_ID, PII_VAULT_CONSOLE_CLIENT_SECRET"
                "(_FILE) and PII_VAULT_CONSOLE_URL besides PII_VAULT_CONSOLE_ISSUER"
            )
        for name, url in (
            ("PII_VAULT_CONSOLE_ISSUER", issuer),
            ("PII_VAULT_CONSOLE_URL", public_url),
        ):
            if urlsplit(url).scheme not in ("http", "https"):
                raise ConfigError(f"{name} must be an http(s) URL")
            if urlsplit(url).scheme == "http" and not _loopback(url):
                raise ConfigError(
                    f"{name} is http:// off loopback: use https:// (session cookies and "
                    "sign-in codes would cross the network in clear)"
                )
        secure = (env.get("PII_VAULT_CONSOLE_SECURE_COOKIES") or "true").lower() not in (
            "0",
            "false",
            "no",
        )
        if not secure and not _loopback(public_url):
            raise ConfigError(
                "PII_VAULT_CONSOLE_SECURE_COOKIES=false is for loopback development only"
            )
        role_map = dict(DEFAULT_ROLE_MAP)
        raw_map = env.get("PII_VAULT_CONSOLE_ROLE_MAP") or ""
        if raw_map:
            role_map = {}
            for pair in raw_map.split(","):
                group, sep, role = pair.partition("=")
                if not sep or not group.strip() or not role.strip():
                    raise ConfigError("PII_VAULT_CONSOLE_ROLE_MAP must look like group=role,...")
                role_map[group.strip()] = role.strip()
        return cls(
            issuer=issuer,
            client_id=client_id,
            client_secret=secret,
            public_url=public_url,
            roles_claim=env.get("PII_VAULT_CONSOLE_ROLES_CLAIM") or "groups",
            role_map=role_map,
            secure_cookies=secure,
            idle_timeout=_seconds(env, "PII_VAULT_CONSOLE_IDLE_TIMEOUT", 900),
            step_up_seconds=_seconds(env, "PII_VAULT_CONSOLE_STEP_UP_SECONDS", 300),
            reveal_seconds=_seconds(env, "PII_VAULT_CONSOLE_REVEAL_SECONDS", 30),
            session_lifetime=_seconds(env, "PII_VAULT_CONSOLE_SESSION_LIFETIME", 8 * 3600),
            revalidate_seconds=_seconds(env, "PII_VAULT_CONSOLE_REVALIDATE_SECONDS", 120),
        )
