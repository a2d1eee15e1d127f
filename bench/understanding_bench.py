"""How well Ruta understands callers' own words at the first question.

Reads bench/understanding_set: `learn.jsonl` (the utterances the shipped example phrases
come from) and `test.jsonl` (never used to build or tune the matcher). Each utterance
is decided by the shipped menu's matcher for the welcome question, in its language, as
a caller's first answer. Prints, for the test part (and, with --learn, a leave-one-writer-out
cross-validation on the learn part, each writer's examples left out of the menu):

- first-try accuracy: routed at once to a key that is right for it;
- emergency recall: utterances whose right keys include 0, sent to the emergency path
  at once, and with the one danger question ("¿Alguien está en peligro ahora mismo?");
- false emergencies: the others sent to the emergency path or asked the danger question;
- utterances that name a child routed anywhere but the child line or the emergency path;
- a confusion table by category, and accuracy by language;
- the time a decision takes (median, p99; after one warm-up decision per language, as a
  running web process has made).

With --learn --peer, the cross-validation also decides each writer's utterances with a
plain TF-IDF classifier (`peer_cross_validate`): the yardstick a design has to beat.

The last line is `RESULT key=value ...`.
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import os
import statistics
import sys
import time
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ivr import menu as menu_config  # noqa: E402

SET = ROOT / "bench" / "understanding_set"
QUESTION = "welcome"
EMERGENCY = "0"
CHILD = "1"


def read(part: str) -> list[dict]:
    with (SET / f"{part}.jsonl").open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def outcome(decision) -> str:
    """What a caller's first answer led to: a key, "ask 0" (the danger question),
    "either a/b", or "again" (asked to repeat)."""
    if decision.action in ("route", "danger"):
        return decision.key
    if decision.action == "ask_danger":
        return "ask 0"
    if decision.action == "either":
        return "either " + "/".join(decision.keys)
    return "again"


def evaluate(menu, utterances: list[dict]) -> dict:
    rows, seconds = [], []
    for lang in {u["lang"] for u in utterances}:  # a process's first decision loads lazily
        menu.matchers[QUESTION, lang].decide("hola")
    for u in utterances:
        matcher = menu.matchers[QUESTION, u["lang"]]
        start = time.perf_counter()
        decision = matcher.decide(u["text"])
        seconds.append(time.perf_counter() - start)
        rows.append((u, outcome(decision)))
    return score(rows, seconds)


def score(rows, seconds) -> dict:
    right = [got in u["right"] for u, got in rows]
    danger = [(u, got) for u, got in rows if EMERGENCY in u["right"]]
    others = [(u, got) for u, got in rows if EMERGENCY not in u["right"]]
    child = [(u, got) for u, got in rows if CHILD in u["right"]]
    by = defaultdict(list)
    for (u, _), ok in zip(rows, right, strict=True):
        by["category " + u["about"]].append(ok)
        by["language " + u["lang"]].append(ok)
    confusion = defaultdict(Counter)
    for u, got in rows:
        confusion[u["about"]][got if got in u["right"] else f"x {got}"] += 1
    return {
        "n": len(rows),
        "accuracy": sum(right) / len(rows),
        "groups": {k: (sum(v) / len(v), len(v)) for k, v in sorted(by.items())},
        "emergency_recall": sum(got == EMERGENCY for _, got in danger) / max(1, len(danger)),
        "emergency_recall_with_question": sum(got in (EMERGENCY, "ask 0") for _, got in danger)
        / max(1, len(danger)),
        "false_emergency": sum(got in (EMERGENCY, "ask 0") for _, got in others)
        / max(1, len(others)),
        "child_elsewhere": sum(got not in (CHILD, EMERGENCY, "ask 0") and not got.startswith(
            ("either", "again")) for _, got in child),
        "confusion": confusion,
        "median_us": statistics.median(seconds) * 1e6,
        "p99_us": sorted(seconds)[int(len(seconds) * 0.99)] * 1e6,
        "misses": [(u, got) for (u, got), ok in zip(rows, right, strict=True) if not ok],
    }


def cross_validate(shipped, learn: list[dict]) -> dict:
    """Leave one writer out: each writer's utterances are decided by a menu whose
    examples are the other writers'. What a new writer's words meet, as in the test part
    (a random split would leave each writer's own turns of phrase on both sides)."""
    parts = _each_writer(_matcher_fold, shipped, learn)
    n = sum(p["n"] for p in parts)
    return {
        "n": n,
        "accuracy": sum(p["accuracy"] * p["n"] for p in parts) / n,
        "emergency_recall": statistics.mean(p["emergency_recall"] for p in parts),
        "emergency_recall_with_question": statistics.mean(
            p["emergency_recall_with_question"] for p in parts),
        "false_emergency": statistics.mean(p["false_emergency"] for p in parts),
        "child_elsewhere": sum(p["child_elsewhere"] for p in parts),
        "misses": [m for p in parts for m in p["misses"]],
    }


def _each_writer(fold, shipped, learn: list[dict]) -> list:
    """fold(shipped, learn, writer) for each writer, in writers' order, on every core:
    each fold trains its own models, so the folds are independent."""
    writers = sorted({u["writer"] for u in learn})
    cores = min(len(writers), os.cpu_count() or 1)
    with ProcessPoolExecutor(cores, mp_context=multiprocessing.get_context("fork")) as pool:
        return list(pool.map(partial(fold, shipped, learn), writers))


def _matcher_fold(shipped, learn: list[dict], writer: str) -> dict:
    os.environ["RUTA_MODEL_CACHE"] = "off"  # in this fold's process: its models serve once
    texts = {u["text"] for u in learn if u["writer"] == writer}
    examples = {name: {lang: [p for p in phrases if p not in texts]
                       for lang, phrases in langs.items()}
                for name, langs in shipped.examples.items()}
    # Only the first question's matchers: no other question's answer is decided here.
    menu = menu_config.build(shipped, {"examples": examples}, speech=False)
    menu = replace(menu, matchers=menu_config.matchers(menu, (QUESTION,)))
    return evaluate(menu, [u for u in learn if u["writer"] == writer])


PEER_ASK = 0.35  # the peer asks the danger question at this probability of key 0...
PEER_DANGER = 0.5  # ...and sends the caller to the emergency path at this one


def peer_cross_validate(learn: list[dict]) -> dict:
    """The same leave-one-writer-out split, decided by what a user would build instead: TF-IDF
    over folded words, word pairs and letter 2-5-grams of each word, one logistic
    regression over every key (0 included; an utterance with 0 among its right keys is
    learnt as 0), the best key taken, the danger question asked in between. No keywords,
    no rules, no child's priority: the yardstick the matcher's design has to beat."""
    rows, seconds = [], []
    for fold_rows, fold_seconds in _each_writer(_peer_fold, None, learn):
        rows += fold_rows
        seconds += fold_seconds
    return score(rows, seconds)


def _peer_fold(_shipped, learn: list[dict], writer: str) -> tuple[list, list[float]]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline, make_union

    from ivr.speech import tokens

    def text(u):
        return " ".join(tokens(u["text"]))

    rows, seconds = [], []
    train = [u for u in learn if u["writer"] != writer]
    model = make_pipeline(
        make_union(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
                   TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5),
                                   sublinear_tf=True, min_df=2)),
        # newton-cg: the default solver's optimum (lbfgs stops a little short of it), in
        # less than half its time
        LogisticRegression(C=20, max_iter=3000, solver="newton-cg"))
    model.fit([text(u) for u in train],
              [EMERGENCY if EMERGENCY in u["right"] else u["right"][0] for u in train])
    keys = list(model.classes_)
    for u in (u for u in learn if u["writer"] == writer):
        start = time.perf_counter()
        p = model.predict_proba([text(u)])[0]
        seconds.append(time.perf_counter() - start)
        danger, best = p[keys.index(EMERGENCY)], keys[int(p.argmax())]
        got = (EMERGENCY if danger >= PEER_DANGER
               else "ask 0" if best == EMERGENCY or danger >= PEER_ASK else best)
        rows.append((u, got))
    return rows, seconds


