"""A worker process for the tests: `flask --app wsgi worker --once` (the same run_worker), its passes recorded.

Run as `python -m tests.integration.worker_process '<json>'` with the database URL, the app's MAIL_*/SYNC_*
settings, a record file and a delay per pass. It prints "ready" and waits for a line on stdin, so that a test can
start two of them at the same moment; each pass appends "link_id pid start end" to the record file, each sent
automation step "step enrollment_id pid".
"""
import json
import os
import sys
import time

import scheduler
from portal import create_app
from portal.automations import runner as automation_runner
from portal.mailsync import runner as sync_runner
from tests.conftest import base_config


def record(path: str, line: str) -> None:
    """Append one line; O_APPEND keeps the two processes' lines whole."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")


def main() -> None:
    """Instrument the pass and the step sender, wait for the go, run one round of the worker's jobs."""
    settings = json.loads(sys.argv[1])
    app = create_app(base_config(settings["database_url"], **settings["config"]))
    real_sync_link, real_send_step = sync_runner.sync_link, automation_runner._send_step

    def recorded_sync_link(session, link, *args, **kwargs):
        started = time.time()
        time.sleep(settings["seconds_per_pass"])  # a slow server: passes of two workers would overlap
        result = real_sync_link(session, link, *args, **kwargs)
        record(settings["record"], f"{link.id} {os.getpid()} {started} {time.time()}")
        return result

    def recorded_send_step(session, enrollment, now, env):
        enrollment_id = enrollment.id
        time.sleep(settings["seconds_per_pass"])
        sent = real_send_step(session, enrollment, now, env)
        record(settings["record"], f"step {enrollment_id} {os.getpid()}")
        return sent

    sync_runner.sync_link, automation_runner._send_step = recorded_sync_link, recorded_send_step
    print("ready", flush=True)
    sys.stdin.readline()
    scheduler.run_worker(app, once=True)


if __name__ == "__main__":
    main()
