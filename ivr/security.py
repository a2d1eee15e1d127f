"""Who may use what: Twilio (its request signature) and staff (login, roles, CSRF)."""

from __future__ import annotations

import functools
import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from flask import abort, current_app, g, redirect, request, session, url_for
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_wtf.csrf import CSRFProtect
from twilio.request_validator import RequestValidator, compare
from werkzeug.security import check_password_hash, generate_password_hash


def public_url() -> str:
    """The URL Twilio called: behind a TLS proxy the app sees http://, so rebuild it."""
    base = current_app.config["PUBLIC_BASE_URL"].rstrip("/")
    if not base:
        return request.url
    query = request.query_string.decode()
    return base + request.path + (f"?{query}" if query else "")


def twilio_signed(view):
    """Refuse (403, no TwiML) a request whose X-Twilio-Signature is missing or wrong."""

    @functools.wraps(view)
    def checked(*args, **kwargs):
        signature = request.headers.get("X-Twilio-Signature", "")
        validator = RequestValidator(current_app.config["TWILIO_AUTH_TOKEN"])
        url = public_url()
        # The URL as called matches almost always: one HMAC. Else let twilio also try it
        # with and without the default port, as it documents.
        if not signature or not (
            compare(validator.compute_signature(url, request.form), signature)
            or validator.validate(url, request.form, signature)
        ):
            abort(403)
        return view(*args, **kwargs)

    return checked


# --- staff: supervisors and administrators ---------------------------------------------

ROLES = ("supervisor", "admin")  # an admin may also read reports
LOGIN_LIMIT = "5 per minute;30 per hour"  # failed logins, per client address
csrf = CSRFProtect()


def init_app(app) -> None:
    """Cookies, CSRF on every form, and the slow-down of repeated failed logins.

    Call after the blueprints are registered: the login view gets its limit here, from
    a limiter of this app's own, kept in this app's Redis.
    """
    development = app.config["RUTA_ENV"] == "development"
    app.config.setdefault("SESSION_COOKIE_SECURE", not development)
    app.config.setdefault("SESSION_COOKIE_SAMESITE", "Lax")
    app.config.setdefault("SESSION_COOKIE_HTTPONLY", True)
    app.config.setdefault("PERMANENT_SESSION_LIFETIME", timedelta(hours=8))
    csrf.init_app(app)
    limiter = Limiter(get_remote_address, app=app, key_prefix="ruta:limits",
                      storage_uri=app.config["REDIS_URL"] or "memory://",
                      swallow_errors=True)  # Redis down: do not turn logins into 500s
    app.extensions["ruta.limiter"] = limiter
    limiter.exempt(app.blueprints["voice"])  # webhooks: no limiter work on the hot path
    app.view_functions["reports.login"] = limiter.limit(
        LOGIN_LIMIT, methods=["POST"], deduct_when=lambda response: response.status_code == 401
    )(app.view_functions["reports.login"])


def hash_password(password: str) -> str:
    """scrypt (memory-hard), from Werkzeug: no extra dependency."""
    return generate_password_hash(password, method="scrypt")


def password_matches(password_hash: str, password: str) -> bool:
    return check_password_hash(password_hash, password)


def new_api_token() -> tuple[str, str]:
    """(token to show once, its hash to keep): a stolen database reveals no token."""
    token = "ruta_" + secrets.token_urlsafe(32)
    return token, token_hash(token)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Staff:
    name: str
    role: str
    via: str  # "session" or "token"

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def current_staff() -> Staff | None:
    """The logged-in person (session cookie) or API client (Bearer token), checked
    against Redis on every request so a removed account is out at once."""
    if "ruta_staff" in g:
        return g.ruta_staff
    staff, store = None, current_app.extensions["ruta.store"]
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer ") and request.path.startswith("/api/"):  # tokens: API only
        found = store.token(token_hash(auth.removeprefix("Bearer ").strip()))
        if found:
            staff = Staff(found["name"], found["role"], "token")
    elif session.get("user"):
        found = store.user(session["user"])
        if found:
            staff = Staff(session["user"], found["role"], "session")
        else:
            session.clear()
    g.ruta_staff = staff
    return staff


def staff_required(role: str = "supervisor", api: bool = False):
    """Let in staff with `role` (admins everywhere); others get a login page or 401/403."""

    def decorate(view):
        @functools.wraps(view)
        def checked(*args, **kwargs):
            staff = current_staff()
            if staff is None:
                if api:
                    return {"error": "log in or send an API token (Authorization: Bearer)"}, 401
                return redirect(url_for("reports.login", next=request.full_path.rstrip("?")))
            if role == "admin" and not staff.is_admin:
                abort(403)
            return view(*args, **kwargs)

        return checked

    return decorate
