"""Ruta: a voice call router for the anti-trafficking hotlines of Colombia."""

from __future__ import annotations

import contextlib
from datetime import timedelta

import redis
from flask import Flask
from flask.helpers import get_debug_flag

from ivr import errors, events, i18n, key_migration, logs, security, settings, store
from ivr import menu as menu_config
from ivr.services import Services
from ivr.sessions import Sessions
from ivr.staff import StaffAccounts
from ivr.versions import LiveMenu

REQUIRED_IN_PRODUCTION = ("TWILIO_AUTH_TOKEN", "SECRET_KEY", "CALLER_ID_KEY")


class StartupError(RuntimeError):
    """Ruta must not start like this; the message says what to set."""


def _refuse_the_old_key_layout(r) -> None:
    if r is None:
        return
    try:
        old = key_migration.has_legacy_keys(r)
    except redis.RedisError:  # Redis down: calls are routed anyway; checked next start
        return
    if old:
        raise StartupError(f"Ruta will not start: {key_migration.LEGACY_HELP}")


def _forget_typed_failed_logins(r) -> None:
    """Once, the first start after the upgrade: old audit entries of failed logins keep
    what anyone typed as a name (ivr.key_migration)."""
    with contextlib.suppress(redis.RedisError):  # Redis down: done at a later start
        key_migration.forget_typed_failed_logins_once(r)


def create_app(config: dict | None = None) -> Flask:
    """Build the web app: settings, the menu (checked), and the blueprints."""
    app = Flask(__name__)
    app.config.update(settings.load(config))
    try:
        log_format = logs.log_format(app.config)
    except ValueError as e:
        raise StartupError(f"Ruta will not start: {e}") from e
    if not app.config["RUTA_PREVIEW"]:  # an admin's preview app runs inside a real one
        logs.configure(log_format)
    if app.config["RUTA_ENV"] not in ("production", "development"):
        # A typo ("prod") must not quietly skip the production checks below.
        raise StartupError(f"Ruta will not start: RUTA_ENV={app.config['RUTA_ENV']!r}; "
                           "use production (the default) or development")
    if app.config["RUTA_ENV"] == "production":
        missing = [k for k in REQUIRED_IN_PRODUCTION if not app.config[k]]
        if missing:
            raise StartupError(
                f"Ruta will not start in production without {' and '.join(missing)}: set "
                "them in the environment (the auth token is on your Twilio console; the "
                "secret key is any long random string). For a local try, run `ivr dev`."
            )
        # Flask's debug mode (FLASK_DEBUG=1; its development server's debugger runs any
        # code typed into an error page) is never for a public line.
        if app.debug or get_debug_flag():
            raise StartupError(
                "Ruta will not start in production in Flask's debug mode: unset FLASK_DEBUG "
                "(its debugger would let anyone who sees an error page run code here)."
            )
    try:
        settings.admin_totp_required(app.config)
    except ValueError as e:
        raise StartupError(f"Ruta will not start: {e}") from e
    caller_id = app.config["RUTA_CALLER_ID"]
    if caller_id and not menu_config.E164.match(caller_id):
        raise StartupError(f"Ruta will not start: RUTA_CALLER_ID={caller_id!r} is not an "
                           "E.164 number (+57...) of ours")
    try:
        shipped = menu_config.read_shipped(app.config["RUTA_CONFIG_DIR"],
                                           app.config["RUTA_PROMPTS_DIR"])
        menu = menu_config.build(shipped, app.config["RUTA_MENU_OVERRIDES"])
    except menu_config.ConfigError as e:
        raise StartupError(f"Ruta will not start: {e}") from e
    client, emitter, caller_key = events.connect(app.config)
    if not app.config["RUTA_PREVIEW"]:
        _refuse_the_old_key_layout(client)
    services = app.extensions["ruta"] = Services(shipped, client, emitter, caller_key)
    if app.config["CALLER_ID_KEY"]:  # a new key's "from when" (ivr.caller_keys)
        # A process without the key (a reports host, a test) makes a throwaway one: it is
        # recorded only if a call is pseudonymised with it (ivr.voice), never at start,
        # or the reports would show a change of pseudonyms that no caller met.
        caller_key.note_in_use(client)
    if staff_client := store.staff_pages_client(app.config):
        services.store = store.Store(staff_client, int(app.config["RUTA_RETENTION_DAYS"]))
        services.staff = StaffAccounts(staff_client)
        if not app.config["RUTA_PREVIEW"]:
            _forget_typed_failed_logins(staff_client)
        services.sessions = Sessions(
            staff_client, timedelta(hours=int(app.config["RUTA_SESSION_HOURS"])),
            timedelta(minutes=int(app.config["RUTA_SESSION_IDLE_MINUTES"])))
    # The newest version an administrator published, else the shipped files.
    services.live_menu = LiveMenu(shipped, client, menu)

    from ivr import admin, downloads, fast_webhooks, ops, reports, voice

    app.register_blueprint(voice.bp)
    app.register_blueprint(voice.audio_bp)  # recorded prompts, fetched by Twilio
    security.csrf.exempt(voice.bp)  # Twilio proves itself with its signature instead
    app.register_blueprint(reports.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(downloads.bp)  # the big CSV exports, built by the worker
    fast_webhooks.init_app(app)  # the webhooks' ordinary case, answered without Flask
    ops.init_app(app)  # /healthz, /readyz, /metrics and the webhook counters
    security.init_app(app)
    i18n.init_app(app)  # the staff pages in Spanish (Colombia) or English
    errors.init_app(app)  # styled error pages for people; webhooks and API as they were
    return app
