"""A small stand-in for Twilio's REST API (api.twilio.com/2010-04-01), for twilio's real
`Client` to talk to in tests: stdlib http.server in a thread, on 127.0.0.1.

It answers only what `ivr twilio` uses, with HTTP basic auth checked:

    GET  /2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers.json?PhoneNumber=...
    POST /2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers/{Sid}.json
    POST /2010-04-01/Accounts/{AccountSid}/Calls.json
    GET  /2010-04-01/Accounts/{AccountSid}/Calls/{Sid}.json

Where each answer's shape comes from (nothing here invents a field):
- the resources and the list page are the examples of Twilio's OpenAPI description,
  github.com/twilio/twilio-oai spec/json/twilio_api_v2010.json, copied verbatim into
  tests/twilio_api_examples.json (its "_source" names the commit): the list page is the
  example "readFull" of GET IncomingPhoneNumbers.json, an IncomingPhoneNumber the example
  "update" of POST IncomingPhoneNumbers/{Sid}.json, a new call the example
  "createWithTwiml" of POST Calls.json (201), a fetched call the example "fetch" of GET
  Calls/{Sid}.json. We change only the values the request decides (sids, numbers, URLs,
  status, duration); call statuses are the spec's `call_enum_status`.
- errors: Twilio's documented error body {"code", "message", "more_info", "status"}
  (https://www.twilio.com/docs/usage/twilios-response, "Exceptions"), the fields
  twilio-python's `Version.exception` reads into `TwilioRestException`.

Every request is recorded (method, path, query, form, whether its auth was right) so
tests assert what was sent.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

EXAMPLES = json.loads((Path(__file__).parent / "twilio_api_examples.json").read_text("utf-8"))


def twilio_error(code: int, message: str, status: int) -> dict:
    """Twilio's error body (see the module docstring)."""
    return {"code": code, "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status}


def _snake(name: str) -> str:
    """A form field's name as the JSON resource spells it: VoiceUrl -> voice_url."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


@dataclass
class Sent:
    method: str
    path: str
    query: dict[str, str]
    form: dict[str, str]
    authorized: bool


@dataclass
class TwilioApiServer:
    """Twilio's API for one account; `username`/`password` are what basic auth must carry
    (the account SID and auth token, or an API key and its secret)."""

    account_sid: str = "AC" + "a" * 32
    password: str = "test-auth-token"
    username: str = ""  # default: the account SID
    call_ends: str = "completed"  # how the next calls end: completed, busy, no-answer...
    call_error: dict | None = None  # set: POST Calls.json answers this error instead
    numbers: dict[str, dict] = field(default_factory=dict)  # sid -> resource
    calls: dict[str, dict] = field(default_factory=dict)
    sent: list[Sent] = field(default_factory=list)

    def __post_init__(self):
        self.username = self.username or self.account_sid
        self._fetches: dict[str, int] = {}
        self._lock = threading.Lock()

    # --- setting the scene ----------------------------------------------------------------

    def add_number(self, phone_number: str, **fields) -> str:
        """An IncomingPhoneNumber of the account; `fields` override the example's values."""
        sid = f"PN{len(self.numbers) + 1:032x}"
        resource = copy.deepcopy(EXAMPLES["POST IncomingPhoneNumbers/{Sid}.json update"])
        resource.update(sid=sid, account_sid=self.account_sid, phone_number=phone_number,
                        friendly_name=phone_number, uri=f"{self._base()}/IncomingPhoneNumbers/"
                        f"{sid}.json", **fields)
        self.numbers[sid] = resource
        return sid

    def requests_to(self, method: str, suffix: str) -> list[Sent]:
        """The recorded requests whose path ends with `suffix` (e.g. "Calls.json")."""
        return [s for s in self.sent if s.method == method and s.path.endswith(suffix)]

    # --- serving --------------------------------------------------------------------------

    def start(self) -> TwilioApiServer:
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"
        self._thread = threading.Thread(target=self._http.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(5)

    def _base(self) -> str:
        return f"/2010-04-01/Accounts/{self.account_sid}"

    def answer(self, method: str, path: str, query: dict, form: dict) -> tuple[int, dict]:
        """(status, JSON body) for one authenticated request."""
        base = self._base()
        if not path.startswith(base + "/"):
            return 404, twilio_error(20404, f"The requested resource {path} was not found", 404)
        rest = path[len(base) + 1:]
        with self._lock:
            if method == "GET" and rest == "IncomingPhoneNumbers.json":
                return 200, self._number_page(query.get("PhoneNumber", ""))
            if method == "POST" and (m := re.fullmatch(r"IncomingPhoneNumbers/(\w+)\.json", rest)):
                number = self.numbers.get(m[1])
                if number is None:
                    return 404, twilio_error(20404, f"The requested resource {path} was not "
                                             "found", 404)
                number.update({_snake(k): v for k, v in form.items()})
                return 200, number
            if method == "POST" and rest == "Calls.json":
                if self.call_error:
                    return self.call_error["status"], self.call_error
                return 201, self._new_call(form)
            if method == "GET" and (m := re.fullmatch(r"Calls/(\w+)\.json", rest)):
                if m[1] not in self.calls:
                    return 404, twilio_error(20404, f"The requested resource {path} was not "
                                             "found", 404)
                return 200, self._fetch_call(m[1])
        return 404, twilio_error(20404, f"The requested resource {path} was not found", 404)

    def _number_page(self, phone_number: str) -> dict:
        page = copy.deepcopy(EXAMPLES["GET IncomingPhoneNumbers.json readFull"])
        uri = (f"{self._base()}/IncomingPhoneNumbers.json?PhoneNumber={phone_number}"
               "&PageSize=50&Page=0")
        page.update(uri=uri, first_page_uri=uri, incoming_phone_numbers=[
            n for n in self.numbers.values() if n["phone_number"] == phone_number])
        page["end"] = max(0, len(page["incoming_phone_numbers"]) - 1)
        return page

    def _new_call(self, form: dict) -> dict:
        sid = f"CA{len(self.calls) + 1:032x}"
        call = copy.deepcopy(EXAMPLES["POST Calls.json createWithTwiml"])
        call.update(sid=sid, account_sid=self.account_sid, to=form.get("To"),
                    to_formatted=form.get("To"), **{"from": form.get("From"),
                    "from_formatted": form.get("From")}, status="queued", duration=None,
                    start_time=None, end_time=None, price=None, direction="outbound-api",
                    uri=f"{self._base()}/Calls/{sid}.json")
        self.calls[sid] = call
        self._fetches[sid] = 0
        return call

    def _fetch_call(self, sid: str) -> dict:
        """The call rings at the first look, then has ended as `call_ends` says."""
        self._fetches[sid] += 1
        fetched = copy.deepcopy(EXAMPLES["GET Calls/{Sid}.json fetch"])
        call = self.calls[sid]
        for name in ("sid", "account_sid", "to", "to_formatted", "from", "from_formatted",
                     "direction", "uri"):
            fetched[name] = call[name]
        ended = self._fetches[sid] > 1
        status = self.call_ends if ended else "ringing"
        fetched.update(status=status, answered_by=None, parent_call_sid=None,
                       duration=("12" if status == "completed" else "0") if ended else None)
        return fetched


def _handler(api: TwilioApiServer):
    expected = "Basic " + base64.b64encode(f"{api.username}:{api.password}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self, method: str) -> None:
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            form = {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}
            authorized = self.headers.get("Authorization") == expected
            api.sent.append(Sent(method, parts.path, query, form, authorized))
            if not authorized:
                status, answer = 401, twilio_error(20003, "Authenticate", 401)
            else:
                status, answer = api.answer(method, parts.path, query, form)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):  # noqa: N802 (http.server's names)
            self._serve("GET")

        def do_POST(self):  # noqa: N802
            self._serve("POST")

        def log_message(self, *args):  # quiet: pytest shows what matters
            pass

    return Handler
