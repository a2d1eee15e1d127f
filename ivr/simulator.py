"""A simulated phone call: plays Twilio's part against our webhooks.

It posts the parameters Twilio posts, signs every request with twilio's own
`RequestValidator` algorithm and the auth token, follows the TwiML we answer with
(Say, Play, Pause, Gather, Redirect, Dial, Hangup), and answers each question with the
caller's next move. Used by `ivr call`, by the tests, and by the load benchmarks.
"""

from __future__ import annotations

import re
import secrets
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from twilio.request_validator import RequestValidator

from ivr.menu import E164
from ivr.message import N_, Message
from ivr.twiml import TWILIO_RING_PADDING  # Twilio rings about 5 s past <Dial timeout>
from ivr.vocabulary import CallStatus, DialStatus

# How a simulated hotline answers (`--dial-result`): Twilio's DialCallStatus values, and
# MACHINE: a voicemail or a line's own menu that answers and hangs up (Twilio says
# `completed`).
MACHINE = "machine"
DIAL_RESULTS = (DialStatus.COMPLETED, MACHINE, DialStatus.BUSY, DialStatus.NO_ANSWER,
                DialStatus.FAILED, DialStatus.CANCELED)
# A hotline that does not answer, in the transcript: Twilio's status, as it is in English.
DIAL_RESULT_WORDS = {DialStatus.BUSY: N_("busy"), DialStatus.NO_ANSWER: N_("no-answer"),
                     DialStatus.FAILED: N_("failed"), DialStatus.CANCELED: N_("canceled")}
TALK_SECONDS = 95  # how long a simulated person talks
MACHINE_SECONDS = 4  # how long a simulated machine keeps the line
WORDS_PER_SECOND = 2.5
# post(url, params, headers) -> (HTTP status, body)
Transport = Callable[[str, dict, dict], tuple[int, str]]


MOVE_KINDS = ("press", "say", "silent")


@dataclass(frozen=True)
class Move:
    """What the caller does at a question: press a key, say something, or stay silent."""

    kind: str  # one of MOVE_KINDS
    value: str = ""
    confidence: float = 0.92


@dataclass
class Line:
    """One line of the transcript: who (ruta, caller, dial, hotline) and what.

    What Ruta says is the prompt's text, in `language`; the simulator's own words (what
    the caller does, what rings) are in English in `text`, and `message` keeps them for
    a page to translate."""

    who: str
    text: str
    language: str = ""
    asked_at: str = ""  # a caller's move: the URL of the question it answers
    message: Message | None = None
    audio: str = ""  # a recording played (<Play>): its URL

    def __str__(self) -> str:
        lang = f" [{self.language}]" if self.language else ""
        return f"{self.who:>7} ▸{lang} {self.text}"


@dataclass
class CallTranscript:
    call_sid: str
    lines: list[Line] = field(default_factory=list)
    dialed: list[str] = field(default_factory=list)
    hung_up_by: str = ""  # "ruta" (a <Hangup/>), "caller" (ran out of moves) or "limit"
    requests: int = 0

    def heard(self) -> str:
        """Everything the caller heard, as one string."""
        return " ".join(line.text for line in self.lines if line.who == "ruta")


