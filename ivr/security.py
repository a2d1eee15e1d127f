"""Who may use what: Twilio (its request signature) and staff (login, roles, CSRF)."""

from __future__ import annotations

import functools
import hashlib
import io
import ipaddress
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import redis
from flask import abort, current_app, g, redirect, request, session, url_for
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from flask_wtf.csrf import CSRFProtect
from itsdangerous import BadSignature, URLSafeTimedSerializer
from limits import parse_many
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from twilio.request_validator import RequestValidator, compare
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.security import check_password_hash, generate_password_hash

from ivr import redis_url, services, store
from ivr.message import DEFAULT_LANGUAGE
from ivr.recordings import MAX_BYTES
from ivr.sessions import SecurityEvent, log_security_event
from ivr.staff import has_two_factor, language_of


def public_url() -> str:
    """The URL Twilio called, as it signed it: behind a TLS proxy the app sees http://,
    so it is rebuilt on PUBLIC_BASE_URL; and the query string is the one sent, never
    Werkzeug's `request.url`, which decodes escapes (`%C3%A9` -> `é`) Twilio signed."""
    base = current_app.config["PUBLIC_BASE_URL"].rstrip("/") or request.root_url.rstrip("/")
    query = request.query_string.decode(errors="replace")  # garbage: the check fails
    return base + request.path + (f"?{query}" if query else "")


def twilio_signed(view):
    """Refuse (403, no TwiML) a request whose X-Twilio-Signature is missing or wrong.

    A signature by TWILIO_AUTH_TOKEN passes, and so does one by
    TWILIO_SECONDARY_AUTH_TOKEN when it is set: while the token is rotated, every web
    process accepts both, so no call is refused whichever token Twilio signs with.
    """

    @functools.wraps(view)
    def checked(*args, **kwargs):
        signature = request.headers.get("X-Twilio-Signature", "")
        if not signature or not _signed_by_a_token_of_ours(public_url(), signature):
            abort(403)
        # Twilio's signature covers the form's values sorted, not their order, and Twilio
        # never repeats a parameter: a repeated one is a replay with its values reordered
        # ("Digits=1&Digits=0" read as 0), refused before anything reads it.
        if _repeats_a_parameter(request.form) or _repeats_a_parameter(request.args):
            abort(400)
        g.twilio_verified = True
        return view(*args, **kwargs)

    return checked


def _repeats_a_parameter(params) -> bool:
    return any(len(values) > 1 for values in params.listvalues())


def _signed_by_a_token_of_ours(url: str, signature: str) -> bool:
    """True if `signature` is Twilio's over `url` and the form, by either auth token.

    Twilio signs with the account's primary token only: a secondary one is not used
    until it is promoted, and from then the promoted one signs and the old primary is
    gone (https://www.twilio.com/docs/api/errors/57012: a wrong token "including a
    secondary token that has not been promoted"; https://www.twilio.com/docs/iam/api/authtoken:
    promoting makes the secondary the primary). The docs do not say when in-flight
    calls switch, so both are accepted until the rotation is over (docs/deploy.md).
    """
    config = current_app.config
    for token in (config["TWILIO_AUTH_TOKEN"], config.get("TWILIO_SECONDARY_AUTH_TOKEN")):
        if not token:  # an unset token must never make an empty-key HMAC valid
            continue
        validator = RequestValidator(token)
        # The URL as called matches almost always: one HMAC (with the primary first, so a
        # normal request costs what it did before). Else let twilio also try it with and
        # without the default port, as it documents.
        if (compare(validator.compute_signature(url, request.form), signature)
                or validator.validate(url, request.form, signature)):
            return True
    return False


# --- staff: supervisors and administrators ---------------------------------------------

ROLES = ("supervisor", "admin")  # an admin may also read reports
FAILED_LOGIN_LIMITS = parse_many("5 per minute;30 per hour")  # per address and per name

csrf = CSRFProtect()

# What a browser may do with a staff page (everything outside /voice). The pages load one
# stylesheet and nothing else: no script at all, no inline style, charts are inline SVG.
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])
STAFF_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",  # frame-ancestors, for browsers that predate it
    # No address of ours ever leaves for another site. Not "no-referrer": over https
    # Flask-WTF's CSRF check requires a same-site Referer on every form post.
    "Referrer-Policy": "same-origin",
}
HSTS = "max-age=31536000"  # a year; not includeSubDomains: the domain's other hosts are not ours


