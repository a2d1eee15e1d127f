"""Render a flow Step to TwiML, with twilio's VoiceResponse only (it escapes all text)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import lru_cache
from xml.sax.saxutils import escape

from twilio.twiml.voice_response import Gather, VoiceResponse

from ivr.flow import Ask, CallState, Hangup, Pause, Say, Step, Transfer

# Voices that read SSML, so numbers can be spoken slowly with <prosody>.
SSML_VOICES = ("Polly.", "Google.")

UrlFor = Callable[[CallState], str]


def render(step: Step, url_for: UrlFor, our_number: str | None = None) -> str:
    """TwiML for `step`; `url_for` turns the state to resume at into a URL.

    A question's TwiML is the same for every caller but for the URL that carries the
    call's position, so it is built once per distinct step and the URL is put in after.
    `our_number` (the number the caller dialled) is the caller ID hotlines see.
    """
    resume = getattr(step, "resume", None)
    if resume is None:
        return _build(step, url_for, our_number)
    shape = replace(step, resume=None)
    xml = _cached(shape, our_number)
    return xml.replace(URL_MARK, escape(url_for(resume), {'"': "&quot;"}))


URL_MARK = "__ruta_resume_url__"


@lru_cache(maxsize=2048)
def _cached(shape: Step, our_number: str | None) -> str:
    return _build(shape, lambda _: URL_MARK, our_number)


def _build(step: Step, url_for: UrlFor, our_number: str | None = None) -> str:
    response = VoiceResponse()
    match step:
        case Ask():
            gather = Gather(
                input="dtmf speech" if step.speech else "dtmf",
                action=url_for(step.resume),
                method="POST",
                num_digits=1,
                timeout=step.timeout,
                language=step.speech_language,
                **({"speech_timeout": "auto", "hints": ", ".join(step.hints)}
                   if step.speech else {}),
            )
            _speak(gather, step.prompts)
            response.append(gather)
            if step.goodbye:  # silence after the numbers: say goodbye and end politely
                _speak(response, step.goodbye)
                response.hangup()
            else:  # silence leads back to the same question, never to a dead line
                response.redirect(url_for(step.resume), method="POST")
        case Transfer():
            _speak(response, step.prompts)
            hide_caller = our_number and not step.show_caller
            dial = response.dial(
                action=url_for(step.resume),
                method="POST",
                **({"caller_id": our_number} if hide_caller else {}),
                timeout=step.ring_timeout,
                answer_on_bridge=True,
            )
            if step.target.startswith("sip"):
                dial.sip(step.target)
            else:
                dial.number(step.target)
        case Hangup():
            _speak(response, step.prompts)
            response.hangup()
    return str(response)


def _speak(verb, prompts: tuple[Say | Pause, ...]) -> None:
    for prompt in prompts:
        if isinstance(prompt, Pause):
            verb.pause(length=prompt.seconds)
        elif prompt.slow and prompt.voice.startswith(SSML_VOICES):
            verb.say(voice=prompt.voice, language=prompt.language).prosody(
                prompt.text, rate="slow"
            )
        else:
            verb.say(prompt.text, voice=prompt.voice, language=prompt.language)
