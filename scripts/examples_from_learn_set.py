"""Write config/examples.toml from bench/understanding_set/learn.jsonl.

The learn part of the evaluation set is what the matcher may learn from: each utterance
becomes an example phrase of its main option (the first of its right keys that is not
0), and of the danger examples when 0 is among its right keys. Administrators edit the
result on /admin; run this again only to start over from the set.
Usage: .venv/bin/python scripts/examples_from_learn_set.py
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EMERGENCY = "0"
QUESTION = "welcome"


def main() -> None:
    examples: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    lines = (ROOT / "bench" / "understanding_set" / "learn.jsonl").read_text(encoding="utf-8")
    for line in filter(None, lines.splitlines()):
        u = json.loads(line)
        if EMERGENCY in u["right"]:
            examples["danger"][u["lang"]].append(u["text"])
        main_key = next((k for k in u["right"] if k != EMERGENCY), None)
        if main_key:
            examples[f"{QUESTION}.{main_key}"][u["lang"]].append(u["text"])
    out = [
        "# How callers say each option in their own words: the speech matcher compares what",
        "# a caller says with these (beside each option's keywords in menu.toml). [danger]:",
        "# someone in danger now, at any question. Written from the learn part of",
        "# bench/understanding_set by scripts/examples_from_learn_set.py; administrators",
        "# edit them on /admin (published and rolled back like prompts).",
        "",
    ]
    for name in ["danger", *sorted(k for k in examples if k != "danger")]:
        out.append(f"[{name}]")
        for lang in sorted(examples[name]):
            out.append(f"{lang} = [")
            out += [f"    {json.dumps(t, ensure_ascii=False)}," for t in examples[name][lang]]
            out.append("]")
        out.append("")
    (ROOT / "config" / "examples.toml").write_text("\n".join(out), encoding="utf-8")


if __name__ == "__main__":
    main()
