"""The one place hvac and requests errors become ``keys.errors`` types.

Every call to Vault/OpenBao (transit, the anchor store, bootstrap) runs inside
``vault_errors``, which says per call what "not found", "invalid" and
"denied" mean there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import hvac.exceptions as hv
import requests

from keys.errors import KeyDestroyed, KeyProviderConfigError, KeyProviderError, KeyUnavailable


def _is_not_found(exc: hv.VaultError) -> bool:
    text = " ".join(str(e) for e in (exc.errors or [])) if exc.errors else str(exc)
    text = text.lower()
    return "not found" in text or "no existing key" in text or "could not be found" in text


ErrorFactory = Callable[[], KeyProviderError]


def _address(exc: requests.exceptions.RequestException) -> str:
    """The node's scheme, host and port only: a path may name a subject key."""
    url = getattr(getattr(exc, "request", None), "url", None)
    if not url:
        return "the configured address"
    parts = urlsplit(str(url))
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else "the configured address"


def unreachable(exc: requests.exceptions.RequestException) -> str:
    """ "cannot reach Vault at <address>: <why>", in words an operator can act on."""
    text = str(exc).lower()
    if isinstance(exc, requests.exceptions.SSLError):
        why = "TLS handshake failed (https to a plain http listener, or an untrusted certificate)"
    elif isinstance(exc, requests.exceptions.ConnectTimeout):
        why = "connect timed out"
    elif isinstance(exc, requests.exceptions.ReadTimeout):
        why = "no reply within PII_VAULT_VAULT_TIMEOUT"
    elif isinstance(
        exc,
        requests.exceptions.MissingSchema
        | requests.exceptions.InvalidSchema
        | requests.exceptions.InvalidURL,
    ):
        why = "not a valid address (it needs http:// or https:// and a host)"
    elif "refused" in text:
        why = "connection refused"
    elif "name or service not known" in text or "nodename nor servname" in text:
        why = "unknown host name"
    elif isinstance(exc, requests.exceptions.ConnectionError) and (
        "connection aborted" in text or "remotedisconnected" in text
    ):
        why = "connection closed without a reply (http against an https listener?)"
    else:
        why = type(exc).__name__
    return f"cannot reach Vault at {_address(exc)}: {why}"


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
        raise KeyUnavailable(f"key provider unavailable: {unreachable(exc)}") from exc
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
