"""Flask sessions kept server-side (``access.sessions``), for the console only.

Two cookies, both HttpOnly and (outside loopback development) Secure:

* while signing in, ``pv_login`` (SameSite=Lax, ten minutes): it must survive the
  identity provider's redirect back, a cross-site navigation that a Strict cookie
  would not ride; it holds the OIDC state, nonce and PKCE verifier only;
* once signed in, ``pv_session`` (SameSite=Strict) under a *new* id (no session
  fixation); the sign-in session is deleted.

API paths never open a session: no cookie, no database read on the hot path.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Request, Response
from flask.sessions import SessionInterface, SessionMixin
from werkzeug.datastructures import CallbackDict

from access.sessions import SessionStore
from api.console.config import ConsoleSettings

CONSOLE_PREFIX = "/console"
LOGIN_MAX_AGE = 600


class ServerSession(CallbackDict[str, Any], SessionMixin):
    def __init__(self, data: dict[str, Any] | None, sid: str | None, signed_in: bool) -> None:
        def changed(_: Any) -> None:
            self.modified = True

        super().__init__(data or {}, changed)
        self.sid = sid
        self.signed_in = signed_in  # loaded from the signed-in cookie
        self.modified = False
        self.ended = False  # sign-out: delete it and its cookie

    def end(self) -> None:
        self.clear()
        self.ended = True


class ConsoleSessionInterface(SessionInterface):
    def __init__(self, store: SessionStore, settings: ConsoleSettings) -> None:
        self.store = store
        self.settings = settings
        prefix = "__Host-" if settings.secure_cookies else ""  # __Host- needs Secure
        self.session_cookie = f"{prefix}pv_session"
        self.login_cookie = f"{prefix}pv_login"

    def open_session(self, app: Flask, request: Request) -> ServerSession | None:
        if not request.path.startswith(CONSOLE_PREFIX):
            return None  # Flask's null session: the API never has one
        sid = request.cookies.get(self.session_cookie)
        if sid:
            stored = self.store.load(sid)
            if stored is not None and stored.data.get("principal"):
                return ServerSession(stored.data, sid, signed_in=True)
        sid = request.cookies.get(self.login_cookie)
        if sid:
            stored = self.store.load(sid)
            if stored is not None:
                return ServerSession(stored.data, sid, signed_in=False)
        return ServerSession(None, None, signed_in=False)

    def _cookie(
        self, response: Response, name: str, value: str, samesite: str, age: int | None
    ) -> None:
        response.set_cookie(
            name,
            value,
            max_age=age,
            path="/",
            secure=self.settings.secure_cookies,
            httponly=True,
            samesite=samesite,
        )

    def _forget(self, response: Response, name: str) -> None:
        response.delete_cookie(
            name, path="/", secure=self.settings.secure_cookies, httponly=True, samesite="Lax"
        )

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        if not isinstance(session, ServerSession):
            return
        if session.ended:
            if session.sid:
                self.store.delete(session.sid)
            self._forget(response, self.session_cookie)
            self._forget(response, self.login_cookie)
            return
        data = dict(session)
        signed_in = bool(data.get("principal"))
        if signed_in != session.signed_in and (data or session.sid):
            # Signed in (or starting a new sign-in) just now: a new id under the other
            # cookie, the old session gone (no fixation, no Strict cookie on the way out).
            if session.sid:
                self.store.delete(session.sid)
            sid = self.store.save(None, data)
            self._set(response, sid, signed_in)
            self._forget(response, self.login_cookie if signed_in else self.session_cookie)
            return
        if not session.modified or (not data and session.sid is None):
            return  # nothing to keep: no row, no cookie
        self._set(response, self.store.save(session.sid, data), signed_in)

    def _set(self, response: Response, sid: str, signed_in: bool) -> None:
        if signed_in:
            self._cookie(response, self.session_cookie, sid, "Strict", None)
        else:
            self._cookie(response, self.login_cookie, sid, "Lax", LOGIN_MAX_AGE)
