"""Staff accounts (supervisors, administrators) and API tokens, kept in Redis.

The keys are named in ivr.store (the key layout's owner); this module reads and writes
them. An account or a token is written together with its index, in one transaction.
Changing who someone is (password, role) or removing them ends their sessions at once
(ivr.sessions).
"""

from __future__ import annotations

from datetime import datetime

import redis

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

    def _change(self, name: str, fields: dict[str, str]) -> bool:
        with self.r.pipeline() as pipe:
            pipe.watch(user_key(name))  # removed meanwhile: refused, not half re-made
            if not pipe.exists(user_key(name)):
                return False
            pipe.multi()
            pipe.hset(user_key(name), mapping=fields)
            pipe.execute()
        end_sessions_of(self.r, name)
        return True

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
