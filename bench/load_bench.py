"""bench/load: many simulated callers against the Procfile's web + worker + Redis.

The run is tests/load_run.py's (tests/test_load.py runs it shorter in CI): the services
started from the Procfile's lines on loopback, N whole Twilio-signed calls whose starts
are spread over the window, each paced like a person (1-4 s between moves, times
`--pace`), then every call checked: counted once, each event written once, the counters
equal to what the calls did, nothing left in the stream or the spool. This file is its
command line at full size.

Printed: calls/s, webhook latency p50/p99, the lag from the last call's end to the
report being complete, and per call the lag from its status callback to its record
holding its final outcome. `--chaos`: Redis stopped for `--outage` seconds at a third of
the window and the worker SIGKILLed once at two thirds; the target stays the same.

The last line is `RESULT key=value ...`; the exit status is 1 when pass=no.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the load run, shared with tests/test_load.py

from load_run import run_load  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--callers", type=int, default=200, help="calls placed (200)")
    parser.add_argument("--seconds", type=float, default=60.0,
                        help="window over which the calls start (60)")
    parser.add_argument("--pace", type=float, default=1.0,
                        help="scales the callers' 1-4 s think time (1.0; 0.1 is fast)")
    parser.add_argument("--chaos", action="store_true",
                        help="stop Redis for --outage seconds at 1/3, SIGKILL the worker at 2/3")
    parser.add_argument("--outage", type=float, default=10.0, help="seconds Redis is down (10)")
    parser.add_argument("--report-timeout", type=float, default=None,
                        help="seconds to wait for the report after the last call (60; 120 "
                             "with --chaos)")
    parser.add_argument("--seed", type=int, default=20261122)
    args = parser.parse_args()
    result = run_load(args.callers, args.seconds, args.pace, args.chaos, args.outage,
                      args.report_timeout, args.seed, out=lambda s: print(s, flush=True))
    if result.logs:
        print(result.logs, end="")
    print(result.result_line(), flush=True)
    sys.exit(0 if result.passed else 1)


if __name__ == "__main__":
    main()
