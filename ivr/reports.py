"""Supervisors: login (with its second step), the account page and two-step sign-in, the
dashboard, the calls table, CSV export and the JSON API."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import NamedTuple
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    stream_with_context,
    url_for,
)
from flask_babel import force_locale, get_locale, ngettext
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from markupsafe import Markup
from wtforms import PasswordField, RadioField, StringField
from wtforms.validators import DataRequired, Length, Optional, Regexp

from ivr import (
    charts,
    export_jobs,
    exports,
    i18n,
    incidents,
    security,
    services,
    settings,
    timeline,
    two_factor,
)
from ivr.call_record import CallRecord
from ivr.caller_keys import KeyEpochs
from ivr.filters import HOUR, NONE, FilterError, Filters
from ivr.menu import Menu
from ivr.message import LANGUAGES, N_, Message
from ivr.security import (
    current_staff,
    login_allowed,
    login_failed,
    password_matches,
    staff_required,
)
from ivr.services import current_menu
from ivr.sessions import SecurityEvent, credentials_of
from ivr.staff import (
    BY_RECOVERY_CODE,
    DIGEST_FIELD,
    StaffAccounts,
    has_two_factor,
    recovery_codes_left,
)
from ivr.store import Store
from ivr.summary import (
    HEALTH_MIN_ATTEMPTS,
    RangeError,
    Summary,
    parse_range,
    previous_period,
    summarize,
)
from ivr.versions import AuditAction, audit
from ivr.vocabulary import (
    ANSWERED,
    ANY_HOTLINE,
    BOGOTA,
    FAILED_DIALS,
    REACHED_NO,
    REACHED_YES,
    Category,
    Facet,
    Input,
    Outcome,
)

bp = Blueprint("reports", __name__)
PER_PAGE = 25
CSV_MAX_ROWS = 30_000  # about 5 s of streaming: well inside gunicorn's 10 s timeout;
# a bigger range is exported by the worker (ivr.export_jobs)
MAX_PER_PAGE = 500


NO_REDIS = Message(N_("Redis is not configured (REDIS_URL)"))


def _store() -> Store:
    store = services.of().store
    if store is None:
        abort(503, NO_REDIS)
    return store


def _accounts() -> StaffAccounts:
    accounts = services.of().staff
    if accounts is None:
        abort(503, NO_REDIS)
    return accounts


def _menu() -> Menu:
    return current_menu()


def questions_in_order(menu: Menu) -> list[str]:
    """The menu's questions from the first one on (the funnel's order)."""
    order, queue = [], [menu.start]
    while queue:
        node = queue.pop(0)
        if node not in order and node in menu.nodes:
            order.append(node)
            queue += [o.next for o in menu.nodes[node].options if o.next]
    return order


def build_summary(store: Store, menu: Menu, days: list[str], threshold: float,
                  filters: Filters = NONE) -> Summary:
    """Read only counters: a 30-day summary is 30 small hashes, and as many for the
    previous 30 days it is compared with (and the hotlines' latest test calls, one small
    hash); filtered, the facet counts of the combinations picked (ivr.filters). Distinct
    callers are known for all calls only, so a filtered summary has no repeat calls; a
    hotline filter keeps that line's health."""
    questions = questions_in_order(menu)

    filters = filters.whole_days()  # no counter is kept by hour and combination

    def period(days: list[str], line_tests: dict | None = None) -> Summary:
        counters = (store.filtered_counters(days, filters) if filters
                    else store.counters_for(days))
        return summarize(days, counters, None if filters else store.unique_callers(days),
                         questions, threshold, line_tests=line_tests)

    summary = period(days, store.line_tests())
    summary.previous = period(previous_period(days)).headline()
    if filters.hotline:
        summary.health = [h for h in summary.health if h.hotline == filters.hotline]
    return summary


