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
DRAFTS_KEPT = 100  # the draft's latest revisions kept: for "what changed since"
SET_ASIDE_KEPT = 20  # the latest drafts a rollback replaced or an admin discarded
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
    DRAFT_RESTORED = "draft restored"  # detail: whose draft it was
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


# The mail every other administrator gets when a change waits for approval (sent by the
# worker: workers.alerts.mail_approval_request), in each one's language.
APPROVAL_MAIL_SUBJECT = N_("Ruta: a change waits for your approval")
APPROVAL_MAIL = N_("%(name)s asked to publish a change to what callers hear: “%(note)s”. "
                   "It needs the approval of another administrator. Review it at %(link)s")


class PublishError(Exception):
    """The draft cannot go live; `problems` says why (a ConfigError line, or a Message)."""

    def __init__(self, problems: list[str | Message]):
        self.problems = problems
        super().__init__("; ".join(map(str, problems)))


def refused(template: str, **values) -> PublishError:
    return PublishError([Message(template, values)])


class DraftMoved(PublishError):
    """A change made on a draft that has moved since (another admin saved, published,
    discarded...): nothing was changed. `seen_doc`, the document the admin's page showed
    (None if not known), `now_doc`, the one there now, `by`, who moved it."""

    def __init__(self, versions: ConfigVersions, seen: str):
        self.seen_doc = versions.document_at(seen)
        self.now_doc = versions.draft_or_live()
        self.by = versions.changed_by(seen)
        super().__init__([Message(N_(
            "the draft changed since you looked at it: review it again"))])


