"""Hostile input to the staff forms: whatever a logged-in administrator's browser (or a
tampered one) POSTs to an admin or login form, the answer is a page or a 4xx, never a 500.

The same property-based approach as tests/test_hostile.py's for the webhooks: hypothesis
writes the form bodies (the forms' own field names with odd values, unknown fields,
repeats, JSON where JSON is expected and where it is not), a real app on the session's
Redis answers them.
"""

from __future__ import annotations

import json
import string

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_admin import Staff
from werkzeug.datastructures import MultiDict

from ivr import create_app, store

pytestmark = pytest.mark.slow

# Every form a staff page posts, and its fields (as the pages name them).
FORMS = {
    "/admin/prompts": ["prompt:es:greeting", "prompt:en:greeting", "prompt:es:main_menu",
                       "prompt:es:transfer", "draft"],
    "/admin/prompts/budget": ["prompt:es:greeting", "prompt:es:transfer", "draft"],
    "/admin/hotlines": ["hotline:labour:dial", "hotline:labour:hours",
                        "hotline:labour:say", "hotline:icbf:ring_seconds",
                        "hotline:emergency:show_caller", "hotline:icbf:screen",
                        "hotline:icbf:min_answered"],
    "/admin/examples": ["examples:welcome.2:es", "examples:danger:en", "draft"],
    "/admin/publish": ["note", "seen", "draft"],
    "/admin/approve": ["seen", "note", "draft"],
    "/admin/discard": ["draft", "confirm"],
    "/admin/rollback": ["version", "note", "draft", "replace"],
    "/admin/restore": ["revision", "draft"],
    "/admin/try": ["moves", "dials", "press", "say", "silent", "restart", "dial_result"],
    "/admin/sessions/end": ["session"],
    "/login": ["name", "password"],
    "/logout": [],
}

odd_text = st.one_of(
    st.text(max_size=300),
    st.text(string.printable, max_size=50),
    st.sampled_from(["", " ", "0", "-1", "99999999999999999999", "1e309", "NaN", "null",
                     "[]", "{}", '[["press"]]', '[["fly", "1"]]', '[[1, 2]]', '"x"',
                     '[["say", {"a": 1}]]', "<script>alert(1)</script>", "=1+1",
                     "\x00", "\ud7ff", "ñandú", "+57 601 555 0100", "sip:x@y", "24/7",
                     "lun-vie 08:00-17:00", "mon-fri 25:00-26:00", "true", "on", "yes",
                     "0.0", "1.-1", "0.99999999999999999999", "-1.1"]),
    st.lists(st.lists(st.text(max_size=8), max_size=3), max_size=4).map(json.dumps),
)


@st.composite
def form_bodies(draw, path: str) -> list[tuple[str, str]]:
    names = FORMS[path] + ["", "csrf_token_x", "prompt:fr:greeting", "hotline:nowhere:dial"]
    pairs = draw(st.lists(st.tuples(st.sampled_from(names), odd_text), max_size=8))
    return pairs


@pytest.fixture(scope="module")
def admin(redis_server, tmp_path_factory):
    """An administrator logged in to a real app on the session's Redis."""
    r = redis.Redis.from_url(redis_server.url)
    r.flushdb()
    app = create_app({
        "RUTA_ENV": "development", "TWILIO_AUTH_TOKEN": "hostile-admin-token",
        "SECRET_KEY": "hostile-admin-secret", "REDIS_URL": redis_server.url,
        "RUTA_SPOOL_DIR": str(tmp_path_factory.mktemp("hostile-admin") / "spool"),
    })
    try:
        yield Staff(app, "ana")
    finally:
        r.flushdb()
        r.close()


def never_a_500(admin, path: str, pairs: list[tuple[str, str]]) -> None:
    body = MultiDict([("csrf_token", admin.token), *pairs])
    resp = admin.client.post(path, data=body)
    assert resp.status_code < 500, (path, pairs, resp.status_code)
    if path == "/logout" and resp.status_code < 400:  # log back in for the next example
        limits = redis.Redis.from_url(admin.client.application.config["REDIS_URL"])
        for key in limits.scan_iter(store.LIMITS_PREFIX + "*"):  # /login's examples' failures
            limits.delete(key)
        limits.close()
        admin.__init__(admin.client.application, "ana", add=False)


SLOW_FORMS = settings(max_examples=40, deadline=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture,
                                             HealthCheck.too_slow])


@pytest.mark.parametrize("path", sorted(FORMS))
def test_any_form_body_gets_a_page_or_a_4xx_never_a_500(admin, path):
    @SLOW_FORMS
    @given(pairs=form_bodies(path))
    def check(pairs):
        never_a_500(admin, path, pairs)

    check()


def test_try_the_call_refuses_moves_the_page_did_not_send(admin):
    """Found by the security review: a malformed `moves` answered 500."""
    for moves in ('{"a": 1}', '[["fly", "1"]]', '[["press"]]', "[[1, 2]]", "not json", '"x"'):
        resp = admin.client.post("/admin/try", data={"csrf_token": admin.token,
                                                     "moves": moves, "press": "1"})
        assert resp.status_code == 400, moves
    fine = admin.client.post("/admin/try", data={"csrf_token": admin.token,
                                                 "moves": '[["press", "1"]]', "press": "2"})
    assert fine.status_code == 200
