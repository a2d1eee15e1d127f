"""What runs on a clock: the Procfile's `cron:` line,

    rq cron --config workers.rq_settings --connection-class workers.rq_settings.Redis \\
            workers.cron

RQ's own CronScheduler (RQ 2.4+) only enqueues: the worker runs the jobs. Run one `cron`
process: two would enqueue every check twice (harmless, the check takes a lock, but
wasted). RUTA_ALERT_CHECK_SECONDS (60) sets how often the alert check runs.
"""

from __future__ import annotations

from rq import cron

from ivr import settings, store
from workers import alerts

cron.register(alerts.check, queue_name=store.QUEUE,
              interval=int(settings.load()["RUTA_ALERT_CHECK_SECONDS"]), job_timeout=60)
