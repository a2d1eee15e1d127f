"""Two-step sign-in: TOTP codes from an authenticator app (pyotp), the QR code that sets
the app up (segno, drawn as inline SVG), and recovery codes for a lost phone.

Pure: the account fields these values are kept in, and who may use them, are
ivr.staff's; the pages are ivr.reports'.
"""

from __future__ import annotations

import hashlib
import re
import secrets

import pyotp
import segno

ISSUER = "Ruta"  # how the authenticator app names the account ("Ruta: ana")
STEP_SECONDS = 30  # RFC 6238's time step, what every authenticator app uses
DIGITS = 6
# Codes one step old or one step ahead pass too: a phone's clock a little off, or a code
# typed as it changed. No more: each step widens what a guess can hit.
VALID_WINDOW = 1
RECOVERY_CODES = 10
# Letters and digits no one mixes up when reading them off paper (no 0/o, 1/l/i).
RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
RECOVERY_LENGTH = 10  # 49 random bits: with scrypt below, no offline search finds one
# scrypt's cost (16 MiB, tens of milliseconds): one hash a try, as every code of an
# account shares its salt, so a try is one hash whatever the number of codes left.
SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def new_secret() -> str:
    """A new TOTP secret (base32, 160 bits, as RFC 4226 recommends)."""
    return pyotp.random_base32()


def setup_uri(secret: str, name: str) -> str:
    """The otpauth:// URI an authenticator app reads from the QR code."""
    return _totp(secret).provisioning_uri(name=name, issuer_name=ISSUER)


def qr_svg(uri: str, title: str) -> str:
    """The QR code of `uri` as inline SVG, black on a white quiet zone (phones' cameras
    read it on any page colour), named by `title` for screen readers."""
    return segno.make(uri, error="m").svg_inline(
        scale=5, border=4, dark="#000", light="#fff", title=title, svgclass="qr")


def secret_for_typing(secret: str) -> str:
    """The secret in groups of four, for typing it into an app by hand."""
    return " ".join(secret[i:i + 4] for i in range(0, len(secret), 4))


def matching_step(secret: str, code: str, now: float) -> int | None:
    """The time step whose code `code` is (within VALID_WINDOW of `now`), or None.

    What pyotp's `TOTP.verify(code, valid_window=1)` checks, but saying which step
    matched: the caller keeps the last accepted one, so a code is never taken twice."""
    code = re.sub(r"\s", "", code)
    if not re.fullmatch(rf"\d{{{DIGITS}}}", code):
        return None
    totp = _totp(secret)
    current = int(now // STEP_SECONDS)
    for step in range(current - VALID_WINDOW, current + VALID_WINDOW + 1):
        if pyotp.utils.strings_equal(code, totp.generate_otp(step)):
            return step
    return None


def looks_like_a_totp_code(code: str) -> bool:
    return re.fullmatch(rf"\d{{{DIGITS}}}", re.sub(r"\s", "", code)) is not None


def new_recovery_codes() -> list[str]:
    """RECOVERY_CODES codes to write down, each usable once: "abcde-fghjk"."""
    half = RECOVERY_LENGTH // 2
    codes = []
    for _ in range(RECOVERY_CODES):
        code = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_LENGTH))
        codes.append(f"{code[:half]}-{code[half:]}")
    return codes


def new_salt() -> str:
    return secrets.token_hex(16)


def recovery_code_hash(code: str, salt: str) -> str:
    """How a recovery code is kept: scrypt of its letters (typed with or without the
    dash, spaces or capitals), so a copy of the database reveals no code."""
    letters = re.sub(r"[\s-]", "", code).lower()
    return hashlib.scrypt(letters.encode(), salt=bytes.fromhex(salt), **SCRYPT).hex()


def _totp(secret: str) -> pyotp.TOTP:
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)