# Twilio's webhooks, the health, readiness and metrics endpoints, the stylesheet: no
# staff session.
SESSIONLESS = ("/voice", "/healthz", "/readyz", "/metrics", "/static/")
SESSION_ID = "sid"  # what a logged-in person's cookie holds, alone


class StaffSession(SecureCookieSession):
    """One browser's session. Before login its contents (the login form's CSRF token)
    ride in the signed cookie; from login on they are kept in the session record in
    Redis (ivr.sessions), and the cookie holds the record's id alone."""

    sid: str | None = None  # the session record's id; None before login
    record = None  # the ivr.sessions.Session it resumes
    started_now = False  # logged in by this request: its cookie is sent with the answer


class StaffSessions(SecureCookieSessionInterface):
    """Sessions whose cookie carries a session record's id: one that has ended (logout,
    a password or role change, removal, revocation, left idle, past its lifetime) opens
    nothing.

    Not even opened for Twilio's webhooks (which have no cookie and no use for one: a
    few hundred microseconds saved on every call step), nor for the health checks,
    metrics scrapes and the stylesheet."""

    session_class = StaffSession

    def open_session(self, app, request):
        if request.path.startswith(SESSIONLESS):
            return self.make_null_session(app)
        session = super().open_session(app, request)
        sid = session.get(SESSION_ID) if session is not None else None
        if not sid:
            return session  # before login
        sessions = services.of(app).sessions
        opened = StaffSession()
        try:
            record = sessions.resume(sid) if sessions else None
        except redis.RedisError:  # unreadable now: logged out for this request, cookie kept
            return opened
        if record is None:  # ended: the cookie goes
            opened.modified = True
            return opened
        opened.update(self.serializer.loads(record.data) if record.data else {})
        opened.modified = False
        opened.sid, opened.record = sid, record
        return opened

    def save_session(self, app, session, response):
        if getattr(session, "sid", None) is None:
            return super().save_session(app, session, response)
        sessions = services.of(app).sessions
        if session.modified or session.started_now:
            sessions.keep_data(session.sid, self.serializer.dumps(dict(session)))
        if session.accessed:
            response.vary.add("Cookie")
        if session.started_now:
            # Sent once, at login, to expire when the session ends: never sent again, so
            # its lifetime cannot slide.
            response.set_cookie(
                self.get_cookie_name(app),
                self.get_signing_serializer(app).dumps({SESSION_ID: session.sid}),
                expires=datetime.fromtimestamp(sessions.ends_at(session.record), UTC),
                httponly=self.get_cookie_httponly(app), domain=self.get_cookie_domain(app),
                path=self.get_cookie_path(app), secure=self.get_cookie_secure(app),
                partitioned=self.get_cookie_partitioned(app),
                samesite=self.get_cookie_samesite(app))


def init_app(app) -> None:
    """Cookies, CSRF on every form, the slow-down of repeated failed logins, and the
    request size limit."""
    development = app.config["RUTA_ENV"] == "development"
    app.config["MAX_CONTENT_LENGTH"] = int(app.config["RUTA_MAX_REQUEST_BYTES"])
    app.before_request(refuse_large_bodies)
    # Set, not setdefault: Flask's own defaults (not Secure, no SameSite, 31 days) are
    # already in app.config, so a setdefault would never apply.
    app.config.update(
        SESSION_COOKIE_SECURE=not development,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_HTTPONLY=True,
        # The longest a signed cookie is read: a session's own lifetime (ivr.sessions).
        PERMANENT_SESSION_LIFETIME=timedelta(hours=int(app.config["RUTA_SESSION_HOURS"])),
    )
    app.session_interface = StaffSessions()
    app.after_request(functools.partial(staff_headers, hsts=not development))
    proxies = int(app.config["RUTA_TRUSTED_PROXIES"])
    if proxies:  # the client's address (failed logins are counted by it) and scheme
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies,
                                x_host=proxies)
    csrf.init_app(app)
    # The `limits` library (what Flask-Limiter is built on), used where it is needed
    # only: Flask-Limiter would check every request, webhooks included.
    # Its client is built by ivr.redis_url like every other (any REDIS_URL form).
    url = app.config["REDIS_URL"]
    storage = storage_from_string(
        # Short timeouts: a login must not hold a web worker (which also answers
        # webhooks) while Redis is unreachable.
        "redis://", connection_pool=redis_url.connect(
            url, socket_connect_timeout=1, socket_timeout=2).connection_pool,
        key_prefix=store.LIMITS_PREFIX) if url else storage_from_string("memory://")
    services.of(app).login_limiter = MovingWindowRateLimiter(storage)


