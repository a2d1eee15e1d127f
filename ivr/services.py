"""What a running app holds besides its configuration: one typed container, kept at
`app.extensions["ruta"]` (Flask's place for an extension's state)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import Flask, current_app

if TYPE_CHECKING:  # annotations only: the services' modules import this one
    import redis
    from limits.strategies import MovingWindowRateLimiter

    from ivr.caller_keys import CallerKey
    from ivr.events import Emitter
    from ivr.menu import Menu, Shipped
    from ivr.ops import Metrics
    from ivr.sessions import Sessions
    from ivr.staff import StaffAccounts
    from ivr.store import Store
    from ivr.versions import LiveMenu


@dataclass
class Services:
    shipped: Shipped  # the configuration files as read at start
    redis: redis.Redis | None  # the webhooks' client: fails fast, never retries
    emitter: Emitter | None  # None in an admin's "try the call" preview: not a call
    caller_key: CallerKey  # the key of callers' pseudonyms (and its fingerprint)
    store: Store | None = None  # call data for the staff pages; None without Redis
    staff: StaffAccounts | None = None  # staff accounts and API tokens; None without Redis
    sessions: Sessions | None = None  # staff sessions; None without Redis
    live_menu: LiveMenu | None = None  # the newest published menu
    login_limiter: MovingWindowRateLimiter | None = None
    metrics: Metrics | None = None  # None in a preview


def of(app: Flask | None = None) -> Services:
    """The services of `app`, or of the app handling this request."""
    return (app or current_app).extensions["ruta"]


def current_menu() -> Menu:
    """The menu this request is served with (the newest published version)."""
    return of().live_menu.get()
