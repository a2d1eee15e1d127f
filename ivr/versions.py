"""Administrators' changes: a draft, numbered immutable versions, rollback, audit.

What an administrator can change is an *overrides* document over the shipped files:

    {"prompts":  {"es": {"greeting": "..."}, "en": {...}},
     "examples": {"welcome.2": {"es": ["el patrón no me paga", ...]}, "danger": {...}},
     "hotlines": {"labour": {"dial": ["+57..."], "say": "120", "hours": "24/7",
                             "fallback": "national", "show_caller": false}},
     "voices":   {"es": {"voice": "...", "say_language": "...", "speech_language": "..."}},
     "recordings": {"es": {"greeting": {"sha256": "...", "kind": "wav", "seconds": 2.4},
                           "goodbye": None}}}   # None: a shipped recording taken away

A recording's bytes are kept apart, once, by their sha256 (ivr.store.keep_audio): a
version names them, so a rollback brings back the recordings with the text.

Edits go into the draft. Publishing builds the whole menu exactly as the loader does
(`ivr.menu.build`, strictly: a path over the spoken-seconds budget is refused too) and
stores the document as the next version; a version is never changed afterwards, and a
rollback publishes an old version's document again as a new one. Every web process
serves the newest version from its next call on (`LiveMenu`), and keeps what it has if
Redis is unreachable. With the two-person rule a publish waits for a second admin; so
does one that would pass callers' real numbers to a line that did not get them, or send
them somewhere new (`approval_reasons`), whatever the rule says.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import redis
from babel.numbers import format_decimal

from ivr import opening_hours, store
from ivr.menu import HOTLINE_FIELDS, ConfigError, Menu, Problem, Shipped, build
from ivr.message import DEFAULT_LANGUAGE, N_, InLanguages, Message
from ivr.vocabulary import BOGOTA

log = logging.getLogger(__name__)
CHECK_EVERY = 1.0  # seconds between two looks at the version counter, per process
RAISE_TO = """
if tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1])
end"""


class AuditAction(StrEnum):
    """What the audit log records; staff read each by its name (ivr.i18n)."""

    # Logins and failed logins went here before they had a log of their own
    # (ivr.sessions.SecurityEvent): older entries still say "login"; the failed ones,
    # which kept whatever a visitor typed as a name, are removed once
    # (ivr.key_migration.forget_typed_failed_logins).
    LOGIN = "login"
    LOGIN_FAILED = "login failed"
    TYPED_LOGINS_REMOVED = "failed logins with typed names removed"  # detail: how many
    DRAFT_SAVED = "draft saved"
    DRAFT_DISCARDED = "draft discarded"
    PUBLISH = "publish"  # also a version's kind
    PUBLISH_REQUESTED = "publish requested"
    ROLLBACK = "rollback"  # also a version's kind
    ROLLBACK_REQUESTED = "rollback requested"
    USER_SAVED = "user saved"
    USER_REMOVED = "user removed"
    PASSWORD_CHANGED = "password changed"
    ROLE_CHANGED = "role changed"
    LANGUAGE_CHANGED = "language changed"
    TOKEN_CREATED = "API token created"
    TOKEN_REMOVED = "API token removed"
    LINE_TEST = "line test"
    CALLER_KEY_MADE = "caller ID key made"  # detail: its fingerprint (ivr.caller_keys)


# Why a draft waited for a second admin, as drafts and audit entries kept it before the
# line was named by the directory's names: kept in the catalogue so that those entries
# still read in the reader's language.
FORMER_APPROVAL_REASONS = (
    N_("it turns show_caller on for hotline %(hotline)s: that line (%(targets)s) would "
       "receive callers' real numbers"),
    N_("it changes the dial targets of hotline %(hotline)s, which receives callers' real "
       "numbers (show_caller), from %(before)s to %(after)s"),
)


class PublishError(Exception):
    """The draft cannot go live; `problems` says why (a ConfigError line, or a Message)."""

    def __init__(self, problems: list[str | Message]):
        self.problems = problems
        super().__init__("; ".join(map(str, problems)))


def refused(template: str, **values) -> PublishError:
    return PublishError([Message(template, values)])


@dataclass(frozen=True)
class Version:
    number: int
    author: str
    at: str
    note: str  # as the admin typed it (before rollback_of was kept: with its prefix)
    kind: str  # "publish" or "rollback"
    approved_by: str = ""
    rollback_of: int | None = None  # the version a rollback brought back

    @property
    def shown_note(self) -> Message | str:
        """The note as staff read it, in their language: a rollback's says which version
        it brought back. An older note, kept as English text, as it is."""
        return note_of(self.note, self.rollback_of)


def note_of(note: str, rollback_of: int | None) -> Message | str:
    """A version's (or a pending draft's) note, with what it rolled back to if it did."""
    if rollback_of is None:
        return note
    return Message(N_("rollback to version %(number)s: %(note)s"),
                   {"number": rollback_of, "note": note})


def pending_note(draft: dict) -> Message | str:
    """The note of a draft waiting for approval, as staff read it."""
    return note_of(draft.get("pending_note", ""), draft.get("pending_rollback_of"))


def now_text() -> str:
    return datetime.now(BOGOTA).strftime("%Y-%m-%d %H:%M:%S")


def normalize(doc: dict) -> dict:
    """Keep only what may be overridden, dropping empty sections (stable to compare)."""
    out = {}
    for section in ("prompts", "hotlines", "voices", "examples", "recordings"):
        entries = {k: dict(v) for k, v in (doc.get(section) or {}).items() if v}
        if entries:
            out[section] = entries
    return out


def caller_lines(shipped: Shipped, doc: dict) -> dict[str, tuple[bool, tuple[str, ...]]]:
    """hotline -> (does it get callers' real numbers, its dial targets) under `doc`."""
    out = {}
    for hid, fields in shipped.hotlines.items():
        merged = {**fields, **(doc.get("hotlines", {}).get(hid) or {})}
        dial = merged.get("dial") or []
        dial = [dial] if isinstance(dial, str) else dial
        out[hid] = (merged.get("show_caller") is True, tuple(str(t).strip() for t in dial))
    return out


def effective(shipped: Shipped, doc: dict,
              staff_lang: str = DEFAULT_LANGUAGE) -> dict[str, str]:
    """Every overridable value, flattened by the admin form's field id ("prompt:es:greeting"
    -> text; an example phrase: "examples:welcome.2:es:" + the phrase): for diffs, whose
    rows the pages name for their reader (ivr.i18n.field_label). Hours in the staff
    member's language (ivr.opening_hours)."""
    flat: dict[str, str] = {}
    for lang, texts in shipped.prompts.items():
        merged = {**texts, **(doc.get("prompts", {}).get(lang) or {})}
        for key, text in merged.items():
            flat[f"prompt:{lang}:{key}"] = str(text)
    defaults = {"hours": "24/7", "show_caller": False, "screen": False,
                "min_answered_seconds": shipped.menu.get("min_answered_seconds", 8)}
    for hid, fields in shipped.hotlines.items():
        merged = {**fields, **(doc.get("hotlines", {}).get(hid) or {})}
        for name in HOTLINE_FIELDS:
            value = merged.get(name, defaults.get(name, ""))
            text = (opening_hours.shown(value, staff_lang) if name == "hours"
                    else ", ".join(value) if isinstance(value, list)
                    else str(value).lower() if isinstance(value, bool) else str(value))
            flat[f"hotline:{hid}:{name}"] = text
    for lang, fields in (shipped.menu.get("voices") or {}).items():
        merged = {**fields, **(doc.get("voices", {}).get(lang) or {})}
        for name, value in merged.items():
            flat[f"voice:{lang}:{name}"] = str(value)
    for lang in shipped.prompts:
        merged = {**{k: r.to_json() for k, r in shipped.recordings.get(lang, {}).items()},
                  **((doc.get("recordings") or {}).get(lang) or {})}
        for key, raw in merged.items():
            if raw:  # its length and the start of its name: a replaced one differs
                seconds = format_decimal(raw["seconds"], "0.0", locale=staff_lang)
                flat[f"recording:{lang}:{key}"] = f"{seconds} s · {raw['sha256'][:10]}"
    for name in sorted({*shipped.examples, *(doc.get("examples") or {})}):
        merged = {**(shipped.examples.get(name) or {}),
                  **((doc.get("examples") or {}).get(name) or {})}
        for lang, phrases in merged.items():
            for phrase in phrases:  # one row a phrase: a diff shows just those added or gone
                flat[f"examples:{name}:{lang}:{phrase}"] = phrase
    return flat


def text_language(what: str) -> str | None:
    """The language of the text in a diff row named `what` (a key of `effective`): a
    prompt's or an example phrase's; None for the rest (numbers, ids, voice names)."""
    kind, lang, name = (what.split(":", 3) + ["", ""])[:3]
    return {"prompt": lang, "examples": name}.get(kind)


class ConfigVersions:
    """Drafts, versions and the audit log, in Redis (keys from ivr.store)."""

    def __init__(self, r: redis.Redis, shipped: Shipped, two_person_rule: bool = False):
        self.r = r  # decodes responses
        self.shipped = shipped
        self.two_person_rule = two_person_rule

    # --- reading ------------------------------------------------------------------

    def latest(self) -> int:
        return int(self.r.get(store.CONFIG_VERSION) or 0)

    def document(self, number: int) -> dict:
        """Version `number`'s overrides ({} for version 0, the shipped files)."""
        if number == 0:
            return {}
        raw = self.r.hget(store.config_version_key(number), "doc")
        if raw is None:
            raise KeyError(f"no version {number}")
        return json.loads(raw)

    def version(self, number: int) -> Version | None:
        fields = self.r.hgetall(store.config_version_key(number))
        if not fields:
            return None
        rollback_of = fields.get("rollback_of")
        return Version(number, fields.get("author", ""), fields.get("at", ""),
                       fields.get("note", ""), fields.get("kind", ""),
                       fields.get("approved_by", ""),
                       int(rollback_of) if rollback_of not in (None, "") else None)

    def history(self) -> list[Version]:
        """Every version, newest first."""
        found = (self.version(n) for n in range(self.latest(), 0, -1))
        return [v for v in found if v]

    def draft(self) -> dict | None:
        """{"doc", "base", "author", "at", "pending_note", "pending_by", "pending_why"}
        or None ("pending_why": what needs the approval besides the two-person rule)."""
        raw = self.r.get(store.CONFIG_DRAFT)
        return json.loads(raw) if raw else None

    def draft_digest(self) -> str:
        """Names the draft as it is now: a form sends it back, so that a publish or an
        approval applies to the draft the admin looked at, not one changed since."""
        return hashlib.sha256((self.r.get(store.CONFIG_DRAFT) or "").encode()).hexdigest()[:16]

    def draft_or_live(self) -> dict:
        """What the admin page edits: the draft, or else a copy of the live version."""
        draft = self.draft()
        return draft["doc"] if draft else self.document(self.latest())

    def diff(self, old: int, new: int,
             staff_lang: str = DEFAULT_LANGUAGE) -> list[tuple[str, str, str]]:
        """(what, before, after) for every value that differs between two versions."""
        return self.changes(self.document(old), self.document(new), staff_lang)

    def changes(self, old_doc: dict, new_doc: dict,
                staff_lang: str = DEFAULT_LANGUAGE) -> list[tuple[str, str, str]]:
        """(what, before, after) for every value two override documents set differently."""
        before = effective(self.shipped, old_doc, staff_lang)
        after = effective(self.shipped, new_doc, staff_lang)
        return [(k, before.get(k, ""), after.get(k, ""))
                for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)]

    # --- checking -----------------------------------------------------------------

    def check(self, doc: dict) -> tuple[Menu | None, list[str]]:
        """The menu this document gives, or the problems that stop it going live."""
        # Only a real true/false: the loader's bool() would read "false" as true.
        odd = [Problem(f"hotline {hid}, show_caller", Message(N_("must be yes or no")),
                       f"hotline:{hid}:show_caller")
               for hid, fields in (doc.get("hotlines") or {}).items()
               if not isinstance(fields.get("show_caller", False), bool)]
        try:
            menu = build(self.shipped, doc, strict=True)
        except ConfigError as e:
            return None, e.problems + odd
        return (None, odd) if odd else (menu, [])

    def approval_reasons(self, doc: dict) -> list[Message]:
        """Why `doc` may not go live on one admin's word, whatever the two-person rule
        says (empty: it may). A line with `show_caller` gets callers' real numbers, so
        one admin must not be able to point such a line at a phone of their choosing:
        turning it on, or changing the targets of a line that has it (live or in `doc`),
        needs a second admin."""
        live = caller_lines(self.shipped, self.document(self.latest()))
        new = caller_lines(self.shipped, doc)
        reasons = []
        for hid, (shows, dial) in new.items():
            shown_before, dial_before = live.get(hid, (False, ()))
            # The line by the directory's names, kept in every language with the reason.
            line = InLanguages(self.shipped.hotlines[hid].get("name") or {"en": hid})
            if shows and not shown_before:
                reasons.append(Message(N_(
                    "it would give callers' real numbers to %(hotline)s, which did not get "
                    "them (%(targets)s)"), {"hotline": line, "targets": ", ".join(dial) or "—"}))
            elif (shows or shown_before) and dial != dial_before:
                reasons.append(Message(N_(
                    "it changes the dial targets of %(hotline)s, which gets callers' real "
                    "numbers, from %(before)s to %(after)s"),
                    {"hotline": line, "before": ", ".join(dial_before) or "—",
                     "after": ", ".join(dial) or "—"}))
        return reasons

    # --- changing -----------------------------------------------------------------

    def save_draft(self, doc: dict, author: str) -> None:
        """Keep the edits (even broken ones: they are shown with their problems)."""
        current = self.draft()
        draft = {"doc": normalize(doc), "base": current["base"] if current else self.latest(),
                 "author": author, "at": now_text()}
        self.r.set(store.CONFIG_DRAFT, json.dumps(draft, ensure_ascii=False))
        self.audit(author, AuditAction.DRAFT_SAVED, "")

    def discard_draft(self, author: str) -> None:
        if self.r.delete(store.CONFIG_DRAFT):
            self.audit(author, AuditAction.DRAFT_DISCARDED, "")

    def publish(self, author: str, note: str, seen: str | None = None) -> int | None:
        """Publish the draft: returns the new version, or None when it now waits for a
        second admin's approval (two-person rule). Raises PublishError if broken, or if
        the draft is no longer the one `seen` (its digest) when one is given."""
        note = (note or "").strip()
        if not note:
            raise refused(N_("a short note saying what changed is required"))
        draft = self._draft_as_seen(seen)
        if draft is None:
            raise refused(N_("there is no draft to publish"))
        _, problems = self.check(draft["doc"])
        if problems:
            raise PublishError(problems)
        why = self.approval_reasons(draft["doc"])
        if self.two_person_rule or why:
            draft |= {"pending_note": note, "pending_by": author,
                      "pending_why": [m.to_json() for m in why]}
            self.r.set(store.CONFIG_DRAFT, json.dumps(draft, ensure_ascii=False))
            self.audit(author, AuditAction.PUBLISH_REQUESTED, Message.joined([note, *why]))
            return None
        return self._new_version(draft["doc"], author, note, AuditAction.PUBLISH,
                                 clear_draft=True)

    def approve(self, approver: str, seen: str | None = None) -> int:
        """A second admin approves the pending draft (the one `seen`), which goes live."""
        draft = self._draft_as_seen(seen)
        if not draft or not draft.get("pending_by"):
            raise refused(N_("no publish is waiting for approval"))
        if draft["pending_by"] == approver:
            raise refused(N_("the two-person rule needs another admin to approve"))
        _, problems = self.check(draft["doc"])
        if problems:
            raise PublishError(problems)
        return self._new_version(draft["doc"], draft["pending_by"], draft["pending_note"],
                                 AuditAction.PUBLISH, clear_draft=True, approved_by=approver,
                                 rollback_of=draft.get("pending_rollback_of"))

    def rollback(self, number: int, author: str, note: str) -> int | None:
        """Publish version `number`'s document again, as a new version (with the
        two-person rule: put it in the draft, waiting for a second admin)."""
        note = (note or "").strip()
        if not note:
            raise refused(N_("a short note saying why is required"))
        try:
            doc = self.document(number)
        except KeyError as e:
            raise refused(N_("there is no version %(number)s"), number=number) from e
        _, problems = self.check(doc)
        if problems:  # the shipped files changed since: that old version no longer loads
            raise PublishError(problems)
        why = self.approval_reasons(doc)
        if self.two_person_rule or why:
            draft = {"doc": normalize(doc), "base": self.latest(), "author": author,
                     "at": now_text(), "pending_note": note, "pending_rollback_of": number,
                     "pending_by": author, "pending_why": [m.to_json() for m in why]}
            self.r.set(store.CONFIG_DRAFT, json.dumps(draft, ensure_ascii=False))
            self.audit(author, AuditAction.ROLLBACK_REQUESTED,
                       Message.joined([note_of(note, number), *why]))
            return None
        return self._new_version(doc, author, note, AuditAction.ROLLBACK, clear_draft=False,
                                 rollback_of=number)

    def _draft_as_seen(self, seen: str | None) -> dict | None:
        if seen is not None and seen != self.draft_digest():
            raise refused(N_("the draft changed since you looked at it: review it again"))
        return self.draft()

    def _new_version(self, doc, author, note, kind, clear_draft, approved_by="",
                     rollback_of: int | None = None) -> int:
        number = self.r.incr(store.CONFIG_VERSION_SEQ)
        with self.r.pipeline() as pipe:
            try:
                if clear_draft:  # the draft we checked must be the one we clear
                    pipe.watch(store.CONFIG_DRAFT)
                    current = pipe.get(store.CONFIG_DRAFT)
                    if not current or normalize(json.loads(current)["doc"]) != normalize(doc):
                        raise refused(N_("the draft changed meanwhile: review it again"))
                pipe.multi()
                pipe.hset(store.config_version_key(number), mapping={
                    "doc": json.dumps(normalize(doc), ensure_ascii=False), "author": author,
                    "at": now_text(), "note": note, "kind": kind, "approved_by": approved_by,
                    **({"rollback_of": rollback_of} if rollback_of is not None else {}),
                })
                # Web processes watch this counter; it moves only once the version is
                # stored, and only forward (two publishing at once: the higher wins).
                pipe.eval(RAISE_TO, 1, store.CONFIG_VERSION, number)
                if clear_draft:
                    pipe.delete(store.CONFIG_DRAFT)
                pipe.execute()
            except redis.WatchError as e:
                raise refused(N_("the draft changed meanwhile: review it again")) from e
        values = {"number": number, "note": note_of(note, rollback_of), "name": approved_by}
        self.audit(author, kind, Message(
            N_("version %(number)s: %(note)s (approved by %(name)s)") if approved_by
            else N_("version %(number)s: %(note)s"), values))
        return number

    # --- audit --------------------------------------------------------------------

    def audit(self, who: str, action: str, detail: Message | str) -> None:
        audit(self.r, who, action, detail)


