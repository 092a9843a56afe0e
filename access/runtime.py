"""Assemble the vault, access control, audit log and guard from one Settings object."""

from __future__ import annotations

import os
from dataclasses import dataclass

from access.audit import AuditLog
from access.control import DEFAULT_POLICY_VERSION, AccessControl
from access.guard import GuardedVault
from vault.config import Settings
from vault.db import migrate as run_migrations
from vault.errors import ConfigError
from vault.service import VaultService


@dataclass
class Runtime:
    vault: VaultService
    access: AccessControl
    audit: AuditLog
    guard: GuardedVault

    def close(self) -> None:
        self.vault.close()


def policy_version_from_env() -> str:
    version = os.environ.get("PII_VAULT_POLICY_VERSION") or DEFAULT_POLICY_VERSION
    if len(version) != 7 or version[4] != "-" or not version.replace("-", "").isdigit():
        raise ConfigError("PII_VAULT_POLICY_VERSION must look like YYYY-MM (e.g. 2024-11)")
    return version


def open_runtime(settings: Settings, *, migrate: bool = False) -> Runtime:
    vault = VaultService.from_settings(settings, migrate=migrate)
    if migrate:
        run_migrations(vault.engine, "access:migrations")
    access = AccessControl(vault.engine, vault.schema, policy_version=policy_version_from_env())
    audit = AuditLog(vault.engine, vault.keys)
    return Runtime(vault, access, audit, GuardedVault(vault, access, audit))
