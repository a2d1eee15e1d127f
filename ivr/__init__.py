"""Ruta: a voice call router for the anti-trafficking hotlines of Colombia."""

from __future__ import annotations

import os

from flask import Flask

from ivr import menu as menu_config

# Settings read from the environment (the names Procfile platforms and `ivr dev` set).
ENV_SETTINGS = (
    "TWILIO_AUTH_TOKEN", "SECRET_KEY", "REDIS_URL", "PUBLIC_BASE_URL", "RUTA_ENV",
    "RUTA_CONFIG_DIR", "RUTA_PROMPTS_DIR",
)
REQUIRED_IN_PRODUCTION = ("TWILIO_AUTH_TOKEN", "SECRET_KEY")


class StartupError(RuntimeError):
    """Ruta must not start like this; the message says what to set."""


def create_app(config: dict | None = None) -> Flask:
    """Build the web app: settings, the menu (checked), and the blueprints."""
    app = Flask(__name__)
    app.config.from_mapping(
        RUTA_ENV="production",  # "development" only under `ivr dev` and the tests
        TWILIO_AUTH_TOKEN="",
        SECRET_KEY="",
        REDIS_URL="",
        PUBLIC_BASE_URL="",  # e.g. https://ruta.example.org: the URL Twilio signs
        RUTA_CONFIG_DIR=str(menu_config.CONFIG_DIR),
        RUTA_PROMPTS_DIR=str(menu_config.PROMPTS_DIR),
    )
    app.config.update({k: os.environ[k] for k in ENV_SETTINGS if k in os.environ})
    app.config.update(config or {})
    if app.config["RUTA_ENV"] == "production":
        missing = [k for k in REQUIRED_IN_PRODUCTION if not app.config[k]]
        if missing:
            raise StartupError(
                f"Ruta will not start in production without {' and '.join(missing)}: set "
                "them in the environment (the auth token is on your Twilio console; the "
                "secret key is any long random string). For a local try, run `ivr dev`."
            )
    try:
        menu = menu_config.load(app.config["RUTA_CONFIG_DIR"], app.config["RUTA_PROMPTS_DIR"])
    except menu_config.ConfigError as e:
        raise StartupError(f"Ruta will not start: {e}") from e
    app.extensions["ruta.menu"] = menu

    from ivr import voice

    app.register_blueprint(voice.bp)
    return app
