"""Worker processes benchmark: one and then two `worker` processes over L idle links on PostgreSQL.

Each run starts its worker processes together; each does a first round (a TLS login per link it claims, the
connections kept) and then, started together again, the measured round over every link. Printed: the measured
round's time for 1 and for 2 processes and their ratio (issue 13 floor: 2 processes >= 1.6x faster than 1), and a
check from every pass's start and end that no link was synced twice at the same time nor twice in a round.

Run from the project root (root, Dovecot and PostgreSQL installed; loopback only):
    .venv/bin/python bench/workers_bench.py [--links 2000] [--database postgresql://postgres@127.0.0.1:5432/postgres]
The database URL names the server: the bench creates and drops a database of its own there. See bench/README.md.
"""
import argparse
import atexit
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
WORKDIR = Path(tempfile.mkdtemp(prefix="workers-bench-"))
atexit.register(shutil.rmtree, WORKDIR, ignore_errors=True)
os.environ["PORTAL_INSTANCE_PATH"] = str(WORKDIR / "instance")

import psycopg  # noqa: E402
from cryptography.fernet import Fernet  # noqa: E402
from sqlalchemy import make_url  # noqa: E402

from bench.cpu_share import CPUS  # noqa: E402
from bench.portal_app import migrated_app  # noqa: E402
from portal import create_app  # noqa: E402
from portal.background import run_sync  # noqa: E402
from portal.config import normalise_database_url  # noqa: E402
from portal.extensions import db  # noqa: E402
from portal.mailbox.credentials import secret_box  # noqa: E402
from portal.mailbox.services import LinkRequest, connection_policy, link_mailbox  # noqa: E402
from portal.mailsync import runner  # noqa: E402
from portal.mailsync.connection import ServerSettings  # noqa: E402
from portal.mailsync.verify import FolderSnapshot  # noqa: E402
from portal.models import FolderRole, LinkState, Role, Security, utcnow  # noqa: E402
from tests.factories import enable_email, make_account, make_member  # noqa: E402
from tests.integration.servers import Dovecot, find_dovecot, make_test_pki  # noqa: E402

RATIO_FLOOR = 1.6
MEMBERS_PER_ACCOUNT = 5


def settings(database_url: str, pki_ca: str, imaps_port: int, links: int) -> dict:
    """The portal settings every process of the bench uses."""
    return {"SQLALCHEMY_DATABASE_URI": database_url, "MAIL_CA_FILE": pki_ca, "MAIL_EXTRA_PORTS": [imaps_port],
            "MAIL_ALLOWED_NETWORKS": "127.0.0.0/8", "SYNC_MAX_CONNECTIONS": links + 10,
            "MAILBOX_ENCRYPTION_KEY": BENCH_KEY}


BENCH_KEY = Fernet.generate_key().decode()


def unchecked_folders(imap, smtp, policy):
    """Link without logging in (2,000 TLS logins would be most of the set-up): the first round adopts the real
    UIDVALIDITY of each folder, which the measured round then finds unchanged."""
    return [FolderSnapshot(FolderRole.INBOX, "INBOX", 0, 1), FolderSnapshot(FolderRole.SENT, "Sent", 0, 1)]


def make_links(app, dovecot: Dovecot, count: int) -> None:
    """`count` members, five to an account, each linked to a Dovecot mailbox of their own."""
    made = 0
    with app.app_context():
        while made < count:
            account, owner = make_account()
            enable_email(account, owner)
            members = [owner] + [make_member(account, Role.USER)
                                 for _ in range(min(MEMBERS_PER_ACCOUNT, count - made) - 1)]
            for member in members:
                user = dovecot.add_user(member.user.email, secrets.token_urlsafe(12))
                imap = ServerSettings(dovecot.host, dovecot.imaps_port, Security.SSL, user.email, user.password)
                smtp = ServerSettings(dovecot.host, 465, Security.SSL, user.email, user.password)
                link_mailbox(db.session, member, LinkRequest(user.email, imap, smtp), connection_policy(app.config),
                             secret_box(app.config), utcnow(), verifier=unchecked_folders)
            made += len(members)


# ---- the worker process -----------------------------------------------------------------------------------------


def child(config: dict, record: str) -> None:
    """A worker: waits for "go", runs a round (first: logins), says how long it took; twice. Every pass is recorded."""
    app = create_app(config)
    real_sync_link = runner.sync_link
    passes = []

    def recorded(session, link, *args, **kwargs):
        started = time.time()
        result = real_sync_link(session, link, *args, **kwargs)
        passes.append((link.id, os.getpid(), started, time.time(), round_number[0]))
        return result

    runner.sync_link = recorded
    round_number = [0]
    print("ready", flush=True)
    for number in (1, 2):
        sys.stdin.readline()
        round_number[0] = number
        start = time.perf_counter()
        results = run_sync(app)  # the scheduler's round: claims in small batches, SYNC_WORKERS threads
        seconds = time.perf_counter() - start
        bad = [r for r in results if r.error or r.state != LinkState.ACTIVE or r.imported]
        print(json.dumps({"round": number, "seconds": seconds, "passes": len(results), "bad": len(bad),
                          "first_bad": repr(bad[0]) if bad else None}), flush=True)
    Path(record).write_text(json.dumps(passes))


