"""The move from the key layout before the `{ruta}` hash tag (`ruta:*`) to today's.

Web and worker processes refuse to start while old keys are there (they would not see
the published menu, staff accounts or waiting events); `ivr redis migrate-keys` renames
them.
"""

from __future__ import annotations

import redis

from ivr.store import EVENTS, PREFIX

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




def _as_text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value
