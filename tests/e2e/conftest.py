"""Browser-test fixtures: the portal served by waitress on 127.0.0.1 in a background thread."""
import threading

import pytest
import waitress


@pytest.fixture
def live_server(make_app):
    """Serve a CSRF-enabled portal on a free port; yields (app, base_url)."""
    app = make_app(WTF_CSRF_ENABLED=True)
    server = waitress.create_server(app, host="127.0.0.1", port=0)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield app, f"http://127.0.0.1:{server.effective_port}"
    server.close()
    thread.join(timeout=5)