# ---- the parent -------------------------------------------------------------------------------------------------


def run_workers(count: int, config: dict) -> tuple[float, list[dict], list[tuple]]:
    """Start `count` worker processes; first round together, measured round together. Returns the measured round's
    time (until the last worker finished), each worker's reports and every pass."""
    records = [WORKDIR / f"passes-{count}-{n}.json" for n in range(count)]
    processes = [subprocess.Popen([sys.executable, __file__, "--child", json.dumps(config), str(record)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
                 for record in records]
    reports = []
    try:
        for process in processes:
            assert process.stdout.readline().strip() == "ready"
        measured = 0.0
        for _ in (1, 2):
            start = time.perf_counter()
            for process in processes:
                process.stdin.write("go\n")
                process.stdin.flush()
            reports += [json.loads(process.stdout.readline()) for process in processes]
            measured = time.perf_counter() - start
        for process in processes:
            process.wait(timeout=300)
    finally:
        for process in processes:
            process.kill()
            process.wait(timeout=10)
    passes = [tuple(p) for record in records for p in json.loads(record.read_text())]
    return measured, reports, passes


def check(passes: list[tuple], links: int) -> list[str]:
    """No link synced by two passes at once; in the measured round every link exactly once."""
    problems = []
    by_link: dict[int, list[tuple]] = {}
    for link_id, pid, start, end, number in passes:
        by_link.setdefault(link_id, []).append((start, end, pid, number))
    for link_id, spans in by_link.items():
        spans.sort()
        problems += [f"link {link_id}: passes overlapped {a} {b}" for a, b in zip(spans, spans[1:]) if a[1] > b[0]]
    measured = [link_id for link_id, *_, number in passes if number == 2]
    if len(measured) != links or len(set(measured)) != links:
        problems.append(f"measured round: {len(measured)} passes over {len(set(measured))} links (expected {links})")
    return problems


def main() -> int:
    """Set up Dovecot, a throwaway PostgreSQL database and the links; run 1 then 2 workers; print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--links", type=int, default=2000)
    parser.add_argument("--database", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child[0]), args.child[1])
        return 0
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    if find_dovecot() is None:
        print("dovecot is not installed (apt-get install dovecot-imapd)", file=sys.stderr)
        return 2
    server = make_url(normalise_database_url(args.database))
    name = f"workers_bench_{secrets.token_hex(6)}"
    admin = server.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    database_url = server.set(database=name).render_as_string(hide_password=False)
    pki = make_test_pki(WORKDIR / "pki")
    # Every worker keeps a session per link it synced: room for all of them, and a login process per many.
    dovecot = Dovecot(pki, mail_fsync="never", max_sessions=args.links * 2 + 100)
    try:
        dovecot.start()
        config = settings(database_url, str(pki.ca_file), dovecot.imaps_port, args.links)
        app = migrated_app(config)
        start = time.perf_counter()
        make_links(app, dovecot, args.links)
        with app.app_context():
            db.engine.dispose()
        print(f"workers benchmark: {args.links} idle links (each its own Dovecot user, linked in "
              f"{time.perf_counter() - start:.0f} s), PostgreSQL, Dovecot on 127.0.0.1, nproc {CPUS}, "
              f"SYNC_WORKERS={app.config['SYNC_WORKERS']} threads per process")
        child_config = {**config, "ARGON2_TIME_COST": 1, "ARGON2_MEMORY_COST": 1024}
        times, ok = {}, True
        for count in (1, 2):
            measured, reports, passes = run_workers(count, child_config)
            times[count] = measured
            first = max(r["seconds"] for r in reports if r["round"] == 1)
            shares = [r["passes"] for r in reports if r["round"] == 2]
            bad = sum(r["bad"] for r in reports)
            problems = check(passes, args.links)
            ok &= not problems and not bad
            print(f"  {count} worker process{'es' if count > 1 else ''}: measured round {measured:.2f} s "
                  f"({args.links / measured:.0f} links/s; passes per process {shares}), first round with logins "
                  f"{first:.2f} s; {bad} passes with an error"
                  f"{' e.g. ' + next(r['first_bad'] for r in reports if r['bad']) if bad else ''}")
            for problem in problems[:5]:
                print(f"    PROBLEM: {problem}")
            print(f"    no link synced twice at once{' and each once in the round' if not problems else ''}: "
                  f"{'yes' if not problems else 'NO'}")
        ratio = times[1] / times[2]
        ok &= ratio >= RATIO_FLOOR
        print(f"  2 processes vs 1: {ratio:.2f}x faster (floor {RATIO_FLOOR}x): {'PASS' if ratio >= RATIO_FLOOR else 'FAIL'}")
        print("  (the machine's other processes share its CPUs: on a busy machine the ratio says little)")
    except Exception:
        print(f"--- Dovecot log tail ---\n{dovecot.log_tail()}", file=sys.stderr)
        raise
    finally:
        dovecot.stop()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted (Dovecot stopped, temp folder removed)", file=sys.stderr)
