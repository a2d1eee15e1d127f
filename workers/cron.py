"""What runs on a clock: the Procfile's `cron:` line,

    rq cron --config workers.rq_settings --connection-class workers.rq_settings.Redis \\
            workers.cron

RQ's own CronScheduler (RQ 2.4+) only enqueues: the worker runs the jobs. Run one `cron`
process: two would enqueue every check twice (harmless, the check takes a lock, but
wasted). RUTA_ALERT_CHECK_SECONDS (60) sets how often the alert check runs. The weekly
digest's job runs every hour and sends once a week, from Monday 07:00 Bogotá
(workers.alerts.send_digests): so the cron process's own time zone does not matter.
Under `ivr dev` the routine lines (each job enqueued, run, done) are left out of the log
of this process and the worker's; failures and alerts stay.
"""

from __future__ import annotations

from rq import cron

from ivr import logs, settings, store
from workers import alerts

if settings.load()["RUTA_ENV"] == "development":  # `ivr dev`: no line a minute saying nothing
    logs.quiet_routine_jobs("rq.cron", *alerts.ROUTINE_JOBS)
cron.register(alerts.check, queue_name=store.QUEUE,
              interval=int(settings.load()["RUTA_ALERT_CHECK_SECONDS"]), job_timeout=60)
cron.register(alerts.send_digests, queue_name=store.QUEUE, interval=3600, job_timeout=300)
