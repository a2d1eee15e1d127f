"""One source of settings for the web app, the worker and the `ivr` command.

Defaults, then the environment (the names a Procfile platform sets), then overrides.
"""

from __future__ import annotations

import os

from ivr import menu

DEFAULTS: dict[str, object] = {
    "RUTA_ENV": "production",  # "development" only under `ivr dev` and the tests
    "TWILIO_AUTH_TOKEN": "",  # checks X-Twilio-Signature
    # Also accepted while the auth token is rotated (docs/deploy.md); unset otherwise.
    "TWILIO_SECONDARY_AUTH_TOKEN": "",
    "SECRET_KEY": "",  # signs staff sessions
    "CALLER_ID_KEY": "",  # keys the caller pseudonyms (web only); required in production
    "REDIS_URL": "",
    "PUBLIC_BASE_URL": "",  # e.g. https://ruta.example.org: the URL Twilio signs
    # The E.164 number of ours that hotlines see as caller ID (one of our Twilio numbers);
    # unset: the number the caller dialled, when that is E.164. `ivr twilio test-line`
    # calls from it.
    "RUTA_CALLER_ID": "",
    "RUTA_CONFIG_DIR": str(menu.CONFIG_DIR),
    "RUTA_PROMPTS_DIR": str(menu.PROMPTS_DIR),
    "RUTA_SPOOL_DIR": "spool",  # where events wait while Redis is down
    "RUTA_RETENTION_DAYS": 180,  # call records and events; day counters stay
    # Largest request body accepted (bytes); bigger ones get a 413 before anything reads
    # them. Twilio's webhook bodies are 1-3 KB; the largest staff form is one option's
    # example phrases (the Spanish danger examples: about 67 KB url-encoded): 256 KiB
    # leaves room for administrators to add to them.
    "RUTA_MAX_REQUEST_BYTES": 256 * 1024,
    "RUTA_HEALTH_FAILED_SHARE": 0.3,  # flag a hotline failing more than this in 24 h
    # 1: a publish needs a second admin's approval, 0: it does not; unset: 1 in production
    "RUTA_TWO_PERSON_RULE": "",
    # "required": an administrator without two-step sign-in (TOTP) is sent to set it up
    # before any admin page; "optional": they may. Unset: required in production.
    "RUTA_ADMIN_TOTP": "",
    # A staff session ends this many hours after its login however busy, and sooner after
    # this many minutes unused (ivr.sessions).
    "RUTA_SESSION_HOURS": 8,
    "RUTA_SESSION_IDLE_MINUTES": 30,
    "RUTA_TRUSTED_PROXIES": 0,
    # 1: Twilio's ordinary webhook requests are answered without Flask (ivr.fast_webhooks),
    # with the same answers and events; 0: Flask answers every request.
    "RUTA_FAST_WEBHOOKS": True,  # proxies in front whose X-Forwarded-* headers we trust
    # Operations (ivr.ops, ivr.logs):
    "RUTA_READY_MAX_QUEUE": 500,  # /readyz: 503 past this many drain jobs waiting in RQ
    # (at most 5 are enqueued a second: over a minute and a half of busy calls, no worker)
    "RUTA_READY_MAX_SPOOL": 1000,  # /readyz: 503 past this many events in this host's spool
    # (normally 0: events wait there only while Redis is down, until the worker replays)
    "RUTA_METRICS_TOKEN": "",  # /metrics wants "Authorization: Bearer <it>"; unset: 404
    # in production, open in development
    "RUTA_LOG_FORMAT": "",  # "json" or "text"; unset: json in production, text in development
    # Alerts to staff (ivr.alerts, workers.alerts; docs/operations.md): where they go...
    "RUTA_ALERT_WEBHOOK_URL": "",  # a Slack, Teams or Google Chat incoming webhook
    "RUTA_SMTP_URL": "",  # smtp://user:password@host:587 (STARTTLS) or smtps://...:465
    "RUTA_SMTP_FROM": "ruta@localhost",  # the alerts' sender address
    "RUTA_ALERT_EMAIL": "",  # who gets them by e-mail, comma-separated
    # ... and when: a line whose transfers over 60 minutes fail more than this share,
    # with at least this many of them; or whose last this many all failed; or no call
    # for this many minutes (0: never) in these hours (Bogotá; "24/7": always).
    "RUTA_ALERT_FAILED_SHARE": 0.5,
    "RUTA_ALERT_MIN_ATTEMPTS": 5,
    "RUTA_ALERT_FAILED_IN_A_ROW": 3,
    "RUTA_ALERT_SILENCE_MINUTES": 120,
    "RUTA_ALERT_SILENCE_HOURS": "lun-dom 07:00-22:00",
    "RUTA_ALERT_CHECK_SECONDS": 60,  # how often the check runs (the `cron:` process)
    "RUTA_PREVIEW": False,  # set only for the admin page's "try the call" apps
    "RUTA_MENU_OVERRIDES": None,  # a draft to serve instead of the live version (preview)
}


def load(overrides: dict | None = None) -> dict:
    """The settings: defaults < environment < overrides, with numbers as numbers."""
    settings = dict(DEFAULTS)
    for name, default in DEFAULTS.items():
        if name in os.environ:
            raw = os.environ[name]
            if isinstance(default, bool):
                settings[name] = raw.strip().lower() in ("1", "true", "yes")
            elif isinstance(default, int | float):
                settings[name] = type(default)(raw)
            else:
                settings[name] = raw
    settings.update(overrides or {})
    return settings


def two_person_rule(config) -> bool:
    """Does a publish need a second administrator? On unless RUTA_TWO_PERSON_RULE says
    otherwise, except in development (`ivr dev`, the tests), where one admin publishes.
    (A change to a line that shows callers' numbers always needs two: ivr.versions.)"""
    value = str(config["RUTA_TWO_PERSON_RULE"]).strip()
    if value == "":
        return config["RUTA_ENV"] == "production"
    return value.lower() not in ("0", "false", "no", "off")


ADMIN_TOTP_CHOICES = ("required", "optional")


def admin_totp_required(config) -> bool:
    """Must an administrator sign in with a code to open the admin pages? Yes unless
    RUTA_ADMIN_TOTP=optional, except in development (`ivr dev`, the tests), where it is
    optional unless set. Anything else is a ValueError: a typo must not turn it off."""
    value = str(config["RUTA_ADMIN_TOTP"]).strip().lower()
    if value == "":
        return config["RUTA_ENV"] == "production"
    if value not in ADMIN_TOTP_CHOICES:
        raise ValueError(f"RUTA_ADMIN_TOTP={value!r}: use required or optional")
    return value == "required"
