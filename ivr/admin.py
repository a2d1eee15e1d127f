"""Administrators: change what callers hear and where they go, safely, without a deploy.

Edits go to a draft (ivr.versions); publishing checks the whole configuration exactly as
the loader does and refuses a broken draft with each problem next to its field. Every
page here needs the admin role; every form carries a CSRF token (Flask-WTF, app-wide).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections import OrderedDict
from datetime import datetime
from urllib.parse import parse_qs, urlsplit

import redis
from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from markupsafe import Markup, escape
from rq import Queue, Retry
from twilio.twiml.voice_response import VoiceResponse

from ivr import exports, opening_hours, services, settings, store, twiml
from ivr.flow import question
from ivr.i18n import (
    audit_action,
    audit_detail,
    decimal,
    moment,
    page_language,
    question_name,
    security_event,
    shown,
)
from ivr.menu import (
    HOTLINE_FIELDS,
    PROMPT_PLACEHOLDERS,
    PROMPTS_BY_PART,
    SCREEN_PROMPT,
    ConfigError,
    build,
    offering_sentence,
    sentences,
    spoken_number,
    spoken_paths,
    word_count,
)
from ivr.message import Message
from ivr.recordings import MAX_BYTES, MAX_SECONDS, Recording, RecordingRefused, checked
from ivr.reports import csv_response, export_form
from ivr.security import current_staff, staff_required
from ivr.services import current_menu
from ivr.sessions import SecurityEvent, log_security_event
from ivr.simulator import DIAL_RESULTS, MOVE_KINDS, Move, SimulatedCall, flask_transport
from ivr.speech import best_match
from ivr.versions import (
    ConfigVersions,
    DraftInTheWay,
    DraftMoved,
    PublishError,
    pending_note,
    text_language,
)
from ivr.vocabulary import BOGOTA, DialStatus
from ivr.voice import AUDIO_PATH

bp = Blueprint("admin", __name__, url_prefix="/admin")
PREVIEW_TOKEN = "preview-only-token"  # signs the preview app's requests; never served
MAX_TRY_MOVES = 30
SECURITY_EVENTS_SHOWN = 200  # the audit page's latest logins, two-step changes, ended sessions
FAILED_LOGINS_SHOWN = 200  # and, in a section of their own, its latest failed logins
# The audit page's CSV exports: ?log= names a log, the audit log without it.
LOGS = {"security": (store.SECURITY_LOG, "ruta-security-log"),
        "failed-logins": (store.FAILED_LOGINS, "ruta-failed-logins")}
APPROVAL_MAIL_JOB = "workers.alerts.mail_approval_request"  # by name (ivr.events' rule)


@bp.before_request
@staff_required("admin")
def admins_only():
    """Every page of this blueprint is for admins (supervisors get 403), and, where
    RUTA_ADMIN_TOTP requires it (production's default), for admins who sign in with a
    code: one without is sent to set it up first."""
    if settings.admin_totp_required(current_app.config) and not current_staff().two_factor:
        flash(_("Administrators sign in with a code from an app on their phone: set up "
                "two-step sign-in to open the administration pages."), "error")
        return redirect(url_for("reports.two_factor_setup"))


def versions() -> ConfigVersions:
    r = services.of().store.r
    return ConfigVersions(r, services.of().shipped,
                          settings.two_person_rule(current_app.config))


def _render(template: str, **context):
    v = versions()
    return render_template(template, staff=current_staff(), live=v.version(v.latest()),
                           live_number=v.latest(), draft=v.draft(),
                           revision=v.revision(),
                           two_person_rule=v.two_person_rule,
                           # Said on every admin page: production's default is on.
                           two_person_rule_turned_off=not v.two_person_rule
                           and current_app.config["RUTA_ENV"] == "production",
                           content_language=text_language, pending_note=pending_note,
                           **context)


@bp.app_context_processor
def approval_mark():
    """For the navigation of every staff page: does a publish wait for this admin?"""
    def awaiting_your_approval() -> bool:
        staff = current_staff()
        if not staff or not staff.is_admin or services.of().store is None:
            return False
        try:
            draft = versions().draft()
        except redis.RedisError:
            return False
        return bool(draft and draft.get("pending_by") and draft["pending_by"] != staff.name)
    return {"awaiting_your_approval": awaiting_your_approval}


def word_diff(before: str, after: str) -> tuple[Markup, Markup]:
    """Two texts with the words that differ marked: deleted words in <del> in the first,
    inserted ones in <ins> in the second (difflib, word by word, spaces kept)."""
    # Each word with the spaces after it; compared without them, so that a run of changed
    # words is one mark, and the spaces a text had are kept.
    old, new = re.findall(r"\s*\S+\s*|\s+", before), re.findall(r"\s*\S+\s*|\s+", after)
    left, right = [], []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(
            None, [w.strip() for w in old], [w.strip() for w in new],
            autojunk=False).get_opcodes():
        gone, came = "".join(old[i1:i2]), "".join(new[j1:j2])
        if op == "equal":
            left.append(escape(gone))
            right.append(escape(came))
            continue
        for text, marked, tag in ((gone, left, "del"), (came, right, "ins")):
            if text.strip():  # the mark around the words, the spaces outside it
                start, end = len(text) - len(text.lstrip()), len(text.rstrip())
                marked.append(Markup("{}<{}>{}</{}>{}").format(
                    text[:start], Markup(tag), text[start:end], Markup(tag), text[end:]))
    return Markup("").join(left), Markup("").join(right)


bp.add_app_template_global(word_diff)


def _moved(e: DraftMoved, attempted: dict | None = None, back: str = "admin.index"):
    """The 409 page: what other admins changed since this admin's page was made, and the
    change this admin tried (kept on the page, to make again), nothing overwritten."""
    v = versions()
    theirs = v.changes(e.seen_doc, e.now_doc, page_language()) if e.seen_doc is not None \
        else v.changes(v.document(v.latest()), e.now_doc, page_language())
    yours = (v.changes(e.seen_doc, attempted, page_language())
             if attempted is not None and e.seen_doc is not None else [])
    return _render("admin/moved.html", theirs=theirs, yours=yours, by=e.by,
                   back=url_for(back)), 409


def _pending_why(draft: dict | None) -> list[Message]:
    """Why the pending draft waits for a second admin (besides the two-person rule)."""
    return [Message.from_json(w) for w in (draft or {}).get("pending_why") or []]


# The edit page of each kind of field (ivr.menu.Problem.field: "prompt:es:greeting"...).
FIELD_PAGES = {"prompt": "admin.prompts", "language": "admin.prompts",
               "hotline": "admin.hotlines", "voice": "admin.hotlines",
               "examples": "admin.examples"}


def _summary(problems: list[str], page: str) -> list[tuple[str, str]]:
    """(link to the field, the problem in the reader's words) for every problem: a field
    on `page` by its #id, one on another page by that page's address; a path over the
    budget to the prompts page's budget table."""
    out = []
    for problem in problems:
        field = getattr(problem, "field", "")
        kind, _colon, rest = field.partition(":")
        target = ("budget" if kind == "language"
                  else f"hotline-{rest}" if kind == "hotline" and ":" not in rest else field)
        on = FIELD_PAGES.get(kind)
        href = "" if not on else f"#{target}" if on == page else f"{url_for(on)}#{target}"
        out.append((href, shown(problem)))
    return out


def _problems_by_field(problems: list[str]) -> dict[str, list[str]]:
    """Each problem under the form field it belongs to (ivr.menu.Problem.field): shown
    next to it; "" for the rest, shown at the top of the page."""
    grouped: dict[str, list[str]] = {}
    for problem in problems:
        grouped.setdefault(getattr(problem, "field", ""), []).append(problem)
    return grouped


def _save(v: ConfigVersions, doc: dict, page: str):
    """Save an edit page's form into the draft the page was made on (its hidden "draft"
    field), then show the page again: its problems first, if it has any."""
    try:
        v.save_draft(doc, current_staff().name, request.form.get("draft", ""))
    except DraftMoved as e:
        return _moved(e, doc, back=page)
    if v.check(doc)[1]:
        flash(_("Draft saved, but it cannot be published yet: the problems are listed "
                "below."), "error")
    else:
        flash(_("Draft saved. It is not live until you publish it."))
    return redirect(url_for(page))


# --- overview, prompts, hotlines -----------------------------------------------------


@bp.get("")
def index():
    """Where things stand: the live version, the draft, what to do next."""
    v = versions()
    draft = v.draft()
    problems = v.check(draft["doc"])[1] if draft else []
    changes = (v.changes(v.document(v.latest()), draft["doc"], page_language())
               if draft else [])
    # Said before anyone presses the button: why this draft needs a second admin.
    why = (_pending_why(draft) if draft.get("pending_by")
           else v.approval_reasons(draft["doc"])) if draft else []
    return _render("admin/index.html", problems=problems, changes=changes,
                   approval_reasons=why or [])


@bp.route("/prompts", methods=["GET", "POST"])
def prompts():
    """Every prompt in the order a caller meets them, per language side by side, with
    when it is heard, the placeholders it may use, the shipped text to compare, and the
    spoken seconds of every path."""
    v = versions()
    doc = v.draft_or_live()
    shipped = v.shipped.prompts
    languages = list(shipped)
    keys = sorted({k for texts in shipped.values() for k in texts})
    if request.method == "POST":
        return _save(v, {**doc, "prompts": _prompts_from_form(shipped, keys)},
                     "admin.prompts")
    menu, problems = v.check(doc)
    current = {lang: {**shipped[lang], **(doc.get("prompts", {}).get(lang) or {})}
               for lang in languages}
    return _render("admin/prompts.html", languages=languages,
                   sections=_prompt_sections(current_menu(), keys), shipped=shipped,
                   current=current, problems=_problems_by_field(problems),
                   summary=_summary(problems, "admin.prompts"),
                   placeholders={k: sorted(PROMPT_PLACEHOLDERS.get(k, ())) for k in keys},
                   budget=_budget(v, doc),
                   previews=_previews(menu, current) if menu else {})


@bp.post("/prompts/budget")
def prompts_budget():
    """The spoken seconds of every path with the prompts as typed, unsaved: what the
    prompts page's small script (static/budget.js) shows while an admin types."""
    v = versions()
    doc = {**v.draft_or_live(), "prompts": _prompts_from_form(
        v.shipped.prompts, sorted({k for t in v.shipped.prompts.values() for k in t}))}
    rows = _budget(v, doc)
    return jsonify({"paths": None if rows is None else [
        {"path": row["path"], "seconds": row["shown"], "over": row["over"]}
        for row in rows]})


def _prompts_from_form(shipped: dict[str, dict[str, str]], keys: list[str]) -> dict:
    """The prompts the form sets apart from the shipped text, by language."""
    texts: dict[str, dict[str, str]] = {lang: {} for lang in shipped}
    for lang in shipped:
        for key in keys:
            value = request.form.get(f"prompt:{lang}:{key}")
            if value is None:
                continue
            value = value.replace("\r\n", "\n").strip()
            if value != shipped[lang].get(key, "").strip():
                texts[lang][key] = value
    return texts


def _budget(v: ConfigVersions, doc: dict) -> list[dict] | None:
    """Every path to a line under `doc` with its spoken seconds, over the budget or
    not (None: the draft has problems that stop the menu being built at all)."""
    try:
        menu = build(v.shipped, doc)  # not strict: over the budget is shown
    except ConfigError:
        return None
    return [{"path": path.label, "language": path.language, "keys": " ".join(path.keys),
             "hotline": path.hotline, "seconds": path.seconds, "connected": path.connected,
             "shown": decimal(path.seconds, 1),
             "over": path.seconds > menu.budget_seconds, "budget": menu.budget_seconds}
            for path in spoken_paths(menu)]


def _prompt_sections(menu, keys: list[str]) -> list[tuple[str, list[str]]]:
    """(heading, prompt keys) in the order a caller meets them: the greeting, each
    question (the main menu first), what helps at any question, the transfer, failures,
    the numbers to write down, the goodbye; what a screening line hears; the rest."""
    questions, stack = [], [menu.start]
    while stack:  # the questions from the first one on, as a caller goes deeper
        nid = stack.pop(0)
        if nid in questions or nid not in menu.nodes:
            continue
        questions.append(nid)
        stack += [o.next for o in menu.nodes[nid].options if o.next]
    part = PROMPTS_BY_PART
    greetings = [menu.nodes[n].greeting for n in questions if menu.nodes[n].greeting]
    sections = [(_("The start of the call"),
                 [*dict.fromkeys([*part["start"][:1], *greetings, *part["start"][1:]])])]
    sections += [(_("Question: %(question)s", question=question_name(n)),
                  [menu.nodes[n].prompt]) for n in questions]
    sections += [
        (_("At any question, when the caller is not understood"), part["not_understood"]),
        (_("The transfer"), part["transfer"]),
        (_("When a line or Ruta fails"), part["failure"]),
        (_("Numbers to write down"), part["numbers"]),
        (_("Goodbye"), part["goodbye"]),
        (_("To a screening line, not heard by callers"),
         [SCREEN_PROMPT, *[k for k in keys if k.startswith("language_")
                           and k not in part["start"]],
          *[k for k in keys if k.startswith("about_")]]),
    ]
    placed: set[str] = set()
    out = []
    for title, group in [*sections, (_("Other prompts"), keys)]:
        group = [k for k in group if k in keys and k not in placed]  # each once, first place
        placed.update(group)
        if group:
            out.append((title, group))
    return out


def _previews(menu, current) -> dict[str, str]:
    """The TwiML a caller would get for each prompt (a question: its whole <Gather>)."""
    out = {}
    asking = {n.prompt: n.id for n in menu.nodes.values()}
    for lang, texts in current.items():
        voice = menu.voices[lang]
        for key, text in texts.items():
            if key in asking:
                step = question(menu, lang, asking[key])
                out[f"{lang}:{key}"] = twiml.render(step, lambda s: "/voice/menu?…")
            else:
                response = VoiceResponse()
                recording = menu.recording(lang, key)
                if recording is not None:  # what Twilio is told to play, text aside
                    response.play(AUDIO_PATH + recording.name)
                else:
                    response.say(text, voice=voice.voice, language=voice.say_language)
                out[f"{lang}:{key}"] = str(response)
    return out


@bp.route("/hotlines", methods=["GET", "POST"])
def hotlines():
    """The hotline directory (dial targets, number said, hours, fallback, whether the
    line gets callers' real numbers) and voices."""
    v = versions()
    doc = v.draft_or_live()
    shipped = v.shipped
    min_answered = shipped.menu.get("min_answered_seconds", 8)  # unless a line says
    if request.method == "POST":
        lines: dict[str, dict] = {}
        for hid, fields in shipped.hotlines.items():
            edited = {
                "dial": [t.strip() for t in
                         re.split(r"[\n,]", request.form.get(f"hotline:{hid}:dial", ""))
                         if t.strip()],
                "say": request.form.get(f"hotline:{hid}:say", "").strip(),
                "hours": opening_hours.stored(request.form.get(f"hotline:{hid}:hours", "")),
                "fallback": request.form.get(f"hotline:{hid}:fallback", "").strip(),
                "show_caller": _show_caller_from_form(
                    request.form.get(f"hotline:{hid}:show_caller"),
                    (doc.get("hotlines", {}).get(hid) or {}).get(
                        "show_caller", fields.get("show_caller", False))),
                "screen": request.form.get(f"hotline:{hid}:screen") == "yes",
                "min_answered_seconds": _seconds_from_form(
                    request.form.get(f"hotline:{hid}:min_answered_seconds", ""),
                    min_answered),
            }
            original = {"dial": fields.get("dial", []), "say": fields.get("say", ""),
                        "hours": opening_hours.stored(fields.get("hours")),
                        "fallback": fields.get("fallback", ""),
                        "show_caller": fields.get("show_caller", False),
                        "screen": fields.get("screen", False),
                        "min_answered_seconds": fields.get("min_answered_seconds",
                                                           min_answered)}
            changed = {k: val for k, val in edited.items() if val != original[k]}
            if changed:
                lines[hid] = changed
        voices: dict[str, dict] = {}
        for lang, fields in (shipped.menu.get("voices") or {}).items():
            edited = {name: request.form.get(f"voice:{lang}:{name}", "").strip()
                      for name in ("voice", "say_language", "speech_language")}
            changed = {k: val for k, val in edited.items() if val != fields.get(k, "")}
            if changed:
                voices[lang] = changed
        return _save(v, {**doc, "hotlines": lines, "voices": voices}, "admin.hotlines")
    problems = v.check(doc)[1]
    current = {hid: {"min_answered_seconds": min_answered, **fields,
                     **(doc.get("hotlines", {}).get(hid) or {})}
               for hid, fields in shipped.hotlines.items()}
    voices = {lang: {**fields, **(doc.get("voices", {}).get(lang) or {})}
              for lang, fields in (shipped.menu.get("voices") or {}).items()}
    staff_lang = page_language()
    return _render("admin/hotlines.html", current=current, shipped=shipped.hotlines,
                   voices=voices, fields=HOTLINE_FIELDS,
                   hours_text=lambda hours: opening_hours.shown(hours, staff_lang),
                   problems=_problems_by_field(problems),
                   summary=_summary(problems, "admin.hotlines"))


@bp.route("/examples", methods=["GET", "POST"])
def examples():
    """How callers say each option, one phrase a line per language: the speech matcher
    learns from them (ivr/speech.py). Versioned, published and rolled back like prompts."""
    v = versions()
    doc = v.draft_or_live()
    shipped = v.shipped
    menu = current_menu()
    groups = _example_groups(menu)
    if request.method == "POST":
        # Each option and language is its own form (security.LARGER_BODIES): the fields
        # sent replace theirs, the draft keeps every other change.
        changed = {name: dict(langs) for name, langs in doc.get("examples", {}).items()}
        for name, *_option in groups:
            for lang in menu.languages:
                raw = request.form.get(f"examples:{name}:{lang}")
                if raw is None:
                    continue
                phrases = [p.strip() for p in raw.replace("\r\n", "\n").split("\n")
                           if p.strip()]
                if phrases != list((shipped.examples.get(name) or {}).get(lang, [])):
                    changed.setdefault(name, {})[lang] = phrases
                else:
                    changed.get(name, {}).pop(lang, None)
        changed = {name: langs for name, langs in changed.items() if langs}
        return _save(v, {**doc, "examples": changed}, "admin.examples")
    problems = v.check(doc)[1]
    current = {name: {lang: list((doc.get("examples", {}).get(name) or {}).get(
        lang, (shipped.examples.get(name) or {}).get(lang, []))) for lang in menu.languages}
        for name, *_option in groups}
    return _render("admin/examples.html", groups=groups, languages=menu.languages,
                   current=current, problems=_problems_by_field(problems),
                   summary=_summary(problems, "admin.examples"))


@bp.route("/recordings", methods=["GET", "POST"])
def recordings():
    """A recording for any prompt in any language, played instead of the voice (its
    text stays the transcript); versioned, published and rolled back with the text.
    Each prompt and language is a form of its own: one upload, or one removal."""
    v = versions()
    doc = v.draft_or_live()
    shipped = v.shipped
    languages = list(shipped.prompts)
    keys = sorted({k for texts in shipped.prompts.values() for k in texts})
    if request.method == "POST":
        lang, key = request.form.get("language", ""), request.form.get("prompt", "")
        if lang not in languages or key not in keys:
            abort(400)
        found = {la: dict(rs) for la, rs in (doc.get("recordings") or {}).items()}
        if request.form.get("remove"):
            # A shipped recording is taken away by a None; an uploaded one is forgotten.
            if key in shipped.recordings.get(lang, {}):
                found.setdefault(lang, {})[key] = None
            else:
                found.get(lang, {}).pop(key, None)
            done = _("Recording removed from the draft.")
        else:
            upload = request.files.get("recording")
            data = upload.read() if upload else b""  # at most the body's limit
            try:
                recording = checked(data, upload.filename if upload else "")
            except RecordingRefused as e:
                flash(_("The recording was not kept: %(why)s.", why=shown(e.message)),
                      "error")
                return redirect(url_for("admin.recordings", _anchor=f"recording-{key}"))
            store.keep_audio(v.r, recording.sha256, data)
            found.setdefault(lang, {})[key] = recording.to_json()
            done = _("Recording of %(seconds)s s kept in the draft. It is not live until "
                     "you publish it.", seconds=decimal(recording.seconds, 1))
        changed = {**doc, "recordings": found}
        try:
            v.save_draft(changed, current_staff().name, request.form.get("draft", ""))
        except DraftMoved as e:
            return _moved(e, changed, back="admin.recordings")
        flash(done)
        return redirect(url_for("admin.recordings", _anchor=f"recording-{key}"))
    problems = v.check(doc)[1]
    current = {lang: {key: r for key in keys
                      if (r := _recording_in(shipped, doc, lang, key)) is not None}
               for lang in languages}
    return _render("admin/recordings.html", languages=languages, keys=keys,
                   current=current, problems=_problems_by_field(problems),
                   summary=_summary(problems, "admin.recordings"),
                   most_kb=MAX_BYTES // 1000, most_seconds=MAX_SECONDS,
                   texts={lang: {**shipped.prompts[lang],
                                 **(doc.get("prompts", {}).get(lang) or {})}
                          for lang in languages})


def _recording_in(shipped, doc: dict, lang: str, key: str):
    """The recording prompt `key` has in `lang` under `doc`, or None."""
    overrides = (doc.get("recordings") or {}).get(lang) or {}
    if key in overrides:
        return Recording.from_json(overrides[key]) if overrides[key] else None
    return shipped.recordings.get(lang, {}).get(key)


def _example_groups(menu) -> list[tuple[str, str, str, dict[str, str]]]:
    """(name in examples.toml, the question, the key, the option's labels by language)
    for every option with a way to say it, danger first (a question of "any", no labels)."""
    groups = [("danger", "any", menu.emergency_key, {})]
    for node in menu.nodes.values():
        for option in node.options:
            groups.append((f"{node.id}.{option.key}", node.id, option.key,
                           dict(option.labels) or {"": option.hotline or option.next}))
    return groups


def _seconds_from_form(value: str, default: int):
    """Whole seconds as typed; anything else is kept as typed, so the check names it."""
    value = value.strip()
    if not value:
        return default
    return int(value) if value.isascii() and value.isdigit() else value


def _show_caller_from_form(value: str | None, current: bool) -> bool:
    """"yes" or "no" from the form; a form without the field keeps what the line has."""
    return current if value not in ("yes", "no") else value == "yes"


# --- publish, approve, discard ---------------------------------------------------------


@bp.post("/publish")
def publish():
    v = versions()
    try:
        number = v.publish(current_staff().name, request.form.get("note", ""),
                           request.form.get("draft", ""))
    except DraftMoved as e:
        return _moved(e)
    except PublishError as e:
        for problem in e.problems:
            flash(shown(problem), "error")
        return redirect(url_for("admin.index"))
    if number is None:
        _mail_approvers(v)
        why = _pending_why(v.draft())
        flash(_("This change needs approval from a second administrator before it goes "
                "live: %(reasons)s.", reasons="; ".join(map(shown, why))) if why else
              _("Waiting for a second administrator to approve it (two-person rule)."))
    else:
        flash(_("Version %(number)s is live: callers hear it from their next call.",
                number=number))
    return redirect(url_for("admin.index"))


def _mail_approvers(v: ConfigVersions) -> None:
    """Tell the other admins by e-mail that a change waits for them (an RQ job: the
    request never waits for a mail server), when mail is set up (RUTA_SMTP_URL)."""
    if current_app.config["RUTA_SMTP_URL"]:
        Queue(store.QUEUE, connection=services.of().store.r).enqueue(
            APPROVAL_MAIL_JOB, current_staff().name, v.draft().get("pending_note", ""),
            retry=Retry(max=3, interval=[10, 60, 300]))  # a mail server down for a while


@bp.post("/approve")
def approve():
    try:
        number = versions().approve(current_staff().name, request.form.get("draft", ""))
        flash(_("Approved: version %(number)s is live.", number=number))
    except DraftMoved as e:
        return _moved(e)
    except PublishError as e:
        for problem in e.problems:
            flash(shown(problem), "error")
    return redirect(url_for("admin.index"))


@bp.post("/discard")
def discard():
    """Asks first (what would be lost, whose it is); discards once confirmed."""
    v = versions()
    draft = v.draft()
    if draft is None:
        flash(_("There is no draft to discard."), "error")
        return redirect(url_for("admin.index"))
    if request.form.get("confirm") != "yes":
        return _render(
            "admin/confirm_draft.html", title=_("Discard the draft?"),
            heading=_("Discard the draft?"),
            explanation=_("The draft by %(author)s (%(at)s) holds these changes. Discarding it "
                          "takes them out of the draft; the history keeps it, and you are "
                          "recorded as the one who discarded it.",
                          author=draft["author"], at=moment(draft["at"])),
            changes=v.changes(v.document(v.latest()), draft["doc"], page_language()),
            action=url_for("admin.discard"), form_class="confirm-discard",
            seen=request.form.get("draft", ""), fields=[("confirm", "yes")],
            yes=_("Yes, discard the draft"), back=url_for("admin.index"), no=_("No, keep it"))
    try:
        v.discard_draft(current_staff().name, request.form.get("draft", ""))
    except DraftMoved as e:
        return _moved(e)
    flash(_("Draft discarded. It is kept in the history, where it can be brought back."))
    return redirect(url_for("admin.index"))


@bp.post("/restore")
def restore():
    """Bring back a draft a rollback replaced or an admin discarded."""
    v = versions()
    try:
        v.restore(int(request.form.get("revision", "0")), current_staff().name,
                  request.form.get("draft", ""))
    except DraftMoved as e:
        return _moved(e, back="admin.history")
    except PublishError as e:
        for problem in e.problems:
            flash(shown(problem), "error")
        return redirect(url_for("admin.history"))
    except ValueError:
        abort(400)
    flash(_("The draft is back. It is not live until you publish it."))
    return redirect(url_for("admin.index"))


# --- history, diff, rollback -------------------------------------------------------------


@bp.get("/history")
def history():
    v = versions()
    latest = v.latest()
    try:
        old = int(request.args.get("from", max(latest - 1, 0)))
        new = int(request.args.get("to", latest))
        diff = v.diff(old, new, page_language())
    except (ValueError, KeyError):
        flash(_("Pick two versions that exist."), "error")
        old, new = max(latest - 1, 0), latest
        diff = v.diff(old, new, page_language())
    live_doc = v.document(latest)
    return _render("admin/history.html", versions=v.history(), old=old, new=new, diff=diff,
                   set_aside=v.set_aside(),
                   kept_changes=lambda doc: v.changes(live_doc, doc, page_language()))


@bp.post("/rollback")
def rollback():
    v = versions()
    try:
        number = v.rollback(int(request.form.get("version", "-1")), current_staff().name,
                            request.form.get("note", ""), request.form.get("draft", ""),
                            replace_draft=request.form.get("replace") == "yes")
        if number is None:
            _mail_approvers(v)
        why = _pending_why(v.draft()) if number is None else None
        flash(_("Rolled back: version %(number)s is live.", number=number)
              if number is not None else
              _("This rollback needs approval from a second administrator before it goes "
                "live: %(reasons)s.", reasons="; ".join(map(shown, why))) if why else
              _("The rollback waits for a second administrator's approval (two-person "
                "rule)."))
    except DraftInTheWay as e:  # asks first: the draft would be replaced
        v = versions()
        number = int(request.form["version"])
        return _render(
            "admin/confirm_draft.html", title=_("Replace the draft?"),
            heading=_("Replace the draft with version %(number)s?", number=number),
            explanation=_("This rollback waits for a second administrator, in the draft: it "
                          "would replace the draft by %(author)s (%(at)s), which holds these "
                          "changes. The replaced draft stays in the history, where it can be "
                          "brought back.", author=e.draft["author"], at=moment(e.draft["at"])),
            changes=v.changes(v.document(v.latest()), e.draft["doc"], page_language()),
            action=url_for("admin.rollback"), form_class="confirm-rollback",
            seen=request.form.get("draft", ""),
            fields=[("version", number), ("note", request.form.get("note", "")),
                    ("replace", "yes")],
            yes=_("Yes, replace the draft"), back=url_for("admin.history"),
            no=_("No, keep the draft"))
    except DraftMoved as e:
        return _moved(e, back="admin.history")
    except PublishError as e:
        for problem in e.problems:
            flash(shown(problem), "error")
    except ValueError:  # not a number
        flash(_("Pick a version that exists."), "error")
    return redirect(url_for("admin.history"))


# --- audit log ---------------------------------------------------------------------------


@bp.get("/audit")
def audit():
    r = services.of().store.r
    entries = r.xrevrange(store.AUDIT, count=500)
    return _render("admin/audit.html", entries=entries,
                   security_events=r.xrevrange(store.SECURITY_LOG, count=SECURITY_EVENTS_SHOWN),
                   failed_logins=r.xrevrange(store.FAILED_LOGINS, count=FAILED_LOGINS_SHOWN))


@bp.get("/audit.csv")
def audit_csv():
    """The audit log, oldest first, in the form asked for (ivr.exports); ?log=security or
    ?log=failed-logins: that log instead."""
    r = services.of().store.r
    security_log = request.args.get("log") in LOGS
    log_key, file_name = LOGS.get(request.args.get("log"), (store.AUDIT, "ruta-audit"))

    translated = export_form() is exports.Form.EXCEL and not security_log

    def entries():
        last = "-"
        while True:  # 500 at a time
            batch = [e for e in r.xrange(log_key, min=last, count=500) if e[0] != last]
            if not batch:
                return
            for entry_id, fields in batch:
                # The Excel form says an audit detail in the reader's language; the data
                # form keeps the English text scripts have always read.
                yield {**fields, "detail": audit_detail(fields)} if translated else fields
                last = entry_id

    return csv_response(exports.AUDIT_COLUMNS, entries(), file_name,
                        names={"action": security_event if security_log else audit_action})


# --- staff sessions ------------------------------------------------------------------------


@bp.get("/sessions")
def sessions():
    """Everyone's open sessions: whose, since when, last used, from where."""
    def shown(unix: float) -> str:  # in the reader's forms (ivr.i18n.moment)
        return moment(datetime.fromtimestamp(unix, BOGOTA))

    everyone = [{"handle": s.handle, "user": s.user, "since": shown(s.created),
                 "seen": shown(s.seen), "address": s.address, "agent": s.agent}
                for name, _ in services.of().staff.users()
                for s in services.of().sessions.of_user(name)]
    return _render("admin/sessions.html", sessions=everyone,
                   this_session=getattr(session.record, "handle", None),
                   lifetime_hours=current_app.config["RUTA_SESSION_HOURS"],
                   idle_minutes=current_app.config["RUTA_SESSION_IDLE_MINUTES"])


@bp.post("/sessions/end")
def end_session():
    """End one session (a stolen one, say): its browser must log in again."""
    ended = services.of().sessions.end(request.form.get("session", ""))
    if ended is not None:
        log_security_event(services.of().store.r, SecurityEvent.SESSIONS_ENDED,
                           current_staff().name, f"{ended.user}: 1")
    return redirect(url_for("admin.sessions"))


# --- try the call --------------------------------------------------------------------------

_preview_apps: OrderedDict[str, object] = OrderedDict()


def _preview_app(doc: dict):
    """A private app serving the draft, with no Redis and no events: the real webhook
    code, reached only through its test client, signed here with a token of its own.

    Why a second app rather than this one serving the draft: the preview must run the
    webhooks as Twilio reaches them (signature, the menu served, the TwiML rendered)
    without their effects (events, metrics, Redis). In this app that would take a
    per-request switch of the menu and of the events in every webhook, which a forged
    request could try to reach; a private app keeps the live one free of both. Hence
    the settings RUTA_PREVIEW and RUTA_MENU_OVERRIDES (the tests use the latter too)."""
    from ivr import create_app

    key = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
    if key not in _preview_apps:
        _preview_apps[key] = create_app({
            "RUTA_ENV": "development", "TWILIO_AUTH_TOKEN": PREVIEW_TOKEN,
            "SECRET_KEY": current_app.config["SECRET_KEY"], "REDIS_URL": "",
            "PUBLIC_BASE_URL": "", "RUTA_PREVIEW": True, "RUTA_MENU_OVERRIDES": doc,
            "RUTA_CONFIG_DIR": current_app.config["RUTA_CONFIG_DIR"],
            "RUTA_PROMPTS_DIR": current_app.config["RUTA_PROMPTS_DIR"],
        })
        while len(_preview_apps) > 4:
            _preview_apps.popitem(last=False)
    return _preview_apps[key]


@bp.route("/try", methods=["GET", "POST"])
def try_call():
    """Play a call against the draft: a keypad and a speech box, one move at a time."""
    v = versions()
    doc = v.draft_or_live()
    problems = v.check(doc)[1]
    # A draft whose only problem is a path over the budget plays, with a warning (so
    # that the admin hears what to trim); publishing still refuses it.
    over_budget = [p for p in problems if getattr(p, "field", "").startswith("language:")]
    if over_budget and len(over_budget) == len(problems):
        problems = []
    else:
        over_budget = []
    moves = _earlier_moves(request.form.get("moves", "[]"))
    dials = _earlier_dials(request.form.get("dials", "[]"))
    if request.method == "POST" and not request.form.get("restart"):
        if request.form.get("press") is not None:
            moves.append(["press", request.form["press"][:1]])
        elif request.form.get("say", "").strip():
            moves.append(["say", request.form["say"].strip()[:200]])
        elif request.form.get("silent"):
            moves.append(["silent", ""])
        dial_result = request.form.get("dial_result", DialStatus.COMPLETED)
        if dial_result not in DIAL_RESULTS:
            dial_result = DialStatus.COMPLETED
        dials = [dial_result] * MAX_TRY_MOVES
    elif request.form.get("restart"):
        moves, dials = [], []
    transcript, seconds, why, recorded = None, None, {}, {}
    if not problems:
        preview = _preview_app(doc)
        call = SimulatedCall("http://preview.ruta", PREVIEW_TOKEN,
                             transport=flask_transport(preview), caller="anonymous")
        transcript = call.run([Move(kind, value) for kind, value in moves],
                              dials or [DialStatus.COMPLETED])
        seconds = _seconds_before_transfer(transcript, preview)
        why = _why_understood(transcript, preview)
        recorded = _recorded_texts(preview)
    return _render("admin/try.html", moves=moves, dials=dials[:1], transcript=transcript,
                   why=why, recorded=recorded,
                   seconds=seconds, problems=problems, over_budget=over_budget,
                   moves_json=json.dumps(moves),
                   dials_json=json.dumps(dials[:MAX_TRY_MOVES]))


def _recorded_texts(preview) -> dict[str, tuple[str, str]]:
    """A recording's URL as the transcript names it -> (its language, its prompt's text)."""
    with preview.app_context():
        menu = current_menu()
    return {AUDIO_PATH + r.name: (lang, menu.prompts[lang][key])
            for lang, found in menu.recordings.items() for key, r in found.items()}


def _earlier_moves(raw: str) -> list[list[str]]:
    """The moves the page carries from one step to the next (a hidden field): a list of
    [kind, value]. Anything else was not sent by the page: 400, never a 500."""
    moves = _json_list(raw)
    if not all(isinstance(m, list) and len(m) == 2 and m[0] in MOVE_KINDS
               and isinstance(m[1], str) for m in moves):
        abort(400)
    return moves[:MAX_TRY_MOVES]


def _earlier_dials(raw: str) -> list[str]:
    dials = _json_list(raw)
    if not all(d in DIAL_RESULTS for d in dials):
        abort(400)
    return dials[:MAX_TRY_MOVES]


def _json_list(raw: str) -> list:
    try:
        found = json.loads(raw)
    except ValueError:
        abort(400)
    if not isinstance(found, list):
        abort(400)
    return found


def _why_understood(transcript, preview) -> dict[int, str]:
    """Line number -> how the draft's matcher understood what the caller said there:
    the option or question it led to, and the keywords or example phrase that decided."""
    with preview.app_context():
        menu = current_menu()
    out = {}
    for i, line in enumerate(transcript.lines):
        if line.who != "caller" or not line.asked_at or not line.text.startswith("says "):
            continue
        query = parse_qs(urlsplit(line.asked_at).query)
        node, lang = query.get("n", [menu.start])[0], query.get("l", [menu.languages[0]])[0]
        matcher = menu.matchers.get((node, lang))
        if matcher is None:
            continue
        said = line.text.removeprefix("says ").strip('"')
        if query.get("q", [""])[0].startswith("d") and best_match(
                said, [("yes", menu.yes_words.get(lang, ()))], lang):
            out[i] = _("→ the emergency path, decided by a yes to the danger question")
            continue
        d = matcher.decide(said)
        led_to = _led_to(d)
        by = {"keyword": _("keywords"), "example": _("the example"), "age": _("the age"),
              "digit": _("a spoken digit"), "signs": _("signs of danger")}.get(d.method, "")
        evidence = "; ".join(f"“{e}”" for e in d.evidence)
        out[i] = "→ " + led_to + (
            _(", decided by %(by)s %(evidence)s", by=by, evidence=evidence) if by else "") + (
            _(" (certainty %(score)s)", score=decimal(d.score, 2)) if d.score else "")
    return out


def _led_to(d) -> str:
    """Where a speech.Decision leads, as the try-the-call panel says it."""
    match d.action:
        case "route":
            return _("option %(key)s", key=d.key)
        case "danger":
            return _("the emergency path")
        case "ask_danger":
            return _("the question “is someone in danger right now?”")
        case "either":
            return _("the question between options %(first)s and %(second)s",
                     first=d.keys[0], second=d.keys[-1])
    return _("not understood")


def _seconds_before_transfer(transcript, preview) -> float | None:
    """Spoken seconds before the first transfer, or before the number of a line Twilio
    cannot dial is read, counted as the 30-second budget counts them
    (ivr.menu.spoken_paths): a caller who presses a key stops the prompt at the sentence
    that offers it; one who speaks or waits heard it all; a recording counts whole."""
    with preview.app_context():
        menu = current_menu()
    number_read = {menu.text(lang, "direct_only", hotline=h.names[lang],
                             number=spoken_number(h.say))
                   for h in menu.hotlines.values() if not h.dial for lang in menu.languages}
    lengths = {r.name: r.seconds for found in menu.recordings.values() for r in found.values()}
    per_word = 60 / menu.words_per_minute
    seconds, heard = 0.0, []  # `heard`: what Ruta said since the caller's last move

    def total() -> float:
        return round(seconds + sum(_seconds_of(t, per_word) for t in heard), 1)

    for line in transcript.lines:
        if line.who == "ruta" and line.text in number_read:
            heard.append(line.text)
            return total()
        if line.audio:
            heard.append(lengths.get(line.audio.rsplit("/", 1)[-1], 0.0))
        elif line.who == "ruta" and not line.text.startswith("("):
            heard.append(line.text)
        elif line.who == "caller":
            key = line.text.removeprefix("presses ") if line.text.startswith("presses ") else ""
            seconds += _until_offer(heard, key, per_word)
            heard = []
        elif line.who == "dial":
            return total()
    return None


def _seconds_of(heard: str | float, per_word: float) -> float:
    return heard if isinstance(heard, float) else word_count(heard) * per_word


def _until_offer(heard: list[str | float], key: str, per_word: float) -> float:
    """Seconds up to the sentence that offers `key` (all of them if none does)."""
    total = 0.0
    for text in heard:
        offered = offering_sentence(text, key) if key and isinstance(text, str) else None
        if offered is not None:
            return total + sum(word_count(t) for t in sentences(text)[: offered + 1]) * per_word
        total += _seconds_of(text, per_word)
    return total
