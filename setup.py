"""Ruta's build: everything is in pyproject.toml but the one step it cannot declare, the
staff pages' translations compiled from their catalogues (ivr/translations/*/LC_MESSAGES/
messages.po) to the .mo files Flask-Babel reads. The .mo files are never committed, so
they can never be out of step with the .po files they come from.

The step runs on every install: a wheel or `pip install .` gets the .mo files in the
package it builds; an editable install (`pip install -e .`, what scripts/test and
scripts/dev do) writes them beside the .po files in the source tree, which is what the
editable package reads. scripts/_venv.sh reinstalls when a .po file changes.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

CATALOGUES = "ivr/translations/*/LC_MESSAGES/messages.po"


def compile_catalogues(source: Path, target: Path) -> list[str]:
    """Write target/<po path>.mo for each catalogue under `source`; returns what it wrote.
    A fuzzy entry is left out, as gettext's msgfmt does: it shows in English until a
    person checks it (and tests/test_i18n.py fails on one)."""
    from babel.messages.mofile import write_mo  # a build requirement (pyproject.toml)
    from babel.messages.pofile import read_po

    written = []
    for po in sorted(source.glob(CATALOGUES)):
        relative = po.relative_to(source)
        with po.open("rb") as f:
            catalog = read_po(f, locale=relative.parts[2])
        mo = target / relative.with_suffix(".mo")
        mo.parent.mkdir(parents=True, exist_ok=True)
        with mo.open("wb") as f:
            write_mo(f, catalog, use_fuzzy=False)
        written.append(str(mo))
    return written


class BuildWithTranslations(build_py):
    """build_py, then the catalogues compiled: into the build (a wheel, `pip install .`)
    or, for an editable install, into the source tree the install points at."""

    def run(self):
        super().run()
        source = Path(__file__).resolve().parent
        compile_catalogues(source, source if self.editable_mode else Path(self.build_lib))


setup(cmdclass={"build_py": BuildWithTranslations})