def show(title: str, r: dict, misses: bool) -> None:
    print(f"\n== {title}: {r['n']} utterances")
    print(f"first-try accuracy        {r['accuracy']:.1%}")
    print(f"emergency recall          {r['emergency_recall']:.1%} at once, "
          f"{r['emergency_recall_with_question']:.1%} with the danger question")
    print(f"false emergencies         {r['false_emergency']:.1%} of the others")
    print(f"child sent elsewhere      {r['child_elsewhere']}")
    for group, (acc, n) in r.get("groups", {}).items():
        print(f"  {group:<22} {acc:6.1%} of {n}")
    if "confusion" in r:
        print("confusion (category: outcome count; 'x' = wrong):")
        for about, counts in sorted(r["confusion"].items()):
            cells = ", ".join(f"{k} {v}" for k, v in counts.most_common())
            print(f"  {about:<10} {cells}")
        print(f"decision time             median {r['median_us']:.0f} µs, "
              f"p99 {r['p99_us']:.0f} µs")
    if misses:
        for u, got in r["misses"]:
            print(f"  MISS [{u['lang']}] {u['text']!r}: {got}, right {u['right']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--learn", action="store_true",
                        help="also a leave-one-writer-out cross-validation on the learn part")
    parser.add_argument("--misses", action="store_true",
                        help="list the learn part's misses (never the test part's)")
    parser.add_argument("--peer", action="store_true",
                        help="with --learn: the same split decided by a plain TF-IDF "
                             "classifier, the yardstick for the matcher's design")
    parser.add_argument("--no-test", action="store_true",
                        help="leave the test part out (while tuning on the learn part)")
    args = parser.parse_args()
    shipped = menu_config.read_shipped()
    menu = menu_config.build(shipped)
    gc.collect()
    gc.freeze()  # as each web process does once the app is loaded (config/gunicorn.conf.py)
    learn, test = read("learn"), read("test")
    if args.learn:
        show("learn part, leave-one-writer-out cross-validation", cross_validate(shipped, learn),
             args.misses)
        if args.peer:
            show("learn part, the same split, a plain TF-IDF classifier (the peer)",
                 peer_cross_validate(learn), False)
    if args.no_test:
        return
    result = evaluate(menu, test)
    show("test part (never seen by the matcher)", result, misses=False)
    print(f"RESULT accuracy={result['accuracy']:.3f} "
          f"emergency_recall={result['emergency_recall']:.3f} "
          f"emergency_recall_with_question={result['emergency_recall_with_question']:.3f} "
          f"false_emergency={result['false_emergency']:.3f} "
          f"child_elsewhere={result['child_elsewhere']} "
          f"worst_group={min(a for a, _ in result['groups'].values()):.3f} "
          f"median_us={result['median_us']:.0f} p99_us={result['p99_us']:.0f}")


if __name__ == "__main__":
    main()
