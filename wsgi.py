"""WSGI entry point; run directly it serves the portal with waitress and (unless SCHEDULER_ENABLED=0) the scheduler.

`flask --app wsgi worker` runs the scheduler's jobs without the web server.
"""
import os

from portal import create_app
from scheduler import build_scheduler, worker_command

app = create_app()
app.cli.add_command(worker_command)


def main() -> None:
    """Serve on 127.0.0.1:$PORT (default 5000), with the scheduler in the same process unless SCHEDULER_ENABLED=0."""
    from waitress import serve

    scheduler = build_scheduler(app) if app.config["SCHEDULER_ENABLED"] else None
    if scheduler is not None:
        scheduler.start()
    port = int(os.environ.get("PORT", "5000"))
    host = os.environ.get("HOST", "127.0.0.1")
    print(f"ポータルを起動しました: http://{host}:{port}", flush=True)
    try:
        serve(app, host=host, port=port, threads=8, ident="portal")
    finally:
        if scheduler is not None:
            scheduler.shutdown(wait=False)


if __name__ == "__main__":
    main()