def call_row(record: CallRecord, epochs: KeyEpochs | None = None) -> dict:
    """One call as supervisors see it (table, CSV, API): never a phone number. With
    `epochs`, since when the key of its caller's pseudonym was in use: pseudonyms of two
    keys never match, even for the same caller."""
    started = datetime.fromtimestamp(record.started, BOGOTA) if record.started else None
    key_since = epochs.since(started) if epochs is not None and started else None
    return {
        "call_sid": record.call,
        "started": started.isoformat(timespec="seconds") if started else "",
        "language": record.lang,
        "category": record.category or "",
        "path": record.path_text(),
        "hotlines": record.hotlines_text(),
        "outcome": record.outcome.value,
        "reached_person": "yes" if record.reached_person else "no",
        "attempts": record.attempts,
        "not_connected": record.attempts - record.connected,
        "call_status": record.status,
        "duration_s": record.duration,
        "talk_s": record.talk_seconds,
        "seconds_to_transfer": record.seconds_to_transfer,
        "no_input": record.no_input,
        "invalid_input": record.invalid_input,
        "caller": record.caller,
        "caller_key_since": key_since.isoformat(timespec="seconds") if key_since else "",
    }


def export_form() -> exports.Form:
    """The CSV form asked for (?form=datos|excel; datos when none is): a bad one is a 400."""
    try:
        return exports.Form.asked(request.args.get("form"))
    except ValueError:
        abort(400, Message(N_("form must be datos or excel")))


def csv_response(columns, rows, stem: str, names: dict | None = None) -> Response:
    """A CSV download in the form asked for, streamed (ivr.exports): the Excel form in the
    reader's language and formats, the data form as scripts have always read it."""
    form = export_form()
    reader = exports.Reader(get_locale(), _, names) if form is exports.Form.EXCEL else None
    filename = exports.filename(stem, form)
    return Response(stream_with_context(exports.write(form, columns, rows, reader)),
                    mimetype="text/csv", headers={
                        "Content-Disposition": f'attachment; filename="{filename}"'})


def _days() -> list[str]:
    """The range asked for (?from=&to= or ?range=today|7|30); a bad one is a 400."""
    try:
        return parse_range(request.args.get("from"), request.args.get("to"),
                           request.args.get("range"))
    except RangeError as e:
        abort(400, e.message)


def _filters() -> Filters:
    """The filters asked for (?hotline=&outcome=&category=&lang=&input=&hangup=&hour=)."""
    try:
        return Filters.from_args(request.args)
    except FilterError as e:
        abort(400, e.message)


def _page_args() -> tuple[int, int]:
    try:
        page = max(1, int(request.args.get("page", 1)))
        per_page = min(MAX_PER_PAGE, max(1, int(request.args.get("per_page", PER_PAGE))))
    except ValueError:
        abort(400, Message(N_("page and per_page must be whole numbers")))
    return page, per_page


# --- login -------------------------------------------------------------------------


class LoginForm(FlaskForm):
    name = StringField(_l("Name"), validators=[
        DataRequired(_l("Enter your name.")),
        Length(max=64, message=_l("A name has at most %(max)d characters."))])
    password = PasswordField(_l("Password"), validators=[
        DataRequired(_l("Enter your password.")),
        Length(max=256, message=_l("A password has at most %(max)d characters."))])


class CodeForm(FlaskForm):
    code = StringField(_l("Code"), validators=[
        DataRequired(_l("Enter the code.")),
        Length(max=32, message=_l("A code has at most %(max)d characters."))])


class SetUpForm(CodeForm):
    """Turning two-step sign-in on asks for the password too: else a session left open on
    someone's computer could tie their account to a stranger's phone, and lock them out."""

    password = PasswordField(_l("Password"), validators=[
        DataRequired(_l("Enter your password.")),
        Length(max=256, message=_l("A password has at most %(max)d characters."))])


TOO_MANY_FAILURES = _l("Too many failed logins: wait a minute and try again.")
ACCOUNT_CHANGED = _l("Log in again: your account changed, or you signed in elsewhere, "
                     "since you typed your password.")
