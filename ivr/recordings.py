"""Recorded prompts: a WAV or MP3 an administrator gives a prompt, checked before it is kept.

A recording is named by its content (sha256 and kind: `<sha256>.wav`), so the URL Twilio
fetches it from never changes meaning and can be cached for ever. mutagen reads its
headers and frames: the kind it really is (whatever its name says) and its real duration,
which the spoken-seconds budget counts (ivr.menu.spoken_paths).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import PurePath

import mutagen
from mutagen.mp3 import MP3
from mutagen.wave import WAVE

from ivr.message import N_, Message

MAX_BYTES = 1_000_000  # 1 MB: a minute of 8 kHz WAV, several of MP3
MAX_SECONDS = 60
CONTENT_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg"}  # what Twilio's <Play> takes
_KINDS = {"wav": WAVE, "mp3": MP3}


@dataclass(frozen=True)
class Recording:
    """A checked recording: its content's sha256, its kind ("wav" or "mp3"), its length."""

    sha256: str
    kind: str
    seconds: float

    @property
    def name(self) -> str:
        """The file name its URL ends with (/audio/<name>), unique to its content."""
        return f"{self.sha256}.{self.kind}"

    def to_json(self) -> dict:
        """As an overrides document keeps it (ivr.versions)."""
        return {"sha256": self.sha256, "kind": self.kind, "seconds": self.seconds}

    @classmethod
    def from_json(cls, raw: dict) -> Recording:
        return cls(str(raw["sha256"]), str(raw["kind"]), float(raw["seconds"]))


class RecordingRefused(ValueError):
    """Why an upload is not kept, as a Message shown in the reader's language."""

    def __init__(self, message: Message):
        self.message = message
        super().__init__(str(message))


def checked(data: bytes, file_name: str) -> Recording:
    """The recording in `data`, or RecordingRefused: not a WAV or MP3 as its name says,
    not decodable, empty, longer than a minute or larger than 1 MB."""
    claimed = PurePath(file_name or "").suffix.lower().lstrip(".")
    if claimed not in _KINDS:
        raise RecordingRefused(Message(N_(
            "a recording must be a WAV or MP3 file (.wav or .mp3)")))
    if len(data) > MAX_BYTES:
        raise RecordingRefused(Message(N_(
            "the recording is %(size)s kB; at most %(most)s kB are allowed"),
            {"size": round(len(data) / 1000), "most": MAX_BYTES // 1000}))
    real, audio = _parsed(data)
    if audio is None:
        raise RecordingRefused(Message(N_(
            "the file cannot be played: it is not a WAV or MP3 recording")))
    if real != claimed:
        raise RecordingRefused(Message(N_(
            "the file is named .%(claimed)s but holds %(real)s audio"),
            {"claimed": claimed, "real": real.upper()}))
    seconds = round(float(audio.info.length or 0), 2)
    if seconds <= 0:
        raise RecordingRefused(Message(N_("the recording is empty")))
    if seconds > MAX_SECONDS:
        raise RecordingRefused(Message(N_(
            "the recording lasts %(seconds)s s; at most %(most)s s are allowed"),
            {"seconds": round(seconds), "most": MAX_SECONDS}))
    return Recording(hashlib.sha256(data).hexdigest(), claimed, seconds)


def _parsed(data: bytes):
    """(kind, mutagen's reading) of the first kind that reads `data`, or (None, None).
    Each kind is tried by its own reader: mutagen's guess by content alone misses an MP3
    without an ID3 tag. WAV first: its RIFF header is strict, an MP3 frame sync is not."""
    for kind, reader in _KINDS.items():
        try:
            return kind, reader(io.BytesIO(data))
        except (mutagen.MutagenError, ValueError, EOFError):
            continue
    return None, None
