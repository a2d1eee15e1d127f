"""One-time changes to old data (ivr.key_migration): the audit log's failed logins that
kept what a visitor typed as the name go, once, on the web's first start after the upgrade
or by `ivr redis forget-typed-logins`. Real Redis seeded with the entries as the versions
before the security log wrote them (`audit(r, form.name.data[:64], "login failed",
address)`), the real app and its audit page. (The `ruta:*` key layout: tests/test_scale.py.)
"""

from __future__ import annotations

import json

from click.testing import CliRunner
from test_admin import Staff

from ivr import create_app, store
from ivr.cli import main as ivr_main
from ivr.key_migration import TYPED_LOGINS
from ivr.versions import AuditAction

TYPED = ['=HYPERLINK("http://evil.example","clic")', "<b>bob</b>", "correct horse battery"]


def seed_old_audit(r) -> None:
    """The audit log as an older version left it: real changes between failed logins."""
    r.xadd(store.AUDIT, {"at": "2026-10-01 08:00:00", "who": "ana", "action": "publish",
                         "detail": "version 1: first menu"})
    for typed in TYPED:
        r.xadd(store.AUDIT, {"at": "2026-10-01 09:00:00", "who": typed,
                             "action": "login failed", "detail": "203.0.113.9"})
    r.xadd(store.AUDIT, {"at": "2026-10-01 09:05:00", "who": "ana", "action": "login",
                         "detail": "198.51.100.4"})


def audit_entries(r) -> list[tuple[str, str, str]]:
    return [(e["who"], e["action"], e["detail"]) for _, e in r.xrange(store.AUDIT)]


def test_the_first_start_removes_typed_failed_logins_once(app_config, redis_client):
    r = redis_client
    seed_old_audit(r)
    app = create_app(app_config)
    assert audit_entries(r) == [
        ("ana", "publish", "version 1: first menu"), ("ana", "login", "198.51.100.4"),
        ("ruta", AuditAction.TYPED_LOGINS_REMOVED, "3")]
    assert json.loads(r.hget(store.MIGRATIONS, TYPED_LOGINS))["removed"] == 3
    page = Staff(app, "ana", "admin", lang="es").page("/admin/audit")
    assert "inicios de sesión fallidos antiguos eliminados" in page
    assert not any(typed in page for typed in ["HYPERLINK", "&lt;b&gt;bob", "horse"])
    # Once: a later start, or another web process, reads one flag and removes nothing.
    r.xadd(store.AUDIT, {"at": "2026-10-02 09:00:00", "who": "late", "action": "login failed",
                         "detail": "203.0.113.9"})
    create_app(app_config)
    assert [who for who, _, _ in audit_entries(r)].count("late") == 1
    assert [a for _, a, _ in audit_entries(r)].count(AuditAction.TYPED_LOGINS_REMOVED) == 1


def test_the_command_removes_them_now_and_says_how_many(redis_server, redis_client):
    seed_old_audit(redis_client)
    runner = CliRunner(env={"REDIS_URL": redis_server.url, "USER": "ops-laura"})
    done = runner.invoke(ivr_main, ["redis", "forget-typed-logins"])
    assert done.exit_code == 0, done.output
    assert "removed 3 failed login(s)" in done.output
    assert audit_entries(redis_client)[-1] == (
        "cli:ops-laura", AuditAction.TYPED_LOGINS_REMOVED, "3")
    again = runner.invoke(ivr_main, ["redis", "forget-typed-logins"])
    assert "removed 0 failed login(s)" in again.output
    assert len(audit_entries(redis_client)) == 3  # publish, login, the one removal