# What the session notes when the password was right and the code is still to come: the
# name, when, and where to go next. The session itself starts only with the code.
SIGN_IN = "sign_in"
SIGN_IN_SECONDS = 300  # to type the code after the password


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Staff log in; only failed attempts count toward the slow-down. An account with
    two-step sign-in goes on to /login/code: no session before the code."""
    form = LoginForm()
    keys = security.failed_login_counters(form.name.data or "")
    if request.method == "POST" and not login_allowed(keys):
        return render_template("login.html", form=form, error=TOO_MANY_FAILURES), 429
    if form.validate_on_submit():
        user = _accounts().user(form.name.data)
        # An unknown name costs the same scrypt as a known one: timing tells nothing.
        password_hash = user["password"] if user else security.decoy_password_hash()
        if password_matches(password_hash, form.password.data) and user:
            if has_two_factor(user):
                # Bound to the account as checked: a password change, a reset or a
                # sign-in elsewhere with a code voids it (_pending_sign_in).
                session[SIGN_IN] = {"name": form.name.data, "at": time.time(),
                                    "next": request.args.get("next") or "",
                                    "credentials": credentials_of(user),
                                    "step": user.get("totp_step", "")}
                return redirect(url_for("reports.login_code"))
            return _signed_in(form.name.data, credentials_of(user),
                              request.args.get("next"))
        login_failed(keys)
        security.log_failed_login(form.name.data if user else None)
        return render_template("login.html", form=form,
                               error=_("Wrong name or password.")), 401
    return render_template("login.html", form=form, error=None)


@bp.route("/login/code", methods=["GET", "POST"])
def login_code():
    """Signing in, second step: the code the person's app shows, or a recovery code.
    A wrong one counts like a wrong password (the same slow-down, the security log)."""
    pending = session.get(SIGN_IN)
    if (not isinstance(pending, dict)
            or not time.time() < pending.get("at", 0) + SIGN_IN_SECONDS):
        session.pop(SIGN_IN, None)
        flash(_("Log in again: the code was not typed in time."), "error")
        return redirect(url_for("reports.login"))
    name = pending["name"]
    account = _accounts().user(name) or {}
    if (credentials_of(account) != pending.get("credentials")
            or account.get("totp_step", "") != pending.get("step")):
        # A copy of this browser's cookie, taken after the password, must not outlive
        # a new password, a reset, or the sign-in it was made for.
        session.pop(SIGN_IN, None)
        flash(str(ACCOUNT_CHANGED), "error")
        return redirect(url_for("reports.login"))
    form = CodeForm()
    keys = security.failed_login_counters(name)
    if request.method == "POST" and not login_allowed(keys):
        return render_template("login_code.html", form=form, error=TOO_MANY_FAILURES), 429
    if form.validate_on_submit():
        passed = _accounts().second_step(name, form.code.data)
        if passed is not None:
            if passed == BY_RECOVERY_CODE:
                security.log_event(SecurityEvent.RECOVERY_CODE_USED, name)
            return _signed_in(name, pending["credentials"], pending.get("next"))
        login_failed(keys)
        security.log_event(SecurityEvent.CODE_FAILED, name)
        return render_template("login_code.html", form=form, error=_(
            "Wrong code, or one already used. Type the code your app shows now.")), 401
    return render_template("login_code.html", form=form, error=None)


def _signed_in(name: str, credentials: str, target: str | None):
    """Start `name`'s session in this browser and go on to `target` (if on this site);
    back to the login page if the account changed since its `credentials` were read."""
    if not security.log_in(name, credentials):
        flash(str(ACCOUNT_CHANGED), "error")
        return redirect(url_for("reports.login"))
    return security.remember_device(redirect(_safe_next(target)), name)


def _safe_next(target: str | None) -> str:
    """Only a path on this site: never an open redirect. Browsers drop tabs and newlines
    and read a backslash as a slash, so "/\t/evil.example" would leave the site."""
    fallback = url_for("reports.dashboard")
    if not target or any(ord(c) < 33 or c == "\\" for c in target):
        return fallback
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return fallback
    return target


@bp.post("/logout")
def logout():
    security.log_out()
    return redirect(url_for("reports.login"))


class AccountForm(FlaskForm):
    lang = RadioField(_l("Language of these pages"), choices=list(LANGUAGES))


class DigestForm(FlaskForm):
    address = StringField(_l("E-mail address for the weekly summary (empty: none)"),
                          validators=[Optional(), Length(max=254, message=_l(
                              "An address has at most %(max)d characters.")),
                              Regexp(r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
                                     message=_l("Type an address like name@example.org."))])


@bp.route("/account", methods=["GET", "POST"])
@staff_required()
def account():
    """A person's own settings: the language they read these pages in."""
    staff = current_staff()
    form = AccountForm(data={"lang": staff.lang})
    if form.validate_on_submit():
        lang = form.lang.data
        if lang != staff.lang:
            _accounts().set_language(staff.name, lang)
            audit(_store().r, staff.name, AuditAction.LANGUAGE_CHANGED, Message(
                N_("from %(before)s to %(after)s"),
                {"before": i18n.LANGUAGE_NAMES.get(staff.lang, staff.lang),
                 "after": i18n.LANGUAGE_NAMES[lang]}))
        with force_locale(i18n.LOCALES[lang]):  # said in the language just chosen
            flash(_("Saved: these pages are in %(language)s.",
                    language=i18n.LANGUAGE_NAMES[lang]))
        return redirect(url_for("reports.account"))
    return _account_page(form, DigestForm(formdata=None, data={
        "address": (_accounts().user(staff.name) or {}).get(DIGEST_FIELD, "")}))


