"""Supervisors' big exports (ivr.export_jobs): the progress page and the parts' downloads.
Only the person who asked for an export sees it."""

from __future__ import annotations

import zlib
from datetime import datetime

from flask import Blueprint, Response, abort, render_template, request

from ivr import export_jobs, exports, i18n, services
from ivr.export_jobs import Export, State, part_bytes, part_size, read
from ivr.message import N_, Message
from ivr.security import current_staff, staff_required
from ivr.vocabulary import BOGOTA

bp = Blueprint("downloads", __name__)
REFRESH_SECONDS = 3  # the progress page reloads itself this often while the file is built


def _export(export_id: str) -> Export:
    """The export, if it is the reader's (someone else's looks like one that expired)."""
    redis = services.of().redis
    if redis is None:
        abort(503, Message(N_("Redis is not configured (REDIS_URL)")))
    export = read(redis, export_id)
    if export is None or export.who != current_staff().name:
        abort(404, Message(N_("No such export: it may have expired. Ask for it again from "
                              "the dashboard.")))
    return export


@bp.get("/reports/exports/<export_id>")
@staff_required()
def progress(export_id: str):
    """How far the export is, and when it is done, the link to each part."""
    export = _export(export_id)
    page = render_template(
        "export.html", export=export, staff=current_staff(), when=i18n.moment,
        asked=datetime.fromtimestamp(export.asked_at, BOGOTA), part_rows=export_jobs.PART_ROWS,
        form_name=exports.Form(export.form),
        parts=[(n, part, part_file(export, n)) for n, part in enumerate(export.parts)],
        dashboard_args={k: v for k, v in export.query.items() if k != "form"})
    # Reloaded by the browser while the worker writes (no script needed).
    headers = {"Refresh": str(REFRESH_SECONDS)} if export.state is State.WORKING else {}
    return page, 200, headers


def part_file(export: Export, n: int) -> str:
    """ruta-calls-2026-11-01-to-2026-11-30-part-2-of-5-excel.csv (no part when one)."""
    stem = export.stem
    if len(export.parts) > 1:
        stem += f"-part-{n + 1}-of-{len(export.parts)}"
    return exports.filename(stem, exports.Form(export.form))


@bp.get("/reports/exports/<export_id>/<int:part>")
@staff_required()
def download(export_id: str, part: int):
    """One part of an export, as stored (gzip) to a client that takes it so, else
    unpacked on the way: both are the same CSV once saved."""
    export = _export(export_id)
    if part >= len(export.parts):
        abort(404)
    redis = services.of().redis
    headers = {"Content-Disposition": f'attachment; filename="{part_file(export, part)}"',
               "Vary": "Accept-Encoding"}
    pieces = part_bytes(redis, export_id, part)
    if "gzip" in request.accept_encodings:
        headers |= {"Content-Encoding": "gzip",
                    "Content-Length": str(part_size(redis, export_id, part))}
        return Response(pieces, mimetype="text/csv", headers=headers)
    return Response(_unpacked(pieces), mimetype="text/csv", headers=headers)


def _unpacked(pieces):
    gunzip = zlib.decompressobj(wbits=31)
    for piece in pieces:
        yield gunzip.decompress(piece)
    yield gunzip.flush()
