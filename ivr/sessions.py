"""Staff sign-ins kept in Redis: a session record per login, and the security log.

A login starts a session under a random id. The browser's cookie carries that id and
nothing else (ivr.security); the record holds the rest: whose it is, when it started and
was last used, from which address and browser, and the session's contents (the CSRF
token, flashed messages). Redis keeps the id's SHA-256 only, as for an API token: a copy
of the database opens no session. A session ends at logout; when its person's password,
role or account changes (ivr.staff); when someone ends it (`ivr users revoke`, the admin
page); after RUTA_SESSION_IDLE_MINUTES unused; and RUTA_SESSION_HOURS after its login,
however busy.

The security log is a stream of its own, capped, so it never pushes configuration
changes out of the audit log. It keeps only what signed-in staff and operators did;
failed logins and sign-in codes, which anyone can cause from the login page, go to a
capped stream of their own, so that no flood of them pushes a real login or an ended
session out of sight.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import time
from dataclasses import dataclass, replace
from datetime import timedelta
from enum import StrEnum

import redis

from ivr.store import (
    FAILED_LOGINS,
    SECURITY_LOG,
    session_key,
    user_key,
    user_sessions_key,
)
from ivr.versions import now_text

SECURITY_LOG_KEEP = 10_000  # entries: the oldest go first
FAILED_LOGINS_KEEP = 10_000  # the same, in the failed logins' stream
AGENT_KEPT = 200  # characters of a browser's User-Agent kept with its session

# Sets the fields given only while the record exists: a session ended meanwhile must not
# come back as a fragment.
UPDATE_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1"""


class SecurityEvent(StrEnum):
    """What the security log records; shown to administrators under the audit log.
    These are the log's only words a visitor can cause: what they typed is never kept."""

    LOGIN = "login"
    LOGOUT = "logout"
    LOGIN_FAILED = "failed login"  # by a known account's name
    LOGIN_FAILED_UNKNOWN = "failed login, unknown name"
    SESSIONS_ENDED = "sessions ended"
    # Two-step sign-in (ivr.two_factor): a wrong code after the right password counts
    # like a failed login.
    CODE_FAILED = "failed sign-in code"
    RECOVERY_CODE_USED = "recovery code used"
    TWO_FACTOR_ON = "two-step sign-in turned on"
    TWO_FACTOR_OFF = "two-step sign-in turned off"
    TWO_FACTOR_RESET = "two-step sign-in reset"  # by an operator: `ivr users totp-reset`

    @property
    def anyone_can_cause(self) -> bool:
        """Can a visitor who is not signed in cause it? Those go to the failed logins'
        stream, never to the security log (log_security_event)."""
        return self in BY_ANYONE


# A wrong code needs the right password, but a stolen password is exactly when it comes.
BY_ANYONE = frozenset({SecurityEvent.LOGIN_FAILED, SecurityEvent.LOGIN_FAILED_UNKNOWN,
                       SecurityEvent.CODE_FAILED})


def log_security_event(r: redis.Redis, event: SecurityEvent, who: str = "",
                       detail: str = "") -> None:
    """Record a login, a failed login or ended sessions, as the audit log records a
    change (at, who, action, detail): in the security log, or in the failed logins'
    stream if anyone can cause it. Each keeps about its last ..._KEEP entries.

    Failed logins written before the two streams were split stay in the security log
    (nothing is moved): the staff's own entries push them out in time."""
    log, keep = ((FAILED_LOGINS, FAILED_LOGINS_KEEP) if event.anyone_can_cause
                 else (SECURITY_LOG, SECURITY_LOG_KEEP))
    r.xadd(log, {"at": now_text(), "who": who, "action": event.value, "detail": detail},
           maxlen=keep, approximate=True)


# What a sign-in is checked against. A login checked before one of them changed (a new
# password, role, or two-step secret; the account removed) starts no session: else a
# login in flight while an operator changes a stolen password would outlive the change.
CREDENTIAL_FIELDS = ("password", "role", "totp_secret")


def credentials_of(account: dict[str, str]) -> str:
    """A digest of the account's CREDENTIAL_FIELDS ("" for each one missing)."""
    return hashlib.sha256("\0".join(
        account.get(field, "") for field in CREDENTIAL_FIELDS).encode()).hexdigest()


def session_hash(session_id: str) -> str:
    """How a session is named in Redis, on the admin page and by `ivr users sessions`."""
    return hashlib.sha256(session_id.encode()).hexdigest()


@dataclass(frozen=True)
class Session:
    handle: str  # the SHA-256 of its id
    user: str
    created: float  # Unix time
    seen: float  # the last request that used it
    address: str
    agent: str  # the browser's User-Agent (its start)
    data: str = ""  # the session's contents, as the web app serialised them


def _session(handle: str, fields: dict[str, str]) -> Session | None:
    try:
        return Session(handle, fields["user"], float(fields["created"]),
                       float(fields["seen"]), fields.get("address", ""),
                       fields.get("agent", ""), fields.get("data", ""))
    except (KeyError, ValueError):  # not a whole record: nobody's session
        return None