def staff_headers(response, hsts: bool):
    """Security headers on staff pages; every page but the stylesheet is `no-store`, as
    they show calls, accounts or forms. Twilio's webhooks get none: no browser reads them."""
    if request.path.startswith("/voice"):
        return response
    for name, value in STAFF_HEADERS.items():
        response.headers.setdefault(name, value)
    if hsts:
        response.headers.setdefault("Strict-Transport-Security", HSTS)
    # Recordings' URLs change with their content: those may be cached for ever.
    if not request.path.startswith(("/static/", "/audio/")):
        response.headers["Cache-Control"] = "no-store"
    return response


# The staff forms whose POST may pass the general limit, and by how much:
# - an admin's recording (ivr.admin.recordings): a file of at most ivr.recordings.MAX_BYTES,
#   with room for one somewhat larger, so that its admin reads how large it is rather than
#   a bare "too large" page;
# - one option's example phrases in one language (ivr.admin.examples), sent whole in one
#   field: the danger phrases of one language are over 130 KB once encoded, and grow as
#   admins add more.
LARGER_BODIES = {"admin.recordings": 2 * MAX_BYTES, "admin.examples": 1024 * 1024}


def refuse_large_bodies():
    """413 for a body over the limit, whatever the route and before any view or the CSRF
    check runs (Flask refuses one only when something reads it). A body sent without a
    length (chunked, which the server de-chunks) is read here up to the limit: Werkzeug
    would quietly cut it off there instead."""
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if request.method == "POST" and request.endpoint in LARGER_BODIES:
        limit = request.max_content_length = LARGER_BODIES[request.endpoint]
        request.max_form_memory_size = limit  # a field may be most of it
    if request.content_length is not None:
        if request.content_length > limit:
            abort(413)
    elif request.environ.get("wsgi.input_terminated"):
        body = request.input_stream.read(limit + 1)
        if len(body) > limit:
            abort(413)
        request.environ["wsgi.input"] = io.BytesIO(body)  # for the form parser, as sent


def login_allowed(keys: list[str]) -> bool:
    """False while any of `keys` (the client address, the account name) has failed too
    many logins. If the limiter's storage is down, logging in must still work."""
    limiter = services.of().login_limiter
    try:
        return all(limiter.test(limit, "login", key)
                   for limit in FAILED_LOGIN_LIMITS for key in keys)
    except Exception:  # noqa: BLE001
        return True


def login_failed(keys: list[str]) -> None:
    limiter = services.of().login_limiter
    try:
        for limit in FAILED_LOGIN_LIMITS:
            for key in keys:
                limiter.hit(limit, "login", key)
    except Exception:  # noqa: BLE001
        pass


# OWASP's device cookies: a browser that logged in as a name keeps a signed cookie
# saying so. Its failed logins as that name count against that cookie alone, and the
# counts per address and per name never block it: someone typing wrong passwords at
# bob's name, from anywhere, cannot keep bob out.
# https://owasp.org/www-community/Slow_Down_Online_Guessing_Attacks_with_Device_Cookies
DEVICE_COOKIE_DAYS = 180
DEVICE_COOKIE_SALT = "ruta-device-cookie"  # its signature is no session cookie's


def failed_login_counters(name: str) -> list[str]:
    """What a failed login as `name` by this request counts against, and what may block
    it: this browser's device cookie for `name` alone when it carries a valid one, else
    the client's address and the account name."""
    raw = request.cookies.get(_device_cookie_name(name))
    try:
        device = _device_signer().loads(raw, max_age=DEVICE_COOKIE_DAYS * 86400) if raw else {}
    except BadSignature:  # forged, or expired
        device = {}
    if isinstance(device, dict) and device.get("name") == name and device.get("nonce"):
        return [f"device:{device['nonce']}"]
    return [f"address:{_counted_address(request.remote_addr or '')}", f"name:{name[:64]}"]