def audit(r: redis.Redis, who: str, action: str, detail: Message | str = "") -> None:
    """Record who did what (publish, rollback, user change, login...). Kept for ever.
    `detail` in English (what scripts and the data CSV read) and, when it is a message,
    also as its template and values, so that staff read it in their language."""
    entry = {"at": now_text(), "who": who, "action": action, "detail": str(detail)}
    if isinstance(detail, Message):
        entry["detail_message"] = json.dumps(detail.to_json(), ensure_ascii=False)
    r.xadd(store.AUDIT, entry)


def audit_detail(entry: dict) -> Message | str:
    """An audit entry's detail to show: its message, or the English text an entry
    written before messages were kept holds (as it is)."""
    if entry.get("detail_message"):
        return Message.from_json(json.loads(entry["detail_message"]))
    return entry.get("detail", "")


class LiveMenu:
    """The menu a web process serves: the newest published version, checked at most once
    a second, parsed once per version; the last good one if Redis is unreachable."""

    def __init__(self, shipped: Shipped, r: redis.Redis | None, fallback: Menu):
        self.shipped = shipped
        self.r = r
        self.menu, self.version = fallback, 0
        self._checked_at = 0.0
        self._lock = threading.Lock()

    def get(self) -> Menu:
        if self.r is None or time.monotonic() - self._checked_at < CHECK_EVERY:
            return self.menu
        with self._lock:
            if time.monotonic() - self._checked_at >= CHECK_EVERY:
                self._checked_at = time.monotonic()
                self._refresh()
        return self.menu

    def _refresh(self) -> None:
        try:
            latest = int(self.r.get(store.CONFIG_VERSION) or 0)
            if latest == self.version:
                return
            raw = self.r.hget(store.config_version_key(latest), "doc") if latest else "{}"
            self.menu, self.version = build(self.shipped, json.loads(raw or "{}")), latest
            log.info("now serving configuration version %d", latest)
        except redis.RedisError as e:
            log.warning("cannot check the configuration version (%s); keeping %d",
                        type(e).__name__, self.version)
        except ConfigError as e:
            log.error("configuration version %s does not load; keeping %d: %s",
                      latest, self.version, e)
            self.version = latest  # do not retry it every second