def _account_page(form: AccountForm, digest_form: DigestForm):
    staff = current_staff()
    return render_template("account.html", form=form, staff=staff, digest_form=digest_form,
                           code_form=CodeForm(formdata=None),
                           recovery_left=recovery_codes_left(_accounts().user(staff.name)
                                                             or {}),
                           required=_two_factor_required(staff))


@bp.post("/account/digest")
@staff_required()
def digest_setting():
    """Ask for (an address) or stop (empty) the weekly summary by e-mail (ivr.digest)."""
    staff = current_staff()
    form = DigestForm()
    if not form.validate_on_submit():
        return _account_page(AccountForm(data={"lang": staff.lang}), form), 400
    address = (form.address.data or "").strip()
    _accounts().set_digest_email(staff.name, address)
    flash(_("Saved: the weekly summary goes to %(address)s every Monday.", address=address)
          if address else _("Saved: no weekly summary by e-mail."))
    return redirect(url_for("reports.account"))


def _two_factor_required(staff) -> bool:
    return staff.is_admin and settings.admin_totp_required(current_app.config)


# The secret drawn for someone setting up two-step sign-in, until their first code shows
# their app has it: kept in their session's record, in Redis (ivr.sessions), never in a
# cookie.
PENDING_SECRET = "two_factor_secret"


@bp.route("/account/two-factor", methods=["GET", "POST"])
@staff_required()
def two_factor_setup():
    """Set up two-step sign-in: scan the QR code (or type the secret) into an app, type
    the code it shows; then the recovery codes, shown this once."""
    staff = current_staff()
    if staff.two_factor:
        return redirect(url_for("reports.account"))
    secret = session.get(PENDING_SECRET)
    if not secret:
        secret = session[PENDING_SECRET] = two_factor.new_secret()
    form = SetUpForm()
    error = None
    keys = security.failed_login_counters(staff.name)
    if request.method == "POST" and not login_allowed(keys):
        error = TOO_MANY_FAILURES  # a stolen session is no way to guess the password
    elif form.validate_on_submit():
        account = _accounts().user(staff.name) or {}
        if not password_matches(account.get("password", ""), form.password.data):
            login_failed(keys)
            security.log_failed_login(staff.name)
            error = _("Wrong password: two-step sign-in is still off.")
        else:
            codes = _accounts().turn_on_two_factor(staff.name, secret, form.code.data,
                                                   keep_session=session.record.handle)
            if codes is not None:
                session.pop(PENDING_SECRET)
                security.log_event(SecurityEvent.TWO_FACTOR_ON, staff.name)
                return render_template("recovery_codes.html", codes=codes, staff=staff)
            error = _("That is not the code your app shows now: check that it has this "
                      "account, and type its newest code.")
    qr = two_factor.qr_svg(two_factor.setup_uri(secret, staff.name),
                           _("QR code to set up your app"))
    return render_template("two_factor_setup.html", form=form, error=error, staff=staff,
                           qr=Markup(qr), secret=two_factor.secret_for_typing(secret),
                           required=_two_factor_required(staff)), 400 if error else 200


