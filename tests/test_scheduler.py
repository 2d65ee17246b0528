"""The scheduler is built by scheduler.py, never started by create_app, and its job does real work."""
from datetime import timedelta

from apscheduler.schedulers.base import STATE_STOPPED
from sqlalchemy import func, select

import scheduler
from portal.auth.services import start_login_session
from portal.extensions import db
from portal.models import LoginSession, utcnow
from tests.factories import make_account


def test_jobs_are_registered_with_single_instance_and_coalescing(app):
    """Each job has a fixed id, runs once at a time and coalesces missed runs; import runs every 3 minutes."""
    built = scheduler.build_scheduler(app)
    for job_id in (scheduler.PURGE_SESSIONS_JOB_ID, scheduler.SYNC_JOB_ID):
        job = built.get_job(job_id)
        assert job.max_instances == 1 and job.coalesce is True
    assert built.get_job(scheduler.SYNC_JOB_ID).trigger.interval.total_seconds() == 180
    assert built.state == STATE_STOPPED  # building does not start it


def test_purge_job_removes_only_expired_sessions(app):
    """Expired login sessions are deleted; live ones stay."""
    account, owner = make_account()
    now = utcnow()
    start_login_session(db.session, owner.user, now - timedelta(hours=30), 12, owner)
    start_login_session(db.session, owner.user, now, 12, owner)
    assert scheduler.purge_sessions_job(app) == 1
    db.session.expire_all()
    assert db.session.scalar(select(func.count(LoginSession.id))) == 1


def test_create_app_starts_no_background_threads(make_app):
    """Building the app (as tests, CLI and WSGI imports do) leaves no scheduler running."""
    import threading
    before = {thread.name for thread in threading.enumerate()}
    make_app()
    after = {thread.name for thread in threading.enumerate()}
    assert not any("APScheduler" in name for name in after - before)


def test_automation_job_is_registered_and_sends_due_steps(make_app):
    """The sales automation job runs every AUTOMATION_INTERVAL_SECONDS, once at a time, and does real work."""
    from portal.automations import services
    from portal.models import Enrollment, EnrollmentState, MailTemplate, StopReason
    from tests.factories import enable_email, make_customer
    app = make_app(AUTOMATION_INTERVAL_SECONDS=45)
    job = scheduler.build_scheduler(app).get_job(scheduler.AUTOMATION_JOB_ID)
    assert job.max_instances == 1 and job.coalesce is True and job.trigger.interval.total_seconds() == 45
    with app.app_context():
        account, owner = make_account()
        enable_email(account, owner)
        template = MailTemplate(account_id=account.id, name="t", subject="件名", body="本文")
        db.session.add(template)
        db.session.commit()
        sequence = services.create_sequence(db.session, owner, services.SequenceData(
            "s", True, [services.StepData(0, template.id)]))
        customer = make_customer(account, assigned=owner)
        enrollment_id = services.enroll_customer(db.session, owner, sequence, customer, utcnow()).id
        customer.deleted_at = utcnow()
        db.session.commit()
    assert job.func(*job.args, **job.kwargs) == 0  # the job as registered runs the pass on this app
    with app.app_context():
        stopped = db.session.get(Enrollment, enrollment_id)
        assert (stopped.state, stopped.stop_reason) == (EnrollmentState.STOPPED, StopReason.CUSTOMER_DELETED)


def worker_environment(database_url: str) -> dict:
    """The environment of a worker process on the test database."""
    import os

    from tests.factories import TEST_KEY
    return {**os.environ, "DATABASE_URL": database_url, "MAILBOX_ENCRYPTION_KEY": TEST_KEY}


def test_worker_command_runs_the_jobs_without_the_web_server(app, database_url):
    """`flask --app wsgi worker --once` does one round of every job; without --once it runs until SIGTERM."""
    import signal
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    account, owner = make_account()
    start_login_session(db.session, owner.user, utcnow() - timedelta(hours=30), 12, owner)
    once = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "worker", "--once"], cwd=root,
                          env=worker_environment(database_url), capture_output=True, text=True, timeout=120)
    assert once.returncode == 0, once.stderr
    assert "同期 0件 / オートメーション送信 0件 / 期限切れセッション削除 1件" in once.stdout
    worker = subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "worker"], cwd=root,
                              env=worker_environment(database_url), stdout=subprocess.PIPE, text=True)
    try:
        assert "ワーカーを起動しました" in worker.stdout.readline()
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    finally:
        worker.kill()
        worker.wait(timeout=10)


def test_web_process_starts_the_scheduler_unless_disabled(monkeypatch):
    """python wsgi.py: one process with the scheduler by default; SCHEDULER_ENABLED=0 serves without it."""
    import waitress

    import wsgi
    started = []

    class Recorder:
        def start(self):
            started.append(True)

        def shutdown(self, wait=True):
            pass
    monkeypatch.setattr(waitress, "serve", lambda *args, **kwargs: None)
    monkeypatch.setattr(wsgi, "build_scheduler", lambda app: Recorder())
    monkeypatch.setitem(wsgi.app.config, "SCHEDULER_ENABLED", True)
    wsgi.main()
    assert started == [True]
    monkeypatch.setitem(wsgi.app.config, "SCHEDULER_ENABLED", False)
    wsgi.main()
    assert started == [True]
