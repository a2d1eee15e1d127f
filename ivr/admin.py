"""Administrators: what callers hear and where they are sent (read-only for now)."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template

from ivr.security import current_staff, staff_required

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.get("")
@staff_required("admin")
def index():
    """The live prompts side by side per language, and the hotline directory."""
    menu = current_app.extensions["ruta.menu"]
    keys = sorted({k for texts in menu.prompts.values() for k in texts})
    return render_template("admin.html", menu=menu, keys=keys, staff=current_staff())
