"""Trained speech models kept on disk, by what they were trained from.

Training a menu's speech models takes several seconds, and every process that builds the
same menu trained them again: gunicorn's master at each start, `ivr dev`, each test that
starts a server. `kept` keeps a training function's result in a file named by the hash of
its arguments and of the code that trains and applies it, so the same menu's models are
loaded in a fraction of a second; anything else (other examples, a new release) trains
anew. A file that cannot be read or written is no error: the models are trained as before.

RUTA_MODEL_CACHE names the folder (default `.ruta-cache/models` beside the code); "off"
trains every time. The files are pickles, written by this app and read only from its own
folder (mode 0700): whoever can write there could as well change the code beside it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import pickle
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

log = logging.getLogger(__name__)

KEPT_FILES = 24  # the newest kept; older files go (a menu's models are a few MB)
# A half-written file this old was left by a process killed while writing: it goes.
ABANDONED_PART_SECONDS = 3600
DEFAULT_FOLDER = Path(__file__).resolve().parent.parent / ".ruta-cache" / "models"


def folder() -> Path | None:
    setting = os.environ.get("RUTA_MODEL_CACHE", "")
    if setting.lower() == "off":
        return None
    return Path(setting) if setting else DEFAULT_FOLDER


# The libraries that train or apply the models: a new version of any trains anew.
LIBRARIES = ("numpy", "scikit-learn", "scipy", "snowballstemmer", "PyStemmer", "rapidfuzz")


@functools.cache
def _code_version(module_file: str) -> str:
    """What a kept result depends on besides its arguments: the code and its libraries."""
    versions = [metadata.version(name) for name in LIBRARIES]
    said = repr((versions, sys.version_info[:2])).encode()
    return hashlib.sha256(Path(module_file).read_bytes() + said).hexdigest()[:16]


def kept(train):
    """`train`, its results kept on disk by its arguments (which must have a stable repr:
    strings, numbers, tuples, frozen dataclasses)."""
    module_file = sys.modules[train.__module__].__file__

    @functools.wraps(train)
    def wrapper(*args, **kwargs):
        where = folder()
        if where is None:
            return train(*args, **kwargs)
        said = (train.__qualname__, args, sorted(kwargs.items()))
        key = hashlib.sha256(repr(said).encode()).hexdigest()[:32]
        path = where / f"{train.__name__.strip('_')}-{_code_version(module_file)}-{key}.pickle"
        try:
            with path.open("rb") as f:
                return pickle.load(f)
        except FileNotFoundError:
            pass
        except Exception as e:  # noqa: BLE001 - a damaged file: train again
            log.warning("kept model %s unreadable (%s): training again", path.name, e)
        result = train(*args, **kwargs)
        _keep(where, path, result)
        return result

    return wrapper


def _keep(where: Path, path: Path, result) -> None:
    """Write atomically (a reader never sees half a file), then prune the oldest, and
    what killed writers left half-written."""
    temporary = None
    try:
        where.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, temporary = tempfile.mkstemp(dir=where, suffix=".part")
        with os.fdopen(fd, "wb") as f:
            pickle.dump(result, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(temporary, path)
        temporary = None
        files = sorted(where.glob("*.pickle"), key=lambda p: p.stat().st_mtime)
        for old in files[:-KEPT_FILES]:
            old.unlink(missing_ok=True)
        abandoned = time.time() - ABANDONED_PART_SECONDS
        for part in where.glob("*.part"):  # another process may be writing a newer one
            with contextlib.suppress(FileNotFoundError):  # or renamed it meanwhile
                if part.stat().st_mtime < abandoned:
                    part.unlink()
    except Exception as e:  # noqa: BLE001 - a full disk, a result pickle refuses: the
        # models were trained anyway, and only this file is not kept
        log.info("speech models not kept on disk (%s)", e)
    finally:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
