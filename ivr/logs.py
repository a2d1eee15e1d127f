"""Log lines: one JSON object a line in production, readable text in development.

`configure()` gives the root logger one handler of ours (on stderr), used by the web app
(`create_app`) and the RQ worker (`workers.worker`); config/gunicorn.conf.py gives
gunicorn's own messages the same `JsonFormatter`. A JSON line has `time` (UTC), `level`,
`logger`, `message`, `pid`, the `call_sid` when it was written in a webhook request, and
`exception` when there is one.

A caller's number is never logged: no code of ours logs the `From` or `Caller` of a
request, and as a second guard a line written in a webhook request has that request's
caller number (as sent, and its digits) replaced by "[caller]".
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from contextvars import ContextVar

FORMATS = ("json", "text")
HIDDEN = "[caller]"
_CALL_SID = re.compile(r"[A-Za-z0-9]{1,64}")
_MARK = "_ruta_handler"
# The form of the webhook ivr.fast_webhooks is answering outside Flask, while it does.
FAST_WEBHOOK_FORM: ContextVar[dict | None] = ContextVar("ruta_fast_webhook", default=None)


def log_format(config) -> str:
    """RUTA_LOG_FORMAT if set, else json in production and text in development."""
    chosen = str(config.get("RUTA_LOG_FORMAT") or "").strip().lower()
    if not chosen:
        return "text" if config.get("RUTA_ENV") == "development" else "json"
    if chosen not in FORMATS:
        raise ValueError(f"RUTA_LOG_FORMAT must be json or text, not {chosen!r}")
    return chosen


def _webhook_request():
    """(CallSid, caller numbers) of the Twilio webhook being served, else (None, ())."""
    try:
        form = FAST_WEBHOOK_FORM.get()
        if form is None:
            from flask import has_request_context, request

            if not has_request_context() or request.blueprint != "voice":
                return None, ()
            form = request.form
        sid = form.get("CallSid", "")
        numbers = [form.get("From", ""), form.get("Caller", "")]
    except Exception:  # noqa: BLE001 - a log line must never fail for its decoration
        return None, ()
    return (sid if _CALL_SID.fullmatch(sid) else None), numbers


def _forms(numbers) -> list[str]:
    """The ways a caller's number may be written: as sent, its digits, the national part."""
    forms = set()
    for number in numbers:
        digits = re.sub(r"\D", "", number)
        if len(digits) >= 5:  # "anonymous", "restricted"...: no number
            forms.update({number.strip(), digits, digits[-10:]})
    return sorted((f for f in forms if len(f) >= 5), key=len, reverse=True)


def _hide(text: str, numbers) -> str:
    for form in _forms(numbers):
        text = text.replace(form, HIDDEN)
    return text


class JsonFormatter(logging.Formatter):
    """One JSON object a line (a traceback stays inside its `exception` string)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        sid, numbers = _webhook_request()
        if sid:
            entry["call_sid"] = sid
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return _hide(json.dumps(entry, ensure_ascii=False), numbers)


class TextFormatter(logging.Formatter):
    """`2026-11-22 10:00:00,123 INFO ivr.events [CA…]: message`, for a terminal."""

    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s%(call)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        sid, numbers = _webhook_request()
        record.call = f" [{sid}]" if sid else ""
        return _hide(super().format(record), numbers)


FORMATTERS = {"json": JsonFormatter, "text": TextFormatter}


class _Stderr(logging.StreamHandler):
    """Writes to whatever sys.stderr is now (a test's capture, gunicorn's redirect)."""

    def __init__(self):
        logging.Handler.__init__(self)

    @property
    def stream(self):
        return sys.stderr


def configure(fmt: str, level: int = logging.INFO) -> None:
    """Send the process's log records to stderr in `fmt`; calling it again only changes
    the format (one handler, however many apps a process builds)."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, _MARK, False)), None)
    if handler is None:
        handler = _Stderr()
        setattr(handler, _MARK, True)
        root.addHandler(handler)
    handler.setFormatter(FORMATTERS[fmt]())
    if root.getEffectiveLevel() > level:
        root.setLevel(level)


def adopt(*names: str) -> None:
    """Loggers that set up handlers of their own (RQ's) write through ours instead."""
    for name in names:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True


class QuietRoutineJobs(logging.Filter):
    """Drops RQ's INFO lines about routine jobs (`functions`, dotted names): under `ivr dev`
    the alert check every minute made five lines a minute that say nothing happened (the
    cron's "Enqueued job check", the worker's start, success, "Job OK" and result lines),
    burying the calls' own. Warnings and errors (a job failing) always pass, and so do
    the alerts: the check logs each one itself, and their delivery jobs are not routine."""

    def __init__(self, *functions: str):
        super().__init__()
        self.described = tuple(f"{name}(" for name in functions)  # a job's description
        self.enqueued = tuple(f"Enqueued job {name.rsplit('.', 1)[-1]} to "
                              for name in functions)  # rq cron's line
        self.running: set[str] = set()  # ids of the routine jobs seen starting

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:
            return True
        text = record.getMessage()
        if text.startswith(self.enqueued):
            return False
        if any(name in text for name in self.described):
            # The worker's "Worker w: queue: description (job id)": later lines name the id.
            if str(record.msg).endswith("(%s)") and isinstance(record.args, tuple):
                self.running.add(str(record.args[-1]))
            return False
        job = next((job for job in self.running if job in text), None)
        if job is None:
            return True
        if " result " in text:  # RQ's last line for a job that succeeded
            self.running.discard(job)
        return False


def quiet_routine_jobs(logger: str, *functions: str) -> None:
    """Give `logger` (RQ's) a QuietRoutineJobs filter for `functions`, once."""
    target = logging.getLogger(logger)
    if not any(isinstance(f, QuietRoutineJobs) for f in target.filters):
        target.addFilter(QuietRoutineJobs(*functions))
