"""WSGI entry point; run directly it serves the portal with waitress and starts the scheduler once."""
import os

from portal import create_app

app = create_app()


def main() -> None:
    """Serve on 127.0.0.1:$PORT (default 5000) with the scheduler in the same process."""
    from waitress import serve

    from scheduler import build_scheduler

    scheduler = build_scheduler(app)
    scheduler.start()
    port = int(os.environ.get("PORT", "5000"))
    host = os.environ.get("HOST", "127.0.0.1")
    print(f"ポータルを起動しました: http://{host}:{port}", flush=True)
    try:
        serve(app, host=host, port=port, threads=8, ident="portal")
    finally:
        scheduler.shutdown(wait=False)


if __name__ == "__main__":
    main()