def http_transport(url: str, params: dict, headers: dict) -> tuple[int, str]:
    """POST a form over HTTP (for a server started with `ivr dev` or gunicorn)."""
    data = urllib.parse.urlencode(params).encode()
    req = urllib.request.Request(url, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def flask_transport(app) -> Transport:
    """POST through Flask's test client: the whole app, in this process."""
    client = app.test_client()

    def post(url: str, params: dict, headers: dict) -> tuple[int, str]:
        parts = urllib.parse.urlsplit(url)
        resp = client.post(
            parts.path, query_string=parts.query, data=params, headers=headers,
            base_url=f"{parts.scheme}://{parts.netloc}",
        )
        return resp.status_code, resp.get_data(as_text=True)

    return post


class SimulatedCall:
    """One call from a caller who makes `moves` and hotlines that answer `dial_results`."""

    def __init__(
        self,
        base_url: str,
        token: str,
        transport: Transport = http_transport,
        caller: str = "+573001234567",
        max_requests: int = 80,
    ):
        self.base_url = base_url.rstrip("/")
        self.validator = RequestValidator(token)
        self.transport = transport
        self.caller = caller
        self.max_requests = max_requests

    def signed_post(self, url: str, params: dict) -> tuple[int, str]:
        signature = self.validator.compute_signature(url, params)
        return self.transport(url, params, {"X-Twilio-Signature": signature})

    def run(
        self,
        moves: Iterable[Move] = (),
        dial_results: Iterable[str] = (),
        on_line: Callable[[Line], None] | None = None,
    ) -> CallTranscript:
        """Play the call to its end; a caller out of moves hangs up at the next question."""
        moves, dial_results = list(moves), list(dial_results)
        call = CallTranscript(call_sid="CA" + secrets.token_hex(16))
        base = {
            "CallSid": call.call_sid, "AccountSid": "AC" + "0" * 32, "From": self.caller,
            "To": "+576015550100", "CallStatus": CallStatus.IN_PROGRESS, "ApiVersion": "2010-04-01",
            "Direction": "inbound",
        }

        def note(who: str, said: str | Message, language: str = "", asked_at: str = "",
                 audio: str = "") -> None:
            message = said if isinstance(said, Message) else None
            call.lines.append(Line(who, str(said), language, asked_at, message, audio))
            if on_line:
                on_line(call.lines[-1])

        url, extra = f"{self.base_url}/voice", {}
        seconds = 0
        while call.requests < self.max_requests:
            call.requests += 1
            status, body = self.signed_post(url, {**base, **extra})
            if status != 200:
                raise RuntimeError(f"{url} answered HTTP {status}: {body[:200]}")
            url, extra, ended = self._follow(ET.fromstring(body), url, moves, dial_results,
                                             note, call)
            if ended:
                break
            seconds += 5
        else:
            call.hung_up_by = "limit"
            note("caller", Message(N_("gives up after %(requests)d requests"),
                                   {"requests": self.max_requests}))
        self.signed_post(f"{self.base_url}/voice/status",
                         {**base, "CallStatus": CallStatus.COMPLETED, "CallDuration": str(seconds)})
        return call

    def _follow(self, response, url, moves, dial_results, note, call):
        """Act out one TwiML document; return (next url, its extra params, call ended?)."""
        for verb in response:
            if verb.tag == "Say":
                note("ruta", "".join(verb.itertext()).strip(), verb.get("language", ""))
            elif verb.tag == "Play":
                _play(verb, note)
            elif verb.tag == "Pause":
                note("ruta", _pause(verb))
            elif verb.tag == "Gather":
                for inner in verb:
                    if inner.tag == "Say":
                        note("ruta", "".join(inner.itertext()).strip(), inner.get("language", ""))
                    elif inner.tag == "Play":
                        _play(inner, note)
                    elif inner.tag == "Pause":
                        note("ruta", _pause(inner))
                if not moves:
                    note("caller", Message(N_("hangs up")))
                    call.hung_up_by = "caller"
                    return url, {}, True
                move = moves.pop(0)
                action = urllib.parse.urljoin(url, verb.get("action") or url)
                if move.kind == "press":
                    note("caller", Message(N_("presses %(key)s"), {"key": move.value}))
                    return action, {"Digits": move.value}, False
                if move.kind == "say":
                    note("caller", Message(N_('says "%(words)s"'), {"words": move.value}),
                         asked_at=action)
                    return action, {"SpeechResult": move.value,
                                    "Confidence": str(move.confidence)}, False
                note("caller", Message(N_("stays silent")))  # Twilio goes on to the next verb
            elif verb.tag == "Redirect":
                return urllib.parse.urljoin(url, verb.text.strip()), {}, False
            elif verb.tag == "Dial":
                action = urllib.parse.urljoin(url, verb.get("action") or url)
                return action, self._dial(verb, url, dial_results, note, call), False
            elif verb.tag == "Hangup":
                call.hung_up_by = "ruta"
                return url, {}, True
        # TwiML that ends without Hangup or Redirect: Twilio hangs up. Ours never should.
        note("ruta", Message(N_("(the TwiML ended: the call is cut off)")))
        call.hung_up_by = "cut off"
        return url, {}, True


    def _dial(self, verb, url, dial_results, note, call) -> dict:
        """Play Twilio's part in a <Dial>: what rings, the whisper of a screened line,
        and the parameters Twilio posts to the action URL."""
        target_el = next(iter(verb), None)
        target = "".join(verb.itertext()).strip()
        call.dialed.append(target)
        if target_el is not None and target_el.tag == "Number" and not E164.match(target):
            # Twilio's <Number> takes E.164 only; what it does then is not documented:
            # nothing rings, and the action is told the dial failed.
            note("dial", Message(N_("%(target)s: not an E.164 number, Twilio cannot dial it "
                                    "(error 13224): nothing rings"), {"target": target}))
            return {"DialCallStatus": DialStatus.FAILED, "DialCallDuration": "0"}
        timeout = int(verb.get("timeout", "30"))
        note("dial", Message(N_("%(target)s (rings up to %(seconds)d s)"),
                             {"target": target, "seconds": timeout + TWILIO_RING_PADDING}))
        result = dial_results.pop(0) if dial_results else DialStatus.COMPLETED
        child = {"DialCallSid": "CA" + secrets.token_hex(16)}
        if result not in (DialStatus.COMPLETED, MACHINE):
            note("hotline", Message(DIAL_RESULT_WORDS.get(result, result)))
            return {**child, "DialCallStatus": result, "DialCallDuration": "0"}
        whisper_url = target_el.get("url") if target_el is not None else None
        seconds = TALK_SECONDS if result == DialStatus.COMPLETED else MACHINE_SECONDS
        if whisper_url:
            seconds = self._screen(urllib.parse.urljoin(url, whisper_url), result, child,
                                   note) + (seconds if result == DialStatus.COMPLETED else 0)
        else:
            note("hotline", Message(N_("answers") if result == DialStatus.COMPLETED else
                                    N_("a machine answers and hangs up")))
        return {**child, "DialCallStatus": DialStatus.COMPLETED, "DialCallDuration": str(seconds)}

    def _screen(self, url: str, result: str, child: dict, note) -> int:
        """The screened hotline's side: fetch and play the whisper; a person presses 1, a
        machine presses nothing. Returns the seconds that side lasted before talking."""
        params = {"CallSid": child["DialCallSid"], "AccountSid": "AC" + "0" * 32,
                  "From": "+576015550100", "To": "+570000000000",
                  "CallStatus": CallStatus.IN_PROGRESS, "ApiVersion": "2010-04-01",
                  "Direction": "outbound-dial"}
        status, body = self.signed_post(url, params)
        if status != 200:
            raise RuntimeError(f"{url} answered HTTP {status}: {body[:200]}")
        gather = ET.fromstring(body).find("Gather")
        said = " ".join("".join(s.itertext()).strip() for s in gather.iter("Say"))
        note("hotline", Message(N_('hears "%(words)s"'), {"words": said}))
        spoken = int(len(re.findall(r"[\w']+", said)) / WORDS_PER_SECOND + 0.999)
        if result != DialStatus.COMPLETED:
            note("hotline", Message(N_("a machine: no key, Twilio hangs up its side")))
            return spoken + int(gather.get("timeout", "5"))
        note("hotline", Message(N_("presses %(key)s"), {"key": "1"}))
        status, body = self.signed_post(urllib.parse.urljoin(url, gather.get("action")),
                                        {**params, "Digits": "1"})
        if status != 200 or len(ET.fromstring(body)):
            raise RuntimeError(f"accepting the whisper got HTTP {status}: {body[:200]}")
        note("hotline", Message(N_("connected")))
        return spoken + 1


def _play(verb, note) -> None:
    """A recording played: the transcript names it, and keeps its URL."""
    url = (verb.text or "").strip()
    note("ruta", Message(N_("(plays the recording %(name)s)"),
                         {"name": url.rsplit("/", 1)[-1]}), audio=url)


def _pause(verb) -> Message:
    return Message(N_("(pause %(seconds)s s)"), {"seconds": verb.get("length", "1")})


def parse_moves(args: list[str]) -> tuple[list[Move], list[str]]:
    """`--press 9 --say "trabajo" --silent --dial-result busy` -> (moves, dial results)."""
    moves, dials, rest = [], [], list(args)
    while rest:
        flag = rest.pop(0)
        if flag == "--silent":
            moves.append(Move("silent"))
            continue
        if flag not in ("--press", "--say", "--dial-result") or not rest:
            raise ValueError(f"unknown or incomplete move {flag!r}")
        value = rest.pop(0)
        if flag == "--press":
            if len(value) != 1 or value not in "0123456789*#":
                raise ValueError(f"--press takes one key (0-9, * or #), got {value!r}")
            moves.append(Move("press", value))
        elif flag == "--say":
            moves.append(Move("say", value))
        else:
            if value not in DIAL_RESULTS:
                raise ValueError(f"--dial-result must be one of {', '.join(DIAL_RESULTS)}")
            dials.append(value)
    return moves, dials