@bp.post("/account/two-factor/off")
@staff_required()
def two_factor_off():
    """Turn two-step sign-in off, with a code from the app (or a recovery code): a
    session left open on someone's computer cannot do it alone. Every other session of
    theirs ends."""
    staff = current_staff()
    form = CodeForm()
    keys = security.failed_login_counters(staff.name)
    if not login_allowed(keys):
        flash(TOO_MANY_FAILURES, "error")
    elif form.validate_on_submit() and _accounts().second_step(staff.name, form.code.data):
        _accounts().turn_off_two_factor(staff.name, keep_session=session.record.handle)
        security.log_event(SecurityEvent.TWO_FACTOR_OFF, staff.name)
        flash(_("Two-step sign-in is off: you sign in with your password alone."))
    else:
        login_failed(keys)
        security.log_event(SecurityEvent.CODE_FAILED, staff.name)
        flash(_("Wrong code, or one already used: two-step sign-in is still on."), "error")
    return redirect(url_for("reports.account"))


@bp.get("/")
def home():
    return redirect(url_for("reports.dashboard"))


# --- the dashboard -------------------------------------------------------------------


@bp.get("/reports")
@staff_required()
def dashboard():
    """A range's headline numbers, charts, health strip and the calls table."""
    days, filters = _days(), _filters()
    page, per_page = _page_args()
    store = _store()
    menu = _menu()
    summary = build_summary(store, menu, days,
                            float(current_app.config["RUTA_HEALTH_FAILED_SHARE"]), filters)
    records, total = store.calls_page(list(reversed(days)), (page - 1) * per_page, per_page,
                                      filters)
    range_args = {k: v for k, v in request.args.items() if k in ("from", "to", "range")}

    def calls_of(day: str | None = None, **narrower: str) -> str:
        """A figure's link to the calls it counts: these filters, narrowed (to one day)."""
        dates = {"from": day, "to": day} if day else range_args
        return url_for("reports.dashboard", **dates, **filters.narrowed(**narrower).args(),
                       _anchor="calls")

    return render_template(
        "reports.html",
        summary=summary,
        headline=summary.headline(),
        charts=_charts(summary, calls_of) if summary.calls else None,
        changes=_changes(summary),
        min_attempts=HEALTH_MIN_ATTEMPTS,
        rows=[table_row(r) for r in records],
        total=total,
        page=page,
        pages=max(1, -(-total // per_page)),
        range_args={**range_args, **filters.args()},
        range_only=range_args,
        filters=filters,
        filter_choices=filter_choices(menu, summary),
        calls_of=calls_of,
        staff=current_staff(),
        threshold=float(current_app.config["RUTA_HEALTH_FAILED_SHARE"]),
        caller_key_changes=KeyEpochs.read(store.r).changes_between(*day_span(days)),
        alerts=_alerts(store),
    )


def filter_choices(menu: Menu, summary: Summary) -> dict[str, list[tuple[str, str]]]:
    """Each filter's values, named in the reader's language: (value, name)."""
    categories = sorted({o.category for n in menu.nodes.values() for o in n.options
                         if o.category} | {c.value for c in Category} | set(summary.categories))
    return {
        Facet.HOTLINE: [(h, i18n.hotline_name(h)) for h in menu.hotlines],
        Facet.OUTCOME: [(o.value, i18n.outcome_name(o.value)) for o in Outcome
                        if o is not Outcome.IN_PROGRESS],  # filters see ended calls
        Facet.CATEGORY: [(c, i18n.category_name(c)) for c in categories],
        Facet.LANG: [(lang, i18n.language_read(lang)) for lang in menu.languages],
        Facet.INPUT: [(way.value, i18n.input_name(way)) for way in Input],
        Facet.HANGUP: [(q, i18n.question_name(q)) for q in questions_in_order(menu)],
        Facet.HEARD: [(q, i18n.question_name(q)) for q in questions_in_order(menu)],
        Facet.REACHED: [(REACHED_YES, _("reached a person")),
                        (REACHED_NO, _("never reached a person"))],
        Facet.CONNECTED: [(h, i18n.hotline_name(h)) for h in menu.hotlines],
        Facet.NOT_CONNECTED: [(ANY_HOTLINE, _("any hotline"))] + [
            (h, i18n.hotline_name(h)) for h in menu.hotlines],
        HOUR: [(str(h), f"{h:02d}:00–{h:02d}:59") for h in range(24)],
    }


def _alerts(store: Store) -> dict:
    """The latest alerts and recoveries (workers.alerts), and the incidents open now."""
    recent = incidents.recent(store.r)
    for entry in recent:
        entry["at"] = datetime.fromtimestamp(entry["at"], BOGOTA)
    return {"recent": recent, "open": len(incidents.open_incidents(store.r))}


def day_span(days: list[str]) -> tuple[datetime, datetime]:
    """From the first day's midnight to the midnight after the last (Bogotá)."""
    first = datetime.fromisoformat(days[0]).replace(tzinfo=BOGOTA)
    return first, datetime.fromisoformat(days[-1]).replace(tzinfo=BOGOTA) + timedelta(days=1)


def table_row(record: CallRecord, epochs: KeyEpochs | None = None) -> dict:
    """One call as the calls table shows it: call_row, with the answers and transfers
    named in the reader's language ("What the call is about: 4 › Where to report a
    crime: 1"; "Ministry of Labour line (busy)")."""
    answers = [record.path[step].rpartition(":") for step in sorted(record.path)]
    dials = [record.dials[step].rpartition(":") for step in sorted(record.dials)]
    ringing = [h for step, h in sorted(record.transfers.items())
               if step > max(record.dials, default=0)]
    still = _("ringing")
    return {
        **call_row(record, epochs),
        "path": " › ".join(f"{i18n.question_name(node)}: {key}"
                           for node, _colon, key in answers),
        "hotlines": " › ".join(
            [f"{i18n.hotline_name(h)} ({i18n.dial_result_name(status)})"
             for h, _colon, status in dials]
            + [f"{i18n.hotline_name(h)} ({still})" for h in ringing]),
    }


def _changes(summary: Summary) -> dict[str, str]:
    """Each headline figure's change from the previous period, in words: "up 3 on the
    previous 7 days" (percentages in points). The arrow beside it is for the eye."""
    n = len(summary.days)
    before = ngettext("the previous day", "the previous %(num)s days", n)
    out = {}
    for key, difference in summary.changes().items():
        if key.endswith("_pct"):
            amount = _("%(points)s points", points=i18n.number(abs(difference)))
        else:
            amount = i18n.number(abs(difference))
        if difference > 0:
            out[key] = "▲ " + _("up %(amount)s on %(before)s", amount=amount, before=before)
        elif difference < 0:
            out[key] = "▼ " + _("down %(amount)s on %(before)s", amount=amount, before=before)
        else:
            out[key] = "= " + _("as many as %(before)s", before=before)
    return out


@bp.get("/reports/calls/<call_sid>")
@staff_required()
def call_timeline(call_sid: str):
    """One call, event by event: what the caller heard and answered, each transfer, the
    numbers read, how it ended. The caller only as a pseudonym, with how often it called."""
    store = _store()
    found = store.timeline(call_sid)
    if found is None:
        abort(404, Message(N_("No call %(call)s: it never reached Ruta, or it is older "
                              "than the retention period."), {"call": call_sid}))
    record, lines, caller_calls = found
    now = datetime.now(BOGOTA)
    return render_template(
        "call.html", record=record, steps=timeline.steps(record, lines),
        started=datetime.fromtimestamp(record.started, BOGOTA) if record.started else None,
        caller_calls=caller_calls, retention_days=store.retention.days,
        caller_key_changes=KeyEpochs.read(store.r).changes_between(now - store.retention, now),
        clock=i18n.clock, decimal=i18n.decimal, staff=current_staff())


class Figure(NamedTuple):
    """A dashboard chart and the same numbers as a table (shown under it, folded)."""

    svg: Markup
    table: Markup


def _charts(summary: Summary, calls_of: Callable[..., str]) -> dict[str, Figure]:
    """The dashboard's charts, with names and numbers in the reader's language, each with
    its numbers as a table; each bar links to the calls it counts (`calls_of(**filters)`),
    or for transfer attempts to the calls that had such an attempt."""
    labels = [i18n.day_of_month(d) for d in summary.days]  # "26/11"
    rows = [i18n.hotline_name(h.hotline) for h in summary.hotlines]
    results = {"answered": [sum(h.results.get(s, 0) for s in ANSWERED)
                            for h in summary.hotlines]}
    for status in FAILED_DIALS:
        results[status] = [h.results.get(status, 0) for h in summary.hotlines]
    funnel = [(i18n.question_name(q), reached, hung) for q, reached, hung in summary.funnel]
    forms = {"gettext": _, "number": i18n.number}
    result_names = i18n.dial_result_names(results)
    category_names = {c: i18n.category_name(c) for c in summary.categories}
    questions = [q for q, _r, _h in funnel]
    hours = [f"{h:02d}" for h in range(24)]
    heat_ids = list(summary.not_connected_by_hour)
    heat_rows = [i18n.hotline_name(h) for h in heat_ids]
    languages = [i18n.language_read(lang) for lang in summary.languages]
    inputs = [i18n.input_name(way) for way in summary.inputs]
    hotline_ids = [h.hotline for h in summary.hotlines]
    question_ids = [q for q, _r, _h in summary.funnel]

    def attempts_of(i: int, result: str) -> str:
        line = hotline_ids[i]
        return (calls_of(connected=line) if result == "answered"
                else calls_of(not_connected=line))

    return {
        "per_day": Figure(
            charts.stacked_columns(labels, summary.categories,
                                   _("Calls per day, by what they were about"),
                                   names=category_names, **forms,
                                   link=lambda i, c: calls_of(day=summary.days[i], category=c)),
            charts.data_table(_("Day"), labels,
                              {category_names[c]: v for c, v in summary.categories.items()},
                              total=_("In all"), number=i18n.number)),
        "hotlines": Figure(
            charts.stacked_bars(rows, results, _("Transfers per hotline, by result"),
                                names=result_names, link=attempts_of, **forms),
            charts.data_table(_("Hotline"), rows,
                              {result_names[r]: v for r, v in results.items()},
                              total=_("In all"), number=i18n.number)),
        "funnel": Figure(
            charts.funnel(funnel, _("Callers at each question, and who hung up"),
                          percent=lambda p: i18n.percent(p, 0), **forms,
                          link=lambda i, part: calls_of(**{
                              "heard" if part == "reached" else "hangup": question_ids[i]})),
            charts.data_table(_("Question"), questions,
                              {_("reached"): [r for _q, r, _h in funnel],
                               _("hung up here"): [h for _q, _r, h in funnel]},
                              number=i18n.number, percent=i18n.percent,
                              shares={_("share who hung up"): [
                                  100 * h / r if r else None for _q, r, h in funnel]})),
        "not_connected": Figure(
            charts.heat_map(heat_rows, hours, list(summary.not_connected_by_hour.values()),
                            _("Transfer attempts not connected, by hotline and hour (Bogotá)"),
                            out_of=list(summary.attempts_by_hour.values()), **forms,
                            link=lambda i, j: calls_of(hour=str(j),
                                                       not_connected=heat_ids[i])),
            charts.data_table(_("Hour"), hours, {
                _("%(hotline)s: not connected", hotline=name): summary.not_connected_by_hour[h]
                for h, name in zip(summary.not_connected_by_hour, heat_rows, strict=True)},
                number=i18n.number)),
        "languages": Figure(
            charts.stacked_bars(languages, {_("Calls"): list(summary.languages.values())},
                                _("Calls by language"), **forms,
                                link=lambda i, _s: calls_of(lang=list(summary.languages)[i])),
            charts.data_table(_("Language"), languages,
                              {_("Calls"): list(summary.languages.values())},
                              number=i18n.number)),
        "inputs": Figure(
            charts.stacked_bars(inputs, {_("Calls"): list(summary.inputs.values())},
                                _("Calls by how the caller answered"), **forms,
                                link=lambda i, _s: calls_of(input=list(summary.inputs)[i])),
            charts.data_table(_("Answered by"), inputs,
                              {_("Calls"): list(summary.inputs.values())},
                              number=i18n.number)),
        "by_hour": Figure(
            charts.columns(hours, summary.by_hour, _("Calls by hour of day (Bogotá)"),
                           **forms, link=lambda i: calls_of(hour=str(i))),
            charts.data_table(_("Hour"), hours, {_("Calls"): summary.by_hour},
                              number=i18n.number)),
    }


# --- export and API --------------------------------------------------------------------


@bp.get("/reports/calls.csv")
@staff_required()
def calls_csv():
    """The range's calls as CSV, oldest first.

    A web worker that streams longer than gunicorn's timeout is killed mid-file (and
    holds back webhooks meanwhile), so only a range the web writes in a few seconds is
    streamed here; a bigger one is built by the worker in parts (ivr.export_jobs), and
    the supervisor is sent to its progress page.
    """
    days, filters = _days(), _filters()
    store = _store()
    form = export_form()
    total = store.count_calls(days, filters)
    stem = f"ruta-calls-{days[0]}-to-{days[-1]}"
    if total > CSV_MAX_ROWS:
        export_id = export_jobs.start(
            services.of().redis, current_staff().name, form.value, str(get_locale()),
            dict(request.args), stem, total)
        return redirect(url_for("downloads.progress", export_id=export_id))
    rows = csv_rows(store.iter_calls(days, filters=filters), form, KeyEpochs.read(store.r))
    return csv_response(exports.CALL_COLUMNS, rows, stem, names=csv_names())


def csv_rows(records, form: exports.Form, epochs: KeyEpochs):
    """The calls CSV's rows. The Excel form is for people: the table's names (questions,
    hotlines, results), never ids; the data form keeps the ids scripts read."""
    row = table_row if form is exports.Form.EXCEL else call_row
    return (row(record, epochs) for record in records)


def csv_names() -> dict:
    """The Excel form's names for the ids of some columns, in the reader's language."""
    return {"language": lambda lang: i18n.LANGUAGE_NAMES.get(lang, lang),
            "category": i18n.category_name, "outcome": i18n.outcome_name,
            "reached_person": lambda said: {"yes": _("yes"), "no": _("no")}[said]}


@bp.get("/api/reports/summary")
@staff_required(api=True)
def api_summary():
    days, filters = _days(), _filters()
    summary = build_summary(_store(), _menu(), days,
                            float(current_app.config["RUTA_HEALTH_FAILED_SHARE"]), filters)
    return {**summary.to_dict(), "filters": filters.args()}


@bp.get("/api/reports/calls")
@staff_required(api=True)
def api_calls():
    days, filters = _days(), _filters()
    page, per_page = _page_args()
    store = _store()
    records, total = store.calls_page(list(reversed(days)), (page - 1) * per_page, per_page,
                                      filters)
    epochs = KeyEpochs.read(store.r)
    return {"from": days[0], "to": days[-1], "filters": filters.args(), "total": total,
            "page": page,
            "per_page": per_page, "calls": [call_row(r, epochs) for r in records]}
