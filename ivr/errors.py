"""What a person sees when a staff page fails: the staff layout, in their language.

Only people get these pages. Twilio's webhooks (/voice), the health and metrics
endpoints and the static files keep Werkzeug's plain answers, as before; the JSON API
answers `{"error": ...}` in English (it is language-neutral).

A view that refuses a request says why with an ivr.message.Message as the abort's
description: the page shows it translated, the API as written.
"""

from __future__ import annotations

from flask import render_template, request
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from ivr.i18n import shown
from ivr.message import Message
from ivr.security import SESSIONLESS, staff_if_readable

NOT_FOR_PEOPLE = (*SESSIONLESS, "/static/")

# Per status: a heading and what the person can do about it.
PAGES = {
    400: (_l("That request could not be used"),
          _l("Something in the address or the form was not as expected. Go back and try "
             "again.")),
    403: (_l("This page is not for your account"),
          _l("Your role does not open this page. An administrator can change your role.")),
    404: (_l("There is no such page"),
          _l("Check the address, or start again from the reports.")),
    405: (_l("That request could not be used"),
          _l("This page does not take that kind of request. Go back and use its buttons.")),
    413: (_l("What was sent is too large"),
          _l("The form was larger than Ruta accepts. Send less at a time.")),
    429: (_l("Too many attempts"),
          _l("Wait a minute and try again.")),
    500: (_l("Something went wrong on our side"),
          _l("The error has been logged. Try again in a moment; if it happens again, tell "
             "the team that runs Ruta what you were doing.")),
    503: (_l("Ruta cannot answer this right now"),
          _l("A service Ruta needs is not available. Try again in a moment.")),
}
CSRF_PAGE = (_l("This form has expired"),
             _l("The form was open too long or came from another page. Go back, reload the "
                "page and send it again."))


def init_app(app) -> None:
    app.register_error_handler(HTTPException, error_page)


def error_page(error: HTTPException):
    """The styled page for a person; the same answer as before for anything else."""
    if request.path.startswith(NOT_FOR_PEOPLE):
        return error
    if request.path.startswith("/api/"):
        return {"error": str(error.description)}, error.code
    title, explanation = CSRF_PAGE if isinstance(error, CSRFError) else PAGES.get(
        error.code, PAGES[500] if (error.code or 500) >= 500 else PAGES[400])
    detail = shown(error.description) if isinstance(error.description, Message) else None
    staff = staff_if_readable()  # None too when Redis is what failed
    response = error.get_response()  # keeps headers such as Allow (405) and Retry-After
    response.set_data(render_template("error.html", title=title, explanation=explanation,
                                      detail=detail, staff=staff, code=error.code))
    response.mimetype = "text/html"
    return response