def end_sessions_of(r: redis.Redis, user: str, keep: str | None = None) -> int:
    """End every session of `user` at once (but the one whose handle is `keep`: the
    browser that made the change); returns how many ended."""
    index = user_sessions_key(user)
    with r.pipeline() as pipe:
        while True:
            try:
                pipe.watch(index)  # a login meanwhile: read again, end it too
                handles = [h for h in pipe.zrange(index, 0, -1) if h != keep]
                pipe.multi()
                for handle in handles:
                    pipe.delete(session_key(handle))
                    pipe.zrem(index, handle)
                return sum(pipe.execute()[0::2])
            except redis.WatchError:
                continue


class Sessions:
    """Staff sessions: started at login, resumed by each request, ended."""

    def __init__(self, r: redis.Redis, lifetime: timedelta, idle: timedelta):
        self.r = r  # a client that decodes responses (the staff pages' own)
        self.lifetime = lifetime.total_seconds()
        self.idle = idle.total_seconds()
        self._update = r.register_script(UPDATE_IF_EXISTS)

    def ends_at(self, session: Session) -> float:
        """When `session` ends however busy it is: the cookie expires then too."""
        return session.created + self.lifetime

    def start(self, user: str, address: str, agent: str,
              credentials: str) -> tuple[str, Session] | None:
        """A new session for `user`: (its id, for the cookie only; the session). None if
        the account's credentials are no longer those the login checked (credentials_of).

        Written while the account is unchanged (WATCH): a change that lands first is
        seen here, and one that lands after finds this session and ends it."""
        session_id = secrets.token_urlsafe(32)
        # Printable characters only: the operator reads it in a terminal (`ivr users
        # sessions`), where escape sequences could retitle it or write its clipboard.
        agent = "".join(c for c in agent if c.isprintable())[:AGENT_KEPT]
        with self.r.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(user_key(user))
                    if credentials_of(pipe.hgetall(user_key(user))) != credentials:
                        return None
                    now = time.time()
                    session = Session(session_hash(session_id), user, now, now, address,
                                      agent)
                    pipe.multi()
                    pipe.hset(session_key(session.handle), mapping={
                        "user": user, "created": repr(now), "seen": repr(now),
                        "address": address, "agent": session.agent, "data": ""})
                    pipe.expire(session_key(session.handle),
                                self._keep_seconds(session, now))
                    pipe.zadd(user_sessions_key(user),
                              {session.handle: self.ends_at(session)})
                    # The index outlives every session in it.
                    pipe.expire(user_sessions_key(user), math.ceil(self.lifetime))
                    pipe.execute()
                    return session_id, session
                except redis.WatchError:  # the account changed meanwhile: look again
                    continue

    def resume(self, session_id: str) -> Session | None:
        """The open session with this id, marked as used now; None once it has ended."""
        handle = session_hash(session_id)
        session = _session(handle, self.r.hgetall(session_key(handle)))
        if session is None:
            return None
        now = time.time()
        if now >= self.ends_at(session) or now >= session.seen + self.idle:
            self._end(session)
            return None
        pipe = self.r.pipeline()
        self._update(keys=[session_key(handle)], args=["seen", repr(now)], client=pipe)
        pipe.expire(session_key(handle), self._keep_seconds(session, now))
        still_open, _ = pipe.execute()
        return replace(session, seen=now) if still_open else None

    def keep_data(self, session_id: str, data: str) -> None:
        """Store the session's contents (unless it has ended meanwhile)."""
        self._update(keys=[session_key(session_hash(session_id))], args=["data", data])

    def end(self, handle: str) -> Session | None:
        """End one session, named by its hash: the session ended (None if not open)."""
        session = _session(handle, self.r.hgetall(session_key(handle)))
        return session if session and self._end(session) else None

    def end_all(self, user: str) -> int:
        return end_sessions_of(self.r, user)

    def of_user(self, user: str) -> list[Session]:
        """`user`'s open sessions, the newest first."""
        index = user_sessions_key(user)
        now = time.time()
        self.r.zremrangebyscore(index, "-inf", now)  # past their end
        handles = self.r.zrange(index, 0, -1)
        read = self.r.pipeline(transaction=False)
        for handle in handles:
            read.hgetall(session_key(handle))
        found = []
        for handle, fields in zip(handles, read.execute(), strict=True):
            session = _session(handle, fields)
            if session is None or now >= session.seen + self.idle:
                self.r.zrem(index, handle)  # left unused: Redis dropped it, or will
                continue
            found.append(session)
        return sorted(found, key=lambda s: s.created, reverse=True)

    def _end(self, session: Session) -> bool:
        pipe = self.r.pipeline()
        pipe.delete(session_key(session.handle))
        pipe.zrem(user_sessions_key(session.user), session.handle)
        return bool(pipe.execute()[0])

    def _keep_seconds(self, session: Session, now: float) -> int:
        """How long Redis keeps a record unused: to its idle limit, never past its end."""
        return max(1, math.ceil(min(self.idle, self.ends_at(session) - now)))
