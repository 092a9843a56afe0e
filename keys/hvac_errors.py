"""The one place hvac and requests errors become ``keys.errors`` types.

Every call to Vault/OpenBao (transit, the anchor store, bootstrap) runs inside
``vault_errors``, which says per call what "not found", "invalid" and
"denied" mean there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import hvac.exceptions as hv
import requests

from keys.errors import KeyDestroyed, KeyProviderConfigError, KeyProviderError, KeyUnavailable


def _is_not_found(exc: hv.VaultError) -> bool:
    text = " ".join(str(e) for e in (exc.errors or [])) if exc.errors else str(exc)
    text = text.lower()
    return "not found" in text or "no existing key" in text or "could not be found" in text


ErrorFactory = Callable[[], KeyProviderError]


def config_error(message: str) -> ErrorFactory:
    return lambda: KeyProviderConfigError(message)


def provider_error(message: str) -> ErrorFactory:
    return lambda: KeyProviderError(message)


def destroyed() -> KeyProviderError:
    return KeyDestroyed("subject key does not exist")


MISSING_MOUNT = config_error("transit mount or key missing: run `pii-vault init`")
REFUSED = provider_error("key provider refused the request")
DENIED = config_error("key provider denied the call: check the Vault policy")


@contextlib.contextmanager
def vault_errors(
    *,
    missing: ErrorFactory = MISSING_MOUNT,
    invalid: ErrorFactory = REFUSED,
    denied: ErrorFactory = DENIED,
) -> Iterator[None]:
    """The one place hvac and requests errors become ``keys.errors`` types.

    ``missing`` is what "no such key or path" means for the call (KeyDestroyed
    for a subject key), ``invalid`` what a 400 means (UnwrapFailed for a
    decrypt), ``denied`` what a 403 means.
    """
    try:
        yield
    except requests.exceptions.RequestException as exc:
        raise KeyUnavailable("key provider unavailable: cannot reach Vault") from exc
    except hv.VaultDown as exc:
        raise KeyUnavailable("key provider unavailable: Vault is sealed") from exc
    except (hv.InternalServerError, hv.BadGateway, hv.RateLimitExceeded) as exc:
        raise KeyUnavailable("key provider unavailable: Vault returned an error") from exc
    except hv.Unauthorized as exc:
        raise KeyProviderConfigError("key provider rejected the Vault token") from exc
    except hv.Forbidden as exc:
        raise (missing() if _is_not_found(exc) else denied()) from exc
    except hv.InvalidPath as exc:
        raise missing() from exc
    except hv.InvalidRequest as exc:
        raise (missing() if _is_not_found(exc) else invalid()) from exc
    except hv.VaultError as exc:
        raise KeyProviderError("key provider error") from exc
    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # unexpected response shape
        raise KeyProviderError("unexpected response from key provider") from exc
