"""A sync pass in a process of its own, slowed down so that a test can kill it mid-way.

Run as `python -m tests.integration.pass_process '<json>'` with the database URL, the link id and the app's
MAIL_*/SYNC_* settings; it prints "fetching" once the pass holds the lease and is fetching bodies.
"""
import json
import sys
import time

from portal import background, create_app
from tests.conftest import base_config

SECONDS_PER_BODY_FETCH = 0.4


class SlowClient:
    """A real mailbox client whose body fetches take a while, like a large mailbox on a slow line."""

    def __init__(self, client):
        self.client, self.announced = client, False

    def __getattr__(self, name):
        return getattr(self.client, name)

    def fetch_raw(self, uids):
        """Say once that the pass is under way, then fetch slowly."""
        if not self.announced:
            print("fetching", flush=True)
            self.announced = True
        time.sleep(SECONDS_PER_BODY_FETCH)
        return self.client.fetch_raw(uids)


def slow_connector(config, **options):
    """The production connector, its clients slowed down."""
    connect = real_connector(config, **options)
    return lambda link: SlowClient(connect(link))


real_connector = background.mailbox_connector


def main() -> None:
    """Run one pass over the link the way the scheduler does, and print its result."""
    settings = json.loads(sys.argv[1])
    app = create_app(base_config(settings["database_url"], **settings["config"]))
    background.mailbox_connector = slow_connector
    [result] = background.run_sync(app, [settings["link_id"]])
    print(f"done {result.imported}", flush=True)


if __name__ == "__main__":
    main()
