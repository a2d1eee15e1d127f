"""Recorded prompts and a language no text-to-speech speaks, with real audio files:
Debian's espeak-ng speaks the words, sox writes them as the WAV or MP3 an administrator
would upload (scripts/test installs both). The checks are mutagen's (ivr.recordings);
calls are signed as Twilio signs them and played through the real webhooks.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
import time
import tomllib
import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.request import urlopen

import pytest
from babel.numbers import format_decimal
from conftest import CONNECTED_HOTLINES, Twilio
from test_admin import Staff, flashes

from ivr import create_app, services, store
from ivr import menu as menu_config
from ivr.flow import Answer, CallState, Say, answer, start
from ivr.recordings import MAX_SECONDS, Recording, RecordingRefused, checked
from ivr.twiml import render
from ivr.voice import AUDIO_CACHE

REPO = Path(__file__).resolve().parent.parent
SHIPPED = menu_config.read_shipped()
SHIPPED_MENU = menu_config.build(SHIPPED)
NOW = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)


def spoken(text: str, path: Path, voice: str = "es") -> bytes:
    """`text` said by espeak-ng, written by sox as `path` (.wav or .mp3), 8 kHz mono."""
    raw = path.with_name(path.stem + "-raw.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-s", "200", "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", "8000", "-c", "1", str(path)], check=True)
    raw.unlink()
    return path.read_bytes()


def sox_seconds(path: Path) -> float:
    return float(subprocess.run(["soxi", "-D", str(path)], check=True, capture_output=True,
                                text=True).stdout)


# --- 1. what an upload must be -------------------------------------------------------------


def test_a_real_wav_and_mp3_are_kept_with_their_real_length(tmp_path):
    for name in ("greeting.wav", "greeting.mp3"):
        data = spoken("Línea Ruta. Su llamada es confidencial.", tmp_path / name)
        recording = checked(data, name)
        assert recording.kind == name[-3:]
        assert recording.seconds == pytest.approx(sox_seconds(tmp_path / name), abs=0.1)
        assert 1 < recording.seconds < 5
        assert recording.name.startswith(recording.sha256) and len(recording.sha256) == 64


def test_what_is_not_a_short_wav_or_mp3_is_refused_saying_why(tmp_path):
    mp3 = spoken("hola", tmp_path / "hola.mp3")
    long = tmp_path / "long.wav"  # 8-bit 8 kHz: over a minute, under 1 MB
    subprocess.run(["sox", "-n", "-r", "8000", "-b", "8", "-c", "1", str(long), "synth",
                    str(MAX_SECONDS + 2), "sine", "440"], check=True)
    big = tmp_path / "big.wav"
    subprocess.run(["sox", "-n", "-r", "44100", "-c", "2", str(big), "synth", "10", "sine",
                    "440"], check=True)
    refused = {
        "named .wav": (mp3, "hola.wav"),
        "not audio": (b"RIFF" + bytes(range(256)) * 20, "noise.wav"),
        "ogg": (mp3, "hola.ogg"),
        "long": (long.read_bytes(), "long.wav"),
        "big": (big.read_bytes(), "big.wav"),
        "empty": (b"", "nothing.mp3"),
    }
    said = {}
    for what, (data, name) in refused.items():
        with pytest.raises(RecordingRefused) as e:
            checked(data, name)
        said[what] = str(e.value)
    assert said["named .wav"] == "the file is named .wav but holds MP3 audio"
    assert said["not audio"] == "the file cannot be played: it is not a WAV or MP3 recording"
    assert said["ogg"] == "a recording must be a WAV or MP3 file (.wav or .mp3)"
    assert said["long"] == "the recording lasts 62 s; at most 60 s are allowed"
    assert said["big"].startswith("the recording is 3528 kB; at most 1000 kB")
    assert said["empty"] == "the file cannot be played: it is not a WAV or MP3 recording"


# --- 2. the engine: what a recorded prompt sounds like, and the budget ---------------------


def recorded(prompts: dict[str, dict[str, float]]) -> dict:
    """Overrides giving prompts recordings of these lengths (made-up content hashes)."""
    return {"recordings": {lang: {key: Recording(f"{i:064x}", "wav", seconds).to_json()
                                  for i, (key, seconds) in enumerate(found.items())}
                           for lang, found in prompts.items()}}


def test_the_budget_counts_a_recordings_real_length_whole():
    before = {p.label: p for p in menu_config.spoken_paths(SHIPPED_MENU)}
    menu = menu_config.build(SHIPPED, recorded({"es": {"main_menu": 12.5}}))
    for path in menu_config.spoken_paths(menu):
        old = before[path.label]
        if path.language == "es":  # the menu counts 12.5 s, whichever key cuts it
            assert path.seconds == pytest.approx(
                12.5 + path.words * 60 / menu.words_per_minute)
            assert path.words < old.words
        else:
            assert path.seconds == old.seconds
    too_long = recorded({"es": {"main_menu": 29.0}})
    with pytest.raises(menu_config.ConfigError, match=r"path es 1 -> icbf: keys 1 to"):
        menu_config.build(SHIPPED, too_long, strict=True)


def test_a_recorded_prompt_is_played_and_its_numbers_are_read_after_it():
    menu = menu_config.build(SHIPPED, {**CONNECTED_HOTLINES, **recorded(
        {"es": {"greeting": 2.0, "emergency_advice": 3.0}})})
    step = start(menu, NOW).step
    greeting = menu.recording("es", "greeting")
    assert step.prompts[0] == Say(menu.text("es", "greeting"), "Polly.Lupe-Neural", "es-US",
                                  recording=greeting.name)
    xml = ET.fromstring(render(step, lambda s: "/voice/menu", "+576015550100",
                               "https://ruta.example/audio/"))
    gather = xml.find("Gather")
    assert gather[0].tag == "Play"
    assert gather[0].text == f"https://ruta.example/audio/{greeting.name}"
    assert [v.tag for v in gather[1:]] == ["Say", "Say"]  # the offer, the menu: the voice
    # 0: the advice's recording, then its number read slowly by the voice.
    after = answer(menu, CallState("es", node="welcome", step=1), Answer(digits="0"), NOW).step
    xml = ET.fromstring(render(after, lambda s: "/voice/dial", "+576015550100"))
    assert [v.tag for v in xml][:2] == ["Play", "Say"]
    assert xml[0].text == "/audio/" + menu.recording("es", "emergency_advice").name
    assert "".join(xml[1].itertext()) == "1 2 3"
    assert xml[1].find("prosody").get("rate") == "slow"


# --- 3. a third language, configured with recordings only ----------------------------------


def docs_example() -> dict:
    """The Wayuunaiki example of docs/staff.md, as TOML."""
    doc = (REPO / "docs" / "staff.md").read_text()
    block = re.search(r"```toml\n(languages = \[.*?)```", doc, re.S).group(1)
    return tomllib.loads(block)


@pytest.fixture(scope="module")
def wayuu(tmp_path_factory) -> tuple[Path, Path]:
    """The shipped files with docs/staff.md's third language added: its lines' names,
    its transcripts (the Spanish texts, until a Wayuu speaker gives theirs), and a real
    recording of every prompt it needs, spoken by espeak-ng."""
    root = tmp_path_factory.mktemp("wayuu")
    config, prompts = root / "config", root / "prompts"
    shutil.copytree(REPO / "config", config)
    shutil.copytree(REPO / "prompts", prompts)
    example = docs_example()
    text = (config / "menu.toml").read_text()
    text = text.replace('languages = ["es", "en"]',
                        f"languages = {example['languages']!r}".replace("'", '"'))
    guc = example["voices"]["guc"]
    text += "\n[voices.guc]\n" + "".join(f"{k} = {v!r}\n".replace("'", '"')
                                          for k, v in guc.items())
    (config / "menu.toml").write_text(text)
    hotlines = (config / "hotlines.toml").read_text()
    hotlines = re.sub(r'^name\.es = (".*")$', r"name.es = \1\nname.guc = \1", hotlines,
                      flags=re.M)
    (config / "hotlines.toml").write_text(hotlines)
    texts = dict(SHIPPED.prompts["es"])
    texts["language_offer"] = "Süchiki wayuunaiki, püsita 8."
    (prompts / "guc.toml").write_text("".join(
        f"{key} = {json_str(value)}\n" for key, value in texts.items()))
    (prompts / "guc").mkdir()
    needed = set(menu_config.ENGINE_PROMPTS) | {"greeting", "main_menu", "report_menu"}
    for key in sorted(needed):
        spoken(texts[key], prompts / "guc" / f"{key}.wav")
    return config, prompts


def json_str(value: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(value, ensure_ascii=False)


def ivr_config_check(config: Path, prompts: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).with_name("ivr")), "config", "check",
                           "--config-dir", str(config), "--prompts-dir", str(prompts)],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_a_language_with_recordings_only_passes_ivr_config_check(wayuu):
    config, prompts = wayuu
    done = ivr_config_check(config, prompts)
    assert done.returncode == 0, done.stderr
    assert "languages es, en, guc" in done.stdout
    assert ("language guc (key 8): no voice: recordings only, keypad only, 21 recording(s)"
            in done.stdout)
    assert re.search(r"guc 8 1 -> icbf +\d+\.\d s", done.stdout)


@pytest.mark.slow
def test_a_language_without_a_voice_missing_a_recording_is_refused_clearly(wayuu, tmp_path):
    config, prompts = wayuu
    missing = tmp_path / "prompts"
    shutil.copytree(prompts, missing)
    (missing / "guc" / "goodbye.wav").unlink()
    done = ivr_config_check(config, missing)
    assert done.returncode == 1
    assert ("error: prompts/guc: prompt 'goodbye': this language has no text-to-speech "
            "voice: this prompt needs a recording") in done.stderr


@pytest.mark.slow
def test_a_keypad_only_language_is_reached_with_its_key_and_heard_in_recordings(
        wayuu, app_config, redis_client):
    config, prompts = wayuu
    app = create_app({**app_config, "RUTA_CONFIG_DIR": str(config),
                      "RUTA_PROMPTS_DIR": str(prompts),
                      "RUTA_MENU_OVERRIDES": CONNECTED_HOTLINES})
    twilio = Twilio(app.test_client())
    first = twilio.twiml("/voice")
    gather = first.find("Gather")
    # Spanish first: the greeting, English's offer (voice), Wayuunaiki's (its recording).
    assert [v.tag for v in gather][:4] == ["Say", "Say", "Play", "Say"]
    offer = gather[2].text
    assert offer == "/audio/" + checked((prompts / "guc" / "language_offer.wav").read_bytes(),
                                        "language_offer.wav").name
    picked = twilio.twiml(gather.get("action").removeprefix("http://ruta.test"), Digits="8")
    gather = picked.find("Gather")
    assert gather.get("input") == "dtmf"  # no speech recognition for this language
    assert gather.get("language") is None and gather.get("hints") is None
    tags = [v.tag for v in gather]
    assert tags == ["Play", "Say"]  # the menu's recording, then the way back to Spanish
    assert "".join(gather[1].itertext()) == SHIPPED.prompts["es"]["language_offer"]
    action = gather.get("action").removeprefix("http://ruta.test")
    assert "l=guc" in action
    back = twilio.twiml(action, Digits="9").find("Gather")  # Spanish's key, 9: back
    assert back.get("input") == "dtmf speech" and back.get("language") == "es-CO"
    transfer = twilio.twiml(action, Digits="2")
    assert [v.tag for v in transfer] == ["Play", "Dial"]
    assert transfer.find("Dial/Number").text == "+5716000120"
    # Twilio fetches each recording, without a login, from its immutable URL.
    for url in (offer, gather[0].text, transfer[0].text):
        got = app.test_client().get(url)
        assert got.status_code == 200 and got.mimetype == "audio/wav"
        assert got.headers["Cache-Control"] == AUDIO_CACHE
        assert checked(got.data, "x.wav").name == url.rsplit("/", 1)[-1]
    assert app.test_client().get("/audio/" + "0" * 64 + ".wav").status_code == 404
    assert app.test_client().get("/audio/nothing.wav").status_code == 404


def test_two_languages_offered_together_need_two_keys():
    overrides = {"voices": {"en": {}}}
    menu_raw = dict(SHIPPED.menu)
    menu_raw["languages"] = ["es", "en", "guc"]
    menu_raw["voices"] = {**menu_raw["voices"], "guc": {"key": "9", "voice": "",
                                                        "say_language": "",
                                                        "speech_language": ""}}
    shipped = replace(SHIPPED, menu=menu_raw, prompts={**SHIPPED.prompts,
                                                       "guc": SHIPPED.prompts["es"]},
                      hotlines={h: {**v, "name": {**v["name"], "guc": v["name"]["es"]}}
                                for h, v in SHIPPED.hotlines.items()})
    with pytest.raises(menu_config.ConfigError) as e:
        menu_config.build(shipped, overrides)
    problems = [str(p) for p in e.value.problems]
    assert "voices.en: another language is picked with key 9 too" in problems
    assert "voices.guc: another language is picked with key 9 too" in problems
    assert ("prompts/guc: prompt 'greeting': this language has no text-to-speech voice: "
            "this prompt needs a recording") in problems


# --- 4. an administrator's upload, through the pages -----------------------------------------


def upload(staff: Staff, lang: str, key: str, data: bytes, name: str, draft: str = ""):
    """POST the recordings page's upload form, as a browser sends it (multipart), made on
    the draft as the page shows it now unless `draft` names another."""
    return staff.client.post("/admin/recordings", data={
        "csrf_token": staff.token, "language": lang, "prompt": key,
        "draft": draft or staff.revision(), "recording": (io.BytesIO(data), name)},
        follow_redirects=True)


def test_an_upload_made_on_a_draft_that_moved_keeps_the_other_admins_change(app, tmp_path):
    ana, bea = Staff(app, "ana"), Staff(app, "bea", add=True)
    seen = ana.revision()  # ana opens the recordings page...
    bea.edit("/admin/prompts", {"prompt:es:goodbye": "Cuídese mucho. Adiós."})
    data = spoken("Línea Ruta. Gracias por llamar.", tmp_path / "saludo.wav")
    page = upload(ana, "es", "greeting", data, "saludo.wav", draft=seen)  # ...then uploads
    assert page.status_code == 409
    assert "bea" in page.text and "Cuídese" in page.text  # what the other admin changed
    doc = json.loads(services.of(app).store.r.get(store.CONFIG_DRAFT))["doc"]
    assert doc["prompts"]["es"]["goodbye"] == "Cuídese mucho. Adiós."
    assert not doc.get("recordings")  # nothing half-kept
    assert upload(ana, "es", "greeting", data, "saludo.wav").status_code == 200  # again: kept


def test_an_upload_that_is_not_audio_is_refused_in_the_admins_language(app, tmp_path):
    ana = Staff(app, "ana", lang="es")
    page = upload(ana, "es", "greeting", Path(__file__).read_bytes(), "saludo.mp3")
    assert flashes(page.text, "error") == [
        "La grabación no se guardó: el archivo no se puede reproducir: no es una grabación "
        "WAV ni MP3."]
    too_big = b"\0" * 1_200_000
    page = upload(ana, "es", "greeting", too_big, "saludo.wav")
    assert flashes(page.text, "error") == [
        "La grabación no se guardó: la grabación pesa 1200 kB; se permiten máximo 1000 kB."]
    assert services.of(app).store.r.get(store.CONFIG_DRAFT) is None  # nothing kept


def test_an_uploaded_recording_is_kept_in_the_draft_and_served_by_its_hash(app, tmp_path):
    ana = Staff(app, "ana")
    data = spoken(" ".join(["Línea Ruta. Gracias por llamar. Le escuchamos. Su llamada es "
                            "confidencial."] * 5), tmp_path / "saludo.wav")
    assert len(data) > app.config["MAX_CONTENT_LENGTH"]  # larger than any other form
    page = upload(ana, "es", "greeting", data, "saludo.wav")
    kept = checked(data, "saludo.wav")
    seconds = format_decimal(kept.seconds, "0.0", locale="en")  # as the page rounds it
    assert flashes(page.text) == [f"Recording of {seconds} s kept in the draft. It is not "
                                  "live until you publish it."]
    overview = ana.page("/admin")
    assert "Recording: Greeting (Español)" in overview
    assert f"{seconds} s · {kept.sha256[:10]}" in overview
    served = app.test_client().get(f"/audio/{kept.name}")  # no login
    assert served.data == data and served.mimetype == "audio/wav"
    # Removed again: the draft is back to no recording.
    page = ana.post("/admin/recordings", {"language": "es", "prompt": "greeting",
                                         "remove": "1"})
    assert flashes(page.text) == ["Recording removed from the draft."]
    assert "Recording: Greeting" not in ana.page("/admin")


# --- 5. in a real browser: upload, the next call plays it, the try panel too, rollback ------


@pytest.mark.slow
def test_a_recording_uploaded_in_the_browser_is_played_until_a_rollback(
        app, base, browser, tmp_path):
    from playwright.sync_api import expect
    from test_admin_browser import add_user, click_and_wait, flash, log_in

    from ivr.simulator import SimulatedCall

    # Shorter than the voice reading the text: the paths stay within the budget.
    data = spoken("Línea Ruta. Confidencial.", tmp_path / "saludo.wav")
    kept = checked(data, "saludo.wav")
    token = app.config["TWILIO_AUTH_TOKEN"]

    def first_heard():
        """What a new call over HTTP hears first, once the server serves the newest
        version (it looks at most once a second)."""
        return SimulatedCall(base, token).run([]).lines[0]

    add_user(app, "ana", "admin")
    page = browser.new_context(viewport={"width": 1280, "height": 900},
                               locale="en-US").new_page()
    log_in(page, base, "ana")
    page.goto(base + "/admin")
    click_and_wait(page, page.locator("nav.subnav").get_by_role("link", name="Recordings"))
    expect(page.locator("h1")).to_have_text("Recorded prompts")
    page.locator("#upload-es-greeting").set_input_files(str(tmp_path / "saludo.wav"))
    click_and_wait(page, page.locator("form:has(#upload-es-greeting) button"))
    expect(flash(page)).to_have_text(re.compile(
        r"Recording of \d\.\d s kept in the draft\. It is not live until you publish it\."))
    player = page.locator(f'#recording-greeting audio[src="/audio/{kept.name}"]')
    expect(player).to_have_count(1)

    click_and_wait(page, page.locator("nav.subnav").get_by_role("link", name="Overview"))
    expect(page.locator("table.diff tbody tr td").first).to_have_text(
        "Recording: Greeting (Español)")
    page.get_by_label("What changed, and why (required)").fill("a human greeting")
    click_and_wait(page, page.get_by_role("button", name="Publish"))
    expect(flash(page)).to_have_text("Version 1 is live: callers hear it from their next call.")

    heard = wait_for(first_heard, lambda line: line.audio)
    assert heard.audio == f"/audio/{kept.name}"  # <Play>, from our public URL
    with urlopen(base + heard.audio) as got:  # as Twilio fetches it: no login
        assert got.read() == data and got.headers["Content-Type"] == "audio/wav"

    # "Try the call": the browser plays the recording, its text beside it.
    click_and_wait(page, page.locator("nav.subnav").get_by_role("link", name="Try the call"))
    played = page.locator(f'.transcript li audio[src="/audio/{kept.name}"]')
    expect(played).to_have_count(1)
    seconds = played.evaluate("""el => new Promise(done => {
        el.onloadedmetadata = () => done(el.duration); el.onerror = () => done(-1);
        el.preload = 'auto'; el.load(); })""")
    assert seconds == pytest.approx(kept.seconds, abs=0.1)
    expect(page.locator(".transcript li .transcript-text").first).to_have_text(
        SHIPPED.prompts["es"]["greeting"])

    # Rolled back to the shipped files: the next call hears the voice again.
    click_and_wait(page, page.locator("nav.subnav").get_by_role("link", name="History"))
    page.get_by_label("Why roll back to version 0").fill("back to the voice")
    click_and_wait(page, page.get_by_role("button", name="Roll back to 0"))
    expect(flash(page)).to_have_text("Rolled back: version 2 is live.")
    heard = wait_for(first_heard, lambda line: not line.audio)
    assert heard.text == SHIPPED.prompts["es"]["greeting"] and not heard.audio
    page.context.close()


def wait_for(get, done, seconds: float = 3.0):
    """get() until done(it), for at most `seconds`; the last one got."""
    deadline = time.monotonic() + seconds
    while not done(got := get()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return got
