"""Staff accounts (supervisors, administrators) and API tokens, kept in Redis.

The keys are named in ivr.store (the key layout's owner); this module reads and writes
them. An account or a token is written together with its index, in one transaction.
Changing who someone is (password, role, two-step sign-in) or removing them ends their
sessions at once (ivr.sessions).

Two-step sign-in (ivr.two_factor) lives in the account's own hash: the TOTP secret, the
last time step accepted (so no code is taken twice), and the recovery codes, each a field
of its own, "recovery:<its scrypt>", that is deleted as it is used: HDEL answers 1 once.
"""

from __future__ import annotations

import time
from datetime import datetime

import redis

from ivr import two_factor
from ivr.message import DEFAULT_LANGUAGE, LANGUAGES
from ivr.sessions import end_sessions_of
from ivr.store import TOKENS, USERS, token_key, user_key
from ivr.vocabulary import BOGOTA

SET_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return 1
end
return 0"""

# Accept a TOTP time step only if it is later than the last one accepted: a code seen
# over someone's shoulder, or replayed, within its window opens nothing.
ACCEPT_STEP = """
local last = redis.call('HGET', KEYS[1], 'totp_step')
if not last or not redis.call('HGET', KEYS[1], 'totp_secret') then
  return 0
end
if tonumber(ARGV[1]) <= tonumber(last) then
  return 0
end
redis.call('HSET', KEYS[1], 'totp_step', ARGV[1])
return 1"""
TWO_FACTOR_FIELDS = ("totp_secret", "totp_step", "recovery_salt")
RECOVERY_FIELD = "recovery:"  # + a code's scrypt
DIGEST_FIELD = "digest_email"  # where the weekly digest goes (ivr.digest); none: not sent
BY_CODE, BY_RECOVERY_CODE = "code", "recovery code"  # how a second step passed


def has_two_factor(account: dict[str, str]) -> bool:
    """Does signing in as this account take a code after the password?"""
    return bool(account.get("totp_secret"))


def recovery_codes_left(account: dict[str, str]) -> int:
    return sum(1 for field in account if field.startswith(RECOVERY_FIELD))


def language_of(account: dict[str, str]) -> str:
    """An account's language (Spanish for one saved before there was a choice)."""
    lang = account.get("lang", DEFAULT_LANGUAGE)
    return lang if lang in LANGUAGES else DEFAULT_LANGUAGE


