"""Render a flow Step to TwiML, with twilio's VoiceResponse only (it escapes all text).

A recorded prompt is a <Play> of its public URL, `audio_url` + the recording's file name
(the web app serves it: ivr.voice.AUDIO_PATH); its text is not sent to Twilio.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from operator import attrgetter
from xml.sax.saxutils import escape

from twilio.twiml.voice_response import Gather, VoiceResponse

from ivr.flow import Ask, Bridge, CallState, Hangup, Pause, Say, Screen, Step, Transfer

# Voices that read SSML, so numbers can be spoken slowly with <prosody>.
SSML_VOICES = ("Polly.", "Google.")
# Twilio documents that it adds about 5 s to <Dial timeout>: ask for that much less, so
# a target rings as long as the menu says. 5 s is the least we ask for.
TWILIO_RING_PADDING = 5
MIN_DIAL_TIMEOUT = 5

UrlFor = Callable[[CallState], str]
URL_MARK = "__ruta_resume_url__"
SCREEN_MARK = "__ruta_screen_url__"


def dial_timeout(ring_seconds: int) -> int:
    """The <Dial timeout> that makes a target ring about `ring_seconds`."""
    return max(MIN_DIAL_TIMEOUT, ring_seconds - TWILIO_RING_PADDING)


def render(step: Step, url_for: UrlFor, our_number: str | None = None,
           audio_url: str = "/audio/") -> str:
    """TwiML for `step` as text (the admin's pages, the CLI); `body` gives it as sent."""
    return body(step, url_for, our_number, audio_url).decode()


def body(step: Step, url_for: UrlFor, our_number: str | None = None,
         audio_url: str = "/audio/") -> bytes:
    """TwiML for `step`, UTF-8 encoded as the webhooks send it; `url_for` turns the state
    to resume at into a URL.

    A question's or a transfer's TwiML is the same for every caller but for the URLs that
    carry the call's position, so it is built once per distinct step and the URLs are put
    in after: kept with the step when it is one made once per menu version (`rendered`),
    else found by the step's fields. It is kept encoded and split at the resume URL: a
    question's is long (its speech hints, accented words), and encoding or searching it
    each time would cost more than the rest of the step.
    `our_number` is the caller ID hotlines see. A transfer that must hide the caller's
    number is refused without one: Twilio would pass the caller's own number on.
    """
    if isinstance(step, Transfer) and not step.show_caller and not our_number:
        raise ValueError("a transfer that hides the caller's number needs our caller ID")
    shape = _SHAPE.get(type(step))
    if shape is None:  # Hangup, Bridge: no URL in them
        return _build(step, "", "", our_number, audio_url).encode()
    resume = step.accept if isinstance(step, Screen) else step.resume
    screen = getattr(step, "screen", None)
    kept = getattr(step, "rendered", None)
    if kept is not None:  # a question made once per menu version keeps its own TwiML
        cache, key = kept, (our_number, audio_url)
    else:  # the key is the step's own fields, not a copy of the step without its URLs
        cache, key = _TWIML, (type(step), shape(step), bool(screen), our_number, audio_url)
    around_urls = cache.get(key)
    if around_urls is None:
        if len(cache) >= TWIML_CACHE_SIZE:
            cache.clear()  # many menus' worth: start again rather than grow
        xml = _build(step, URL_MARK, SCREEN_MARK if screen else "", our_number, audio_url)
        around_urls = cache[key] = [part.encode() for part in xml.split(URL_MARK)]
    if screen:  # a transfer's TwiML, short
        screen_url = _attr(url_for(screen)).encode()
        around_urls = [part.replace(SCREEN_MARK.encode(), screen_url) for part in around_urls]
    return _attr(url_for(resume)).encode().join(around_urls)


def _attr(url: str) -> str:
    return escape(url, {'"': "&quot;"})


# A step's fields that make its TwiML, all but the call's position (the URLs put in after).
_URL_FIELDS = ("resume", "accept", "screen")
_SHAPE = {cls: attrgetter(*(f.name for f in fields(cls) if f.name not in _URL_FIELDS))
          for cls in (Ask, Transfer, Screen)}
TWIML_CACHE_SIZE = 2048
_TWIML: dict[tuple, list[bytes]] = {}


def _build(step: Step, resume_url: str, screen_url: str, our_number: str | None,
           audio_url: str = "/audio/") -> str:
    def speak(verb, prompts) -> None:
        _speak(verb, prompts, audio_url)

    response = VoiceResponse()
    match step:
        case Ask():
            gather = Gather(
                input="dtmf speech" if step.speech else "dtmf",
                action=resume_url,
                method="POST",
                num_digits=1,
                timeout=step.timeout,
                language=step.speech_language or None,
                **({"speech_timeout": "auto", "hints": ", ".join(step.hints)}
                   if step.speech else {}),
            )
            speak(gather, step.prompts)
            response.append(gather)
            if step.goodbye:  # silence after the numbers: say goodbye and end politely
                speak(response, step.goodbye)
                response.hangup()
            else:  # silence leads back to the same question, never to a dead line
                response.redirect(resume_url, method="POST")
        case Transfer():
            speak(response, step.prompts)
            # No answerOnBridge: Twilio documents it for a <Dial> that answers an
            # unanswered call, and ours was answered by the first <Say> of the menu.
            dial = response.dial(
                action=resume_url,
                method="POST",
                **({} if step.show_caller else {"caller_id": our_number}),
                timeout=dial_timeout(step.ring_seconds),
            )
            whisper = {"url": screen_url, "method": "POST"} if screen_url else {}
            if step.target.startswith("sip"):
                dial.sip(step.target, **whisper)
            else:
                dial.number(step.target, **whisper)
        case Screen():  # played to the answering side; silence hangs up on it alone
            gather = Gather(input="dtmf", action=resume_url, method="POST", num_digits=1,
                            timeout=step.timeout)
            speak(gather, step.prompts)
            response.append(gather)
            response.hangup()
        case Bridge():  # an empty document: the answering side is connected
            pass
        case Hangup():
            speak(response, step.prompts)
            response.hangup()
    return str(response)


def _speak(verb, prompts: tuple[Say | Pause, ...], audio_url: str) -> None:
    for prompt in prompts:
        if isinstance(prompt, Pause):
            verb.pause(length=prompt.seconds)
        elif prompt.recording:
            verb.play(audio_url + prompt.recording)
        elif prompt.slow and prompt.voice.startswith(SSML_VOICES):
            verb.say(voice=prompt.voice, language=prompt.language).prosody(
                prompt.text, rate="slow"
            )
        else:
            verb.say(prompt.text, voice=prompt.voice, language=prompt.language)