class DraftInTheWay(Exception):
    """A rollback would replace the draft: the admin must say so first."""

    def __init__(self, draft: dict):
        self.draft = draft
        super().__init__("a rollback would replace the draft")


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

    def revision(self) -> str:
        """Names the draft as it is now, "<live version>.<draft revision>": every form that
        changes the draft sends it back, and a change made on a draft (or a live version)
        that has moved since is refused (DraftMoved), so nobody overwrites another's work."""
        return _revision_of(self.r)

    def document_at(self, seen: str) -> dict | None:
        """The document an admin looked at when the page said `seen` (ivr.versions
        .revision): that revision's draft, or the live version's if there was none; None if
        it is not known (an odd token, or a revision trimmed long ago)."""
        try:
            version, revision = (int(part) for part in seen.split("."))
            found, draft = self._draft_at(revision)
            if not found:
                return None
            return draft["doc"] if draft else self.document(version)
        except (ValueError, KeyError):
            return None

    def changed_by(self, seen: str) -> list[str]:
        """Who changed the draft or published since the page said `seen`."""
        try:
            version, revision = (int(part) for part in seen.split("."))
        except ValueError:
            return []
        revision = min(max(revision, 0), int(self.r.get(store.CONFIG_DRAFT_REVISION) or 0))
        names = {fields.get("who", "") for _, fields in
                 self.r.xrange(store.CONFIG_DRAFTS_KEPT, min=f"{revision + 1}-0")}
        names |= {v.author for v in self.history() if v.number > version}
        return sorted(n for n in names if n)

    def _draft_at(self, revision: int) -> tuple[bool, dict | None]:
        """(known, the draft after change number `revision`, None: no draft then)."""
        if revision == 0:
            return True, None
        if not 0 < revision <= int(self.r.get(store.CONFIG_DRAFT_REVISION) or 0):
            return False, None  # a revision no change made (a form's odd value)
        entries = self.r.xrange(store.CONFIG_DRAFTS_KEPT, min=f"{revision}-0",
                                max=f"{revision}-0")
        if not entries:
            return False, None
        raw = entries[0][1].get("draft")
        return True, (json.loads(raw) if raw else None)

    def set_aside(self) -> list[dict]:
        """Drafts a rollback request replaced or an admin discarded, newest first, each
        {"revision", "who", "at", "action", "draft"}: kept, to be brought back."""
        return [json.loads(raw) for raw in self.r.lrange(store.CONFIG_DRAFTS_SET_ASIDE, 0, -1)]

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

    def check(self, doc: dict, speech: bool = False) -> tuple[Menu | None, list[str]]:
        """The menu this document gives, or the problems that stop it going live; its
        speech models trained only with `speech` (menu.build: seconds of work), which a
        publish asks for so that they are kept on disk for the web processes that load
        the version."""
        # Only a real true/false: the loader's bool() would read "false" as true.
        odd = [Problem(f"hotline {hid}, show_caller", Message(N_("must be yes or no")),
                       f"hotline:{hid}:show_caller")
               for hid, fields in (doc.get("hotlines") or {}).items()
               if not isinstance(fields.get("show_caller", False), bool)]
        try:
            menu = build(self.shipped, doc, strict=True, speech=speech)
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

    def save_draft(self, doc: dict, author: str, seen: str | None = None) -> None:
        """Keep the edits (even broken ones: they are shown with their problems), if the
        draft is still the one `seen` names (None: whatever it is now)."""
        current = self.draft()
        draft = {"doc": normalize(doc), "base": current["base"] if current else self.latest(),
                 "author": author, "at": now_text()}
        self._change_draft(seen, draft, author, AuditAction.DRAFT_SAVED)
        self.audit(author, AuditAction.DRAFT_SAVED, "")

    def discard_draft(self, author: str, seen: str | None = None) -> None:
        """Drop the draft `seen` names; it stays among the drafts set aside."""
        if self.draft() is None:
            raise refused(N_("there is no draft to discard"))
        self._change_draft(seen, None, author, AuditAction.DRAFT_DISCARDED)
        self.audit(author, AuditAction.DRAFT_DISCARDED, "")

    def restore(self, revision: int, author: str, seen: str | None = None) -> None:
        """Bring back a draft that was set aside, when there is no draft now."""
        if self.draft() is not None:
            raise refused(N_("publish or discard the current draft first"))
        draft = next((kept["draft"] for kept in self.set_aside()
                      if kept["revision"] == revision), None)
        if draft is None:
            raise refused(N_("that draft is no longer kept"))
        self._change_draft(seen, {"doc": draft["doc"], "base": self.latest(),
                                  "author": author, "at": now_text()},
                           author, AuditAction.DRAFT_RESTORED)
        self.audit(author, AuditAction.DRAFT_RESTORED, draft.get("author", ""))

    def _change_draft(self, seen: str | None, draft: dict | None, who: str,
                      action: str) -> None:
        """Set the draft (None: remove it) only if it is still the one `seen` names,
        atomically: WATCH the draft, its revision and the live version, then MULTI. A
        draft a rollback request replaces or a discard drops is set aside (`set_aside`)."""
        with self.r.pipeline() as pipe:
            try:
                pipe.watch(store.CONFIG_DRAFT, store.CONFIG_DRAFT_REVISION,
                           store.CONFIG_VERSION)
                now = _revision_of(pipe)
                if seen is not None and seen != now:
                    raise DraftMoved(self, seen)
                revision = int(now.split(".")[1]) + 1
                old = pipe.get(store.CONFIG_DRAFT)
                pipe.multi()
                if draft is None:
                    pipe.delete(store.CONFIG_DRAFT)
                else:
                    pipe.set(store.CONFIG_DRAFT, json.dumps(draft, ensure_ascii=False))
                self._kept(pipe, revision, draft, who, action)
                if old and (draft is None or action == AuditAction.ROLLBACK_REQUESTED):
                    pipe.lpush(store.CONFIG_DRAFTS_SET_ASIDE, json.dumps({
                        "revision": revision - 1, "who": who, "at": now_text(),
                        "action": action, "draft": json.loads(old)}, ensure_ascii=False))
                    pipe.ltrim(store.CONFIG_DRAFTS_SET_ASIDE, 0, SET_ASIDE_KEPT - 1)
                pipe.execute()
            except redis.WatchError as e:
                raise DraftMoved(self, seen or now) from e

    @staticmethod
    def _kept(pipe, revision: int, draft: dict | None, who: str, action: str) -> None:
        """Queue the draft after change `revision` into the kept revisions."""
        pipe.set(store.CONFIG_DRAFT_REVISION, revision)
        pipe.xadd(store.CONFIG_DRAFTS_KEPT, {
            "draft": json.dumps(draft, ensure_ascii=False) if draft else "", "who": who,
            "at": now_text(), "action": action,
        }, id=f"{revision}-0", maxlen=DRAFTS_KEPT, approximate=False)

    def publish(self, author: str, note: str, seen: str | None = None) -> int | None:
        """Publish the draft: returns the new version, or None when it now waits for a
        second admin's approval (two-person rule). Raises PublishError if broken, and
        DraftMoved if the draft is no longer the one `seen` names (None: the one now)."""
        note = (note or "").strip()
        if not note:
            raise refused(N_("a short note saying what changed is required"))
        draft = self.draft()
        if draft is None:
            raise refused(N_("there is no draft to publish"))
        seen = self._as_seen(seen)
        _, problems = self.check(draft["doc"], speech=True)
        if problems:
            raise PublishError(problems)
        why = self.approval_reasons(draft["doc"])
        if self.two_person_rule or why:
            draft |= {"pending_note": note, "pending_by": author,
                      "pending_why": [m.to_json() for m in why]}
            self._change_draft(seen, draft, author, AuditAction.PUBLISH_REQUESTED)
            self.audit(author, AuditAction.PUBLISH_REQUESTED, Message.joined([note, *why]))
            return None
        return self._new_version(draft["doc"], author, note, AuditAction.PUBLISH, seen=seen)

    def approve(self, approver: str, seen: str | None = None) -> int:
        """A second admin approves the pending draft (the one `seen`), which goes live."""
        draft = self.draft()
        if not draft or not draft.get("pending_by"):
            raise refused(N_("no publish is waiting for approval"))
        seen = self._as_seen(seen)
        draft = self.draft()
        if draft["pending_by"] == approver:
            raise refused(N_("the two-person rule needs another admin to approve"))
        _, problems = self.check(draft["doc"], speech=True)
        if problems:
            raise PublishError(problems)
        return self._new_version(draft["doc"], draft["pending_by"], draft["pending_note"],
                                 AuditAction.PUBLISH, seen=seen, approved_by=approver,
                                 rollback_of=draft.get("pending_rollback_of"))

    def rollback(self, number: int, author: str, note: str, seen: str | None = None,
                 replace_draft: bool = False) -> int | None:
        """Publish version `number`'s document again, as a new version (with the
        two-person rule: put it in the draft, waiting for a second admin; a draft there
        is replaced only when `replace_draft` says the admin agreed, else DraftInTheWay,
        and it stays among the drafts set aside)."""
        note = (note or "").strip()
        if not note:
            raise refused(N_("a short note saying why is required"))
        try:
            doc = self.document(number)
        except KeyError as e:
            raise refused(N_("there is no version %(number)s"), number=number) from e
        _, problems = self.check(doc, speech=True)
        if problems:  # the shipped files changed since: that old version no longer loads
            raise PublishError(problems)
        why = self.approval_reasons(doc)
        if self.two_person_rule or why:
            seen = self._as_seen(seen)
            if self.draft() is not None and not replace_draft:
                raise DraftInTheWay(self.draft())
            draft = {"doc": normalize(doc), "base": self.latest(), "author": author,
                     "at": now_text(), "pending_note": note, "pending_rollback_of": number,
                     "pending_by": author, "pending_why": [m.to_json() for m in why]}
            self._change_draft(seen, draft, author, AuditAction.ROLLBACK_REQUESTED)
            self.audit(author, AuditAction.ROLLBACK_REQUESTED,
                       Message.joined([note_of(note, number), *why]))
            return None
        return self._new_version(doc, author, note, AuditAction.ROLLBACK, rollback_of=number)

    def _as_seen(self, seen: str | None) -> str:
        """The revision a change is made on: the one the form named, checked now (and
        again, atomically, when the change is written)."""
        if seen is None:
            return self.revision()
        if seen != self.revision():
            raise DraftMoved(self, seen)
        return seen

    def _new_version(self, doc, author, note, kind, seen: str | None = None,
                     approved_by="", rollback_of: int | None = None) -> int:
        """Store `doc` as the next version; with `seen` (a publish, an approval), only if
        the draft is still that one, which it then clears."""
        number = self.r.incr(store.CONFIG_VERSION_SEQ)
        with self.r.pipeline() as pipe:
            try:
                if seen is not None:  # the draft we checked must be the one we clear
                    pipe.watch(store.CONFIG_DRAFT, store.CONFIG_DRAFT_REVISION,
                               store.CONFIG_VERSION)
                    if _revision_of(pipe) != seen:
                        raise DraftMoved(self, seen)
                pipe.multi()
                pipe.hset(store.config_version_key(number), mapping={
                    "doc": json.dumps(normalize(doc), ensure_ascii=False), "author": author,
                    "at": now_text(), "note": note, "kind": kind, "approved_by": approved_by,
                    **({"rollback_of": rollback_of} if rollback_of is not None else {}),
                })
                # Web processes watch this counter; it moves only once the version is
                # stored, and only forward (two publishing at once: the higher wins).
                pipe.eval(RAISE_TO, 1, store.CONFIG_VERSION, number)
                if seen is not None:
                    pipe.delete(store.CONFIG_DRAFT)
                    self._kept(pipe, int(seen.split(".")[1]) + 1, None,
                               approved_by or author, kind)
                pipe.execute()
            except redis.WatchError as e:
                raise DraftMoved(self, seen) from e
        values = {"number": number, "note": note_of(note, rollback_of), "name": approved_by}
        self.audit(author, kind, Message(
            N_("version %(number)s: %(note)s (approved by %(name)s)") if approved_by
            else N_("version %(number)s: %(note)s"), values))
        return number

    # --- audit --------------------------------------------------------------------

    def audit(self, who: str, action: str, detail: Message | str) -> None:
        audit(self.r, who, action, detail)


