"""Trained speech models kept on disk (ivr.model_cache): the same menu is not trained
again by the next process, anything else is, and a bad cache never breaks a build."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ivr import model_cache

REPO = Path(__file__).resolve().parent.parent
trained: list[tuple] = []


@model_cache.kept
def _train(examples: tuple[str, ...], weight: float = 1.0) -> dict:
    trained.append((examples, weight))
    return {"examples": examples, "weight": weight}


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("RUTA_MODEL_CACHE", str(tmp_path / "models"))
    trained.clear()
    return tmp_path / "models"


def test_the_same_training_is_loaded_not_done_again_and_other_training_is_done(cache):
    first = _train(("hola", "auxilio"))
    assert _train(("hola", "auxilio")) == first  # no memory cache: read from the file
    assert trained == [(("hola", "auxilio"), 1.0)]
    assert _train(("hola", "auxilio", "socorro")) != first  # other examples: trained
    assert _train(("hola", "auxilio"), weight=0.3)["weight"] == 0.3
    assert len(trained) == 3 and len(list(cache.glob("*.pickle"))) == 3


def test_a_damaged_file_is_trained_again_and_replaced(cache):
    _train(("hola",))
    (kept,) = cache.glob("*.pickle")
    kept.write_bytes(b"not a pickle")
    assert _train(("hola",)) == {"examples": ("hola",), "weight": 1.0}
    assert len(trained) == 2
    assert _train(("hola",))["examples"] == ("hola",) and len(trained) == 2


def test_off_or_an_unwritable_folder_trains_every_time_and_never_fails(cache, monkeypatch,
                                                                       tmp_path):
    monkeypatch.setenv("RUTA_MODEL_CACHE", "off")
    _train(("hola",)), _train(("hola",))
    assert len(trained) == 2 and not cache.exists()
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    monkeypatch.setenv("RUTA_MODEL_CACHE", str(blocked / "models"))  # cannot be a folder
    assert _train(("hola",))["examples"] == ("hola",) and len(trained) == 3


def test_only_the_newest_files_are_kept(cache, monkeypatch):
    monkeypatch.setattr(model_cache, "KEPT_FILES", 3)
    for n in range(5):
        _train((f"frase {n}",))
        os.utime(max(cache.glob("*.pickle"), key=os.path.getmtime), (n, n))  # in order
    assert len(list(cache.glob("*.pickle"))) == 3


DECIDE = """
import json, sys
from ivr import menu
built = menu.build(menu.read_shipped())
said = ["me tienen encerrada", "mi hija de 15 trabaja en una finca", "quiero denunciar",
        "we are refugees from Venezuela", "informacion por favor"]
decisions = [built.matchers["welcome", "es" if i % 2 == 0 else "en"].decide(t)
             for i, t in enumerate(said)]
print(json.dumps({"decisions": [repr(d) for d in decisions],
                  "trained": "sklearn" in sys.modules}))
"""


@pytest.mark.slow
def test_a_second_process_builds_the_shipped_menu_without_training_and_decides_the_same(
        tmp_path):
    """A gunicorn restart, a test's server: the shipped menu's models come from the disk
    (scikit-learn, which only training needs, is never imported) and decide alike, down
    to the keywords that explain each decision (whatever each process's string hashes)."""
    env = dict(os.environ, RUTA_MODEL_CACHE=str(tmp_path / "models"))

    def run() -> dict:
        done = subprocess.run([sys.executable, "-c", DECIDE], cwd=REPO, env=env,
                              capture_output=True, text=True, check=True, timeout=300)
        return json.loads(done.stdout.splitlines()[-1])

    first, second = run(), run()
    assert first["trained"] and not second["trained"]
    assert second["decisions"] == first["decisions"]


@model_cache.kept
def _train_a_function(name: str):
    trained.append((name,))
    return lambda: name  # pickle refuses a lambda


def test_a_result_that_cannot_be_written_is_returned_and_leaves_no_half_file(cache):
    assert _train_a_function("hola")() == "hola"
    assert _train_a_function("hola")() == "hola" and len(trained) == 2  # not kept
    assert list(cache.iterdir()) == []


def test_half_files_of_a_killed_writer_go_but_not_one_being_written(cache):
    cache.mkdir(mode=0o700)
    abandoned, being_written = cache / "killed.part", cache / "writing.part"
    abandoned.write_bytes(b"half")
    being_written.write_bytes(b"half")
    hours_ago = abandoned.stat().st_mtime - 2 * model_cache.ABANDONED_PART_SECONDS
    os.utime(abandoned, (hours_ago, hours_ago))
    _train(("hola",))
    assert not abandoned.exists() and being_written.exists()
