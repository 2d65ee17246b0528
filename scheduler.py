"""Builds the in-process APScheduler scheduler and its jobs (the only place that does), from portal.background."""
from apscheduler.schedulers.background import BackgroundScheduler
from flask import Flask

from portal.background import run_automation_steps, run_session_purge, run_sync

PURGE_SESSIONS_JOB_ID = "purge-expired-login-sessions"
SYNC_JOB_ID = "import-mail"
AUTOMATION_JOB_ID = "send-automation-steps"


def sync_job(app: Flask) -> int:
    """Import new mail for every due link; returns how many links were passed over."""
    return len(run_sync(app))


def automation_job(app: Flask) -> int:
    """Send every due sales automation step; returns how many mails went out."""
    return run_automation_steps(app)


def purge_sessions_job(app: Flask) -> int:
    """Delete expired login sessions; returns how many."""
    return run_session_purge(app)


def build_scheduler(app: Flask) -> BackgroundScheduler:
    """Create the scheduler with every recurring job registered (not started)."""
    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.add_job(purge_sessions_job, "interval", hours=1, args=[app], id=PURGE_SESSIONS_JOB_ID,
                      max_instances=1, coalesce=True, replace_existing=True)
    scheduler.add_job(sync_job, "interval", seconds=app.config["SYNC_INTERVAL_SECONDS"], args=[app],
                      id=SYNC_JOB_ID, max_instances=1, coalesce=True, replace_existing=True)
    scheduler.add_job(automation_job, "interval", seconds=app.config["AUTOMATION_INTERVAL_SECONDS"], args=[app],
                      id=AUTOMATION_JOB_ID, max_instances=1, coalesce=True, replace_existing=True)
    return scheduler