def _revision_of(r) -> str:
    """"<live version>.<draft revision>", read through `r` (a client, or a pipeline
    that is watching the keys)."""
    version = int(r.get(store.CONFIG_VERSION) or 0)
    return f"{version}.{int(r.get(store.CONFIG_DRAFT_REVISION) or 0)}"


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
    a second, parsed once per version; the last good one if Redis is unreachable.

    A version with speech models to train (new examples: seconds of work) is built by a
    thread of its own (one build at a time, the newest version seen next) while callers
    keep the version they have: a webhook must not wait for it, nor a sync worker miss
    gunicorn's timeout and be killed with a caller on the line. The version live when the
    process starts is built at once, in its first request: a process must not serve the
    shipped menu when another is live (a line's number may have been mended). Without
    `speech` (the worker) a build takes milliseconds and is always done at once."""

    def __init__(self, shipped: Shipped, r: redis.Redis | None, fallback: Menu,
                 speech: bool = True):
        self.shipped, self.speech = shipped, speech  # speech: see menu.build
        self.r = r
        self.menu, self.version = fallback, 0
        self._wanted = 0  # the newest version seen: being built, served, or failed
        self._wanted_doc: str | None = "{}"  # its stored document
        self._building = False  # a builder thread is at work
        self._started = False  # the version counter read once
        self._checked_at = 0.0
        self._lock = threading.RLock()  # a build without speech serves under get's hold

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
            if latest == self._wanted:
                self._started = True
                return
            raw = self.r.hget(store.config_version_key(latest), "doc") if latest else "{}"
        except redis.RedisError as e:
            log.warning("cannot check the configuration version (%s); keeping %d",
                        type(e).__name__, self.version)
            return
        self._wanted, self._wanted_doc = latest, raw
        started, self._started = self._started, True
        if latest == self.version:  # back to the version served: a build under way is dropped
            return
        if not (self.speech and started):
            self._load(latest, raw)
        elif not self._building:  # one build at a time, however fast versions come
            self._building = True
            threading.Thread(target=self._build_wanted, daemon=True,
                             name="menu-builder").start()

    def _build_wanted(self) -> None:
        """Build the newest version seen, then the next if another came meanwhile, until
        the newest is served or has failed."""
        tried = None
        while True:
            with self._lock:
                latest, raw = self._wanted, self._wanted_doc
                if latest in (self.version, tried):
                    self._building = False
                    return
            tried = latest
            self._load(latest, raw)

    def _load(self, latest: int, raw: str | None) -> None:
        """Build version `latest` and serve it, unless a newer one was seen meanwhile
        (then it is served only until that one is ready: it is still newer than what
        callers had)."""
        menu = None
        try:
            menu = build(self.shipped, json.loads(raw or "{}"), speech=self.speech)
        except ConfigError as e:
            log.error("configuration version %s does not load; keeping %d: %s",
                      latest, self.version, e)
        except Exception:  # whatever it is, callers keep the version they have
            log.exception("configuration version %s could not be built; keeping %d",
                          latest, self.version)
        # One that fails stays the newest seen: it is not tried again every second.
        with self._lock:
            if menu is not None and (latest == self._wanted
                                     or self.version < latest < self._wanted):
                self.menu, self.version = menu, latest
                log.info("now serving configuration version %d", latest)