def _counted_address(address: str) -> str:
    """An IPv4 address as it is; an IPv6 one as its /64, the block one customer gets:
    counted one by one, its 2^64 addresses would each have their own allowance."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 4:
        return address
    if ip.ipv4_mapped:  # ::ffff:192.0.2.1, an IPv4 client of a dual-stack server
        return str(ip.ipv4_mapped)
    return str(ipaddress.ip_network(f"{ip}/64", strict=False))


def remember_device(response, name: str):
    """Leave this browser a device cookie for `name`, after it logged in as `name`: a
    new nonce each time, so failures counted against an older one stay behind."""
    response.set_cookie(
        _device_cookie_name(name),
        _device_signer().dumps({"name": name, "nonce": secrets.token_urlsafe(16)}),
        max_age=DEVICE_COOKIE_DAYS * 86400, path=url_for("reports.login"),
        secure=current_app.config["SESSION_COOKIE_SECURE"], httponly=True,
        samesite="Strict")
    return response


def _device_cookie_name(name: str) -> str:
    """One cookie per account name, so a shared computer keeps each person's; named by a
    hash, so the cookie's name shows no account name."""
    return "ruta_device_" + hashlib.sha256(name.encode()).hexdigest()[:16]


def _device_signer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key, salt=DEVICE_COOKIE_SALT)


# --- staff sessions: started, ended, logged -----------------------------------------------


def log_in(name: str, credentials: str) -> bool:
    """Start a session for `name` in this browser, in place of the one it had; False (no
    session) if the account's `credentials` (ivr.sessions.credentials_of) changed since
    the login checked them."""
    sessions = services.of().sessions
    if session.record is not None:
        sessions.end(session.record.handle)
    address = request.remote_addr or ""
    session.clear()
    session.sid = session.record = None
    started = sessions.start(name, address, request.user_agent.string, credentials)
    if started is None:
        return False
    session.sid, session.record = started
    session.started_now = True
    g.pop("ruta_staff", None)
    log_security_event(sessions.r, SecurityEvent.LOGIN, name, address)
    return True


def log_out() -> None:
    """End this browser's session: its record, so a copy of the cookie opens nothing."""
    record = getattr(session, "record", None)
    if record is not None:
        sessions = services.of().sessions
        sessions.end(record.handle)
        log_security_event(sessions.r, SecurityEvent.LOGOUT, record.user,
                           request.remote_addr or "")
    session.clear()
    session.sid = session.record = None


def log_failed_login(account: str | None) -> None:
    """Record a failed login under the account it named, or as an unknown name: never
    the text typed (anyone can type anything there, a mistyped password included)."""
    event = SecurityEvent.LOGIN_FAILED if account else SecurityEvent.LOGIN_FAILED_UNKNOWN
    log_security_event(services.of().sessions.r, event, account or "",
                       request.remote_addr or "")


def log_event(event: SecurityEvent, who: str) -> None:
    """Record `event` of `who` in the security log, with this request's address."""
    log_security_event(services.of().sessions.r, event, who, request.remote_addr or "")


@functools.cache
def decoy_password_hash() -> str:
    """Checked when a login names no account, so that it takes as long as a real one."""
    return generate_password_hash(secrets.token_hex(16), method="scrypt")


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
    lang: str = DEFAULT_LANGUAGE  # the pages' language (ivr.i18n); a token's is unused
    two_factor: bool = False  # signs in with a code after the password (ivr.two_factor)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def current_staff() -> Staff | None:
    """The logged-in person (session cookie) or API client (Bearer token), checked
    against Redis on every request so a removed account is out at once."""
    if "ruta_staff" in g:
        return g.ruta_staff
    staff, accounts = None, services.of().staff
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer ") and request.path.startswith("/api/"):  # tokens: API only
        found = accounts.token(token_hash(auth.removeprefix("Bearer ").strip()))
        if found:
            staff = Staff(found["name"], found["role"], "token")
    elif (record := getattr(session, "record", None)) is not None:  # ivr.sessions
        found = accounts.user(record.user)
        if found:  # (else removed as this request began: its sessions are ended)
            staff = Staff(record.user, found["role"], "session", language_of(found),
                          has_two_factor(found))
    g.ruta_staff = staff
    return staff


def staff_if_readable() -> Staff | None:
    """The logged-in person, or None: also when accounts cannot be read now (no Redis),
    for what must show anyway (an error page, the language of a page)."""
    if services.of().staff is None:
        return None
    try:
        return current_staff()
    except redis.RedisError:
        return None


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
