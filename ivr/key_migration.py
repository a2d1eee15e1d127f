"""One-time changes to data older versions wrote.

- The key layout before the `{ruta}` hash tag (`ruta:*`): web and worker processes refuse
  to start while old keys are there (they would not see the published menu, staff
  accounts or waiting events); `ivr redis migrate-keys` renames them.
- Failed logins in the audit log: before the security log (ivr.sessions) each one was
  kept there with whatever was typed as the name (anyone's text, a mistyped password).
  The web removes them on its first start after the upgrade
  (`forget_typed_failed_logins`); `ivr redis forget-typed-logins` does it by hand.
"""

from __future__ import annotations

import json

import redis

from ivr.store import AUDIT, EVENTS, MIGRATIONS, PREFIX
from ivr.versions import AuditAction, audit, now_text

LEGACY_PREFIX = "ruta:"  # the layout before the hash tag
# Keys only the old layout has once data was written: checked at every start.
LEGACY_MARKERS = tuple(LEGACY_PREFIX + name for name in ("events", "users", "config:version"))
LEGACY_HELP = ("Redis holds Ruta data under the key names before the {ruta} hash tag "
               "(ruta:*), which this version would not see (the published menu, staff "
               "accounts, events waiting to be written). Stop every web and worker process, "
               "run `ivr redis migrate-keys` once, then start them again.")


def has_legacy_keys(r: redis.Redis) -> bool:
    """Does Redis hold data under the names before the hash tag? New code would not see
    it: the published menu, staff accounts and waiting events would look gone."""
    return bool(r.exists(*LEGACY_MARKERS))


def migrate_legacy_keys(r: redis.Redis) -> tuple[int, list[str]]:
    """Rename the keys of the layout before the hash tag (`ruta:...`) to `{ruta}:...`,
    TTLs kept. A key whose new name is already taken is left as it is and returned,
    except the events stream: its entries are appended to the new one (the writer skips
    events it has already written), so no event waits where no drain looks.
    For a single server, with web and workers stopped (they would write the new names
    meanwhile). Returns (keys renamed, keys left)."""
    renamed, left = 0, []
    for key in list(r.scan_iter(match=f"{LEGACY_PREFIX}*", count=1000)):
        name = _as_text(key)
        if r.renamenx(key, PREFIX + name[len(LEGACY_PREFIX):]):
            renamed += 1
        elif name == LEGACY_PREFIX + EVENTS[len(PREFIX):]:
            _append_stream(r, key, EVENTS)
            renamed += 1
        else:
            left.append(name)
    return renamed, sorted(left)


def _append_stream(r: redis.Redis, source, target: str, chunk: int = 1000) -> None:
    start = "-"
    while entries := r.xrange(source, min=start, count=chunk):
        pipe = r.pipeline(transaction=False)
        for _, fields in entries:
            pipe.xadd(target, fields)
        pipe.execute()
        start = "(" + _as_text(entries[-1][0])
    r.delete(source)


TYPED_LOGINS = "forget-typed-failed-logins"  # its name in {ruta}:migrations


def forget_typed_failed_logins(r: redis.Redis, who: str = "ruta") -> int:
    """Remove the audit log's old failed logins (action "login failed", the typed name as
    who) and say how many went, in the audit log itself and in `{ruta}:migrations`.
    Safe to run again, and by two processes at once: each counts only the entries its
    own XDEL removed. `r` decodes responses (the staff pages' client, the `ivr` one)."""
    removed, start = 0, "-"
    while entries := r.xrange(AUDIT, min=start, count=1000):
        typed = [entry_id for entry_id, fields in entries
                 if fields.get("action") == AuditAction.LOGIN_FAILED]
        if typed:
            removed += r.xdel(AUDIT, *typed)
        start = "(" + entries[-1][0]
    if removed:
        audit(r, who, AuditAction.TYPED_LOGINS_REMOVED, str(removed))
    r.hset(MIGRATIONS, TYPED_LOGINS, json.dumps({"at": now_text(), "removed": removed}))
    return removed


def forget_typed_failed_logins_once(r: redis.Redis) -> int | None:
    """The web's start: the removal above unless it has run (one read when it has).
    Returns how many were removed, None if it had run before."""
    if r.hexists(MIGRATIONS, TYPED_LOGINS):
        return None
    return forget_typed_failed_logins(r)


def _as_text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value
