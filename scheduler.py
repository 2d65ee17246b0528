"""Builds the APScheduler scheduler and its jobs (the only place that does), from portal.background; runs workers."""
import signal
import threading
from datetime import datetime, timezone

import click
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from flask import Flask, current_app
from flask.cli import with_appcontext

from portal.background import connection_pool, run_automation_steps, run_session_purge, run_sync

PURGE_SESSIONS_JOB_ID = "purge-expired-login-sessions"
SYNC_JOB_ID = "import-mail"
AUTOMATION_JOB_ID = "send-automation-steps"


def sync_job(app: Flask) -> int:
    """Import new mail for every due link; returns how many links were passed over.

    A link synced in the last half interval (by another worker's round, or 「今すぐ同期」) waits for the next round.
    """
    return len(run_sync(app, skip_synced_within=app.config["SYNC_INTERVAL_SECONDS"] / 2))


def automation_job(app: Flask) -> int:
    """Send every due sales automation step; returns how many mails went out."""
    return run_automation_steps(app)


def purge_sessions_job(app: Flask) -> int:
    """Delete expired login sessions; returns how many."""
    return run_session_purge(app)


def build_scheduler(app: Flask, scheduler_class: type[BaseScheduler] = BackgroundScheduler,
                    start_now: bool = False) -> BaseScheduler:
    """Create the scheduler with every recurring job registered (not started).

    start_now: the import and the automation steps run once at start instead of after their first interval (a
    worker process that just started has work to do).
    """
    first_run = {"next_run_time": datetime.now(timezone.utc)} if start_now else {}
    scheduler = scheduler_class(timezone="UTC")
    scheduler.add_job(purge_sessions_job, "interval", hours=1, args=[app], id=PURGE_SESSIONS_JOB_ID,
                      max_instances=1, coalesce=True, replace_existing=True)
    scheduler.add_job(sync_job, "interval", seconds=app.config["SYNC_INTERVAL_SECONDS"], args=[app],
                      id=SYNC_JOB_ID, max_instances=1, coalesce=True, replace_existing=True, **first_run)
    scheduler.add_job(automation_job, "interval", seconds=app.config["AUTOMATION_INTERVAL_SECONDS"], args=[app],
                      id=AUTOMATION_JOB_ID, max_instances=1, coalesce=True, replace_existing=True, **first_run)
    return scheduler


def run_worker(app: Flask, once: bool = False) -> None:
    """Run the background jobs without the web server, until SIGTERM/SIGINT (once: one round of each, then return).

    Any number of workers (and the web process, unless SCHEDULER_ENABLED=0) may run against one PostgreSQL: they
    claim due links and automation steps in small batches, so each is done by one of them.
    """
    if once:
        click.echo(f"同期 {sync_job(app)}件 / オートメーション送信 {automation_job(app)}件 / "
                   f"期限切れセッション削除 {purge_sessions_job(app)}件")
        return
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    scheduler = build_scheduler(app, start_now=True)
    scheduler.start()
    click.echo("ワーカーを起動しました（メール取り込み・セールスオートメーション）。")
    while not stopping.wait(0.5):  # a wait without timeout would not let the signal handler run
        pass
    scheduler.shutdown(wait=True)  # passes and sends under way finish; no new job starts
    connection_pool(app).close_all()
    click.echo("ワーカーを停止しました。")


@click.command("worker")
@click.option("--once", is_flag=True, help="取り込み・オートメーション送信を1回ずつ実行して終了する")
@with_appcontext
def worker_command(once: bool) -> None:
    """Run the scheduler's jobs (mail import, automation steps, session purge) without the web server."""
    run_worker(current_app._get_current_object(), once=once)
