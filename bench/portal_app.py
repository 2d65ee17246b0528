"""The portal app for a benchmark: the given settings, fast password hashing, schema built by the real migrations."""
import logging
from pathlib import Path

from flask_migrate import upgrade

from portal import create_app

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def migrated_app(config: dict):
    """create_app with the settings, then every migration applied quietly."""
    app = create_app({"ARGON2_TIME_COST": 1, "ARGON2_MEMORY_COST": 1024, **config})
    with app.app_context():
        logging.disable(logging.INFO)  # Alembic's per-revision INFO lines are not benchmark output
        try:
            upgrade(directory=str(MIGRATIONS))
        finally:
            logging.disable(logging.NOTSET)
    return app
