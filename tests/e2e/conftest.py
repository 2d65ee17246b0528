"""Browser-test fixtures: the portal served by waitress on 127.0.0.1 (the browser helpers are in browser.py)."""
import threading

import pytest
import waitress


@pytest.fixture
def live_server_with(make_app):
    """Factory: live_server_with(**config) serves a CSRF-enabled portal on a free port; returns (app, base_url)."""
    running = []

    def start(**config):
        app = make_app(WTF_CSRF_ENABLED=True, **config)
        server = waitress.create_server(app, host="127.0.0.1", port=0)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        running.append((server, thread))
        return app, f"http://127.0.0.1:{server.effective_port}"

    yield start
    for server, thread in running:
        server.close()
        thread.join(timeout=5)


@pytest.fixture
def live_server(live_server_with):
    """Serve a CSRF-enabled portal on a free port; yields (app, base_url)."""
    return live_server_with()