class StaffAccounts:
    """Who may use the staff pages and the reports API."""

    def __init__(self, r: redis.Redis):
        self.r = r  # a client that decodes responses (the staff pages' own)

    def save_user(self, name: str, role: str, password_hash: str,
                  lang: str = DEFAULT_LANGUAGE) -> None:
        if lang not in LANGUAGES:
            raise ValueError(f"lang must be one of {', '.join(LANGUAGES)}, not {lang!r}")
        pipe = self.r.pipeline()
        pipe.hset(user_key(name), mapping={"role": role, "password": password_hash,
                                           "lang": lang,
                                           "created": f"{datetime.now(BOGOTA):%Y-%m-%d %H:%M}"})
        pipe.sadd(USERS, name)
        pipe.execute()

    def user(self, name: str) -> dict[str, str] | None:
        return self.r.hgetall(user_key(name)) or None

    def set_language(self, name: str, lang: str) -> bool:
        """Change an existing account's language; False if there is no such account."""
        if lang not in LANGUAGES:
            raise ValueError(f"lang must be one of {', '.join(LANGUAGES)}, not {lang!r}")
        # Only an account that still exists: a removed one must not come back half-made.
        return bool(self.r.eval(SET_IF_EXISTS, 1, user_key(name), "lang", lang))

    def set_digest_email(self, name: str, address: str) -> bool:
        """Where `name` gets the weekly digest ("": not at all); False if no account."""
        return bool(self.r.eval(SET_IF_EXISTS, 1, user_key(name), DIGEST_FIELD, address))

    def digest_readers(self) -> list[tuple[str, str, str]]:
        """(name, address, language) of everyone who asked for the weekly digest."""
        return [(name, account[DIGEST_FIELD], language_of(account))
                for name, account in self.users() if account.get(DIGEST_FIELD)]

    def users(self) -> list[tuple[str, dict[str, str]]]:
        names = sorted(self.r.smembers(USERS))
        read = self.r.pipeline(transaction=False)
        for name in names:
            read.hgetall(user_key(name))
        return list(zip(names, read.execute(), strict=True))

    def remove_user(self, name: str) -> bool:
        pipe = self.r.pipeline()
        pipe.delete(user_key(name))
        pipe.srem(USERS, name)
        removed = bool(pipe.execute()[0])
        end_sessions_of(self.r, name)
        return removed

    def set_password(self, name: str, password_hash: str) -> bool:
        """A new password for an existing account, whose sessions end; False if none."""
        return self._change(name, {"password": password_hash})

    def set_role(self, name: str, role: str) -> bool:
        """A new role for an existing account, whose sessions end; False if none."""
        return self._change(name, {"role": role})

    def _change(self, name: str, fields: dict[str, str], drop: list[str] = (),
                keep_session: str | None = None) -> bool:
        """Set `fields` and delete `drop` of an existing account, then end its sessions
        (all, or all but `keep_session`)."""
        with self.r.pipeline() as pipe:
            pipe.watch(user_key(name))  # removed meanwhile: refused, not half re-made
            if not pipe.exists(user_key(name)):
                return False
            pipe.multi()
            if drop:
                pipe.hdel(user_key(name), *drop)
            if fields:
                pipe.hset(user_key(name), mapping=fields)
            pipe.execute()
        end_sessions_of(self.r, name, keep=keep_session)
        return True

    # --- two-step sign-in --------------------------------------------------------------

    def turn_on_two_factor(self, name: str, secret: str, code: str,
                           keep_session: str | None = None) -> list[str] | None:
        """Turn on two-step sign-in with `secret` once `code` shows the person's app
        has it: the recovery codes to show them (once), or None for a wrong code. Their
        other sessions end: each began with a password alone."""
        step = two_factor.matching_step(secret, code, time.time())
        if step is None:
            return None
        codes, salt = two_factor.new_recovery_codes(), two_factor.new_salt()
        fields = {"totp_secret": secret, "totp_step": str(step), "recovery_salt": salt}
        for recovery in codes:
            fields[RECOVERY_FIELD + two_factor.recovery_code_hash(recovery, salt)] = "1"
        if not self._change(name, fields, drop=self._two_factor_fields(name),
                            keep_session=keep_session):
            return None
        return codes

    def turn_off_two_factor(self, name: str, keep_session: str | None = None) -> bool:
        """Sign in with a password alone again (the person's choice, or an operator's
        reset for a lost phone): every session but `keep_session` ends."""
        return self._change(name, {}, drop=self._two_factor_fields(name),
                            keep_session=keep_session)

    def second_step(self, name: str, code: str) -> str | None:
        """Check a code typed after the password: BY_CODE for the app's code (unused
        so far), BY_RECOVERY_CODE for a recovery code (now used up), None for neither."""
        account = self.user(name) or {}
        if not has_two_factor(account):
            return None
        if two_factor.looks_like_a_totp_code(code):
            step = two_factor.matching_step(account["totp_secret"], code, time.time())
            accepted = step is not None and self.r.eval(ACCEPT_STEP, 1, user_key(name), step)
            return BY_CODE if accepted else None
        field = RECOVERY_FIELD + two_factor.recovery_code_hash(
            code, account.get("recovery_salt", ""))
        return BY_RECOVERY_CODE if self.r.hdel(user_key(name), field) else None

    def _two_factor_fields(self, name: str) -> list[str]:
        return [*TWO_FACTOR_FIELDS,
                *(f for f in self.r.hkeys(user_key(name)) if f.startswith(RECOVERY_FIELD))]

    def save_token(self, name: str, role: str, token_hash: str) -> None:
        pipe = self.r.pipeline()
        pipe.hset(token_key(token_hash), mapping={"name": name, "role": role})
        pipe.hset(TOKENS, name, token_hash)
        pipe.execute()

    def token(self, token_hash: str) -> dict[str, str] | None:
        return self.r.hgetall(token_key(token_hash)) or None

    def tokens(self) -> list[str]:
        return sorted(self.r.hkeys(TOKENS))

    def remove_token(self, name: str) -> bool:
        token_hash = self.r.hget(TOKENS, name)
        if not token_hash:
            return False
        pipe = self.r.pipeline()
        pipe.delete(token_key(token_hash))
        pipe.hdel(TOKENS, name)
        pipe.execute()
        return True
