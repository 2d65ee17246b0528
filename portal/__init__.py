"""The portal's app factory: config, extensions, blueprints, error pages and CLI. Never starts the scheduler."""
import os

from flask import Flask
from flask_login import current_user
from werkzeug.middleware.proxy_fix import ProxyFix

from portal import passwords
from portal.config import load_settings, secure_instance_files, secure_instance_folder
from portal.extensions import csrf, db, limiter, login_manager, migrate
from portal.mailsync.memory import keep_big_buffers_out_of_the_heap
from portal.mailsync.network import parse_networks


def create_app(config: dict | None = None) -> Flask:
    """Build a configured portal application."""
    app = Flask(__name__, instance_path=os.environ.get("PORTAL_INSTANCE_PATH") or None)
    keep_big_buffers_out_of_the_heap()  # import passes hold 25 MB messages: the RSS must fall back after each
    secure_instance_folder(app.instance_path)
    app.config.update(load_settings(app.instance_path))
    if config:
        app.config.update(config)
    secure_instance_files(app.instance_path, app.config["SQLALCHEMY_DATABASE_URI"])
    app.json.ensure_ascii = False  # audit details show Japanese as written
    passwords.configure(app.config["ARGON2_TIME_COST"], app.config["ARGON2_MEMORY_COST"])
    check_allowed_networks(app)
    trust_proxies(app)
    register_extensions(app)
    from portal import inputs
    inputs.init_app(app)  # before the blueprints: their <int:> rules take its bounded converter
    register_blueprints(app)
    register_template_helpers(app)
    from portal import cli, errors, headers
    errors.init_app(app)
    headers.init_app(app)
    cli.init_app(app)
    return app


def check_allowed_networks(app: Flask) -> None:
    """Stop at start on a MAIL_ALLOWED_NETWORKS entry that is not a network, instead of leaving it closed."""
    try:
        parse_networks(app.config.get("MAIL_ALLOWED_NETWORKS"))
    except ValueError as error:
        raise RuntimeError(f"MAIL_ALLOWED_NETWORKS: {error}") from None


def trust_proxies(app: Flask) -> None:
    """Behind TRUSTED_PROXY_COUNT reverse proxies, take the client address and scheme from X-Forwarded-*."""
    # Off by default: without a proxy those headers come from the client and would let it pick its own address
    # (and so its own login-limit bucket).
    count = app.config["TRUSTED_PROXY_COUNT"]
    if count > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=count, x_proto=count)


def register_extensions(app: Flask) -> None:
    """Bind the unbound extensions to this app."""
    import portal.models  # noqa: F401  (registers every table for Alembic)
    db.init_app(app)
    migrate.init_app(app, db, render_as_batch=True, compare_type=True)
    csrf.init_app(app)
    limiter.init_app(app)
    from portal.auth.loader import init_login
    init_login(app, login_manager)


def register_blueprints(app: Flask) -> None:
    """Attach one blueprint per screen family."""
    from portal.auth.routes import bp as auth_bp
    from portal.automations.routes import bp as automations_bp
    from portal.customers.routes import bp as customers_bp
    from portal.features.routes import bp as features_bp
    from portal.mailbox.oauth_routes import bp as mailbox_oauth_bp
    from portal.mailbox.routes import bp as mailbox_bp
    from portal.presets.routes import bp as presets_bp
    from portal.mails.routes import bp as mails_bp
    from portal.mailtemplates.routes import bp as mailtemplates_bp
    from portal.main.routes import bp as main_bp
    from portal.settings.routes import bp as settings_bp
    from portal.tracking.routes import bp as tracking_bp
    from portal.users.routes import bp as users_bp
    for blueprint in (auth_bp, main_bp, customers_bp, mails_bp, settings_bp, users_bp, features_bp,
                      presets_bp, mailbox_bp, mailtemplates_bp, automations_bp, tracking_bp, mailbox_oauth_bp):
        app.register_blueprint(blueprint)


def register_template_helpers(app: Flask) -> None:
    """Expose the policy and the current membership to every template."""
    from portal.forms import SECURITY_LABELS, SECURITY_SHORT_LABELS
    from portal.mailbox.services import link_needing_action
    from portal.policy import ROLE_LABELS, Action, can
    from portal.web import current_membership

    @app.context_processor
    def inject_policy():
        membership = current_membership() if current_user.is_authenticated else None

        def allowed(action_name: str) -> bool:
            return membership is not None and can(membership.role, Action(action_name))

        return {"current_membership": membership, "can": allowed, "ROLE_LABELS": ROLE_LABELS,
                "SECURITY_LABELS": SECURITY_LABELS, "SECURITY_SHORT_LABELS": SECURITY_SHORT_LABELS, "link_needing_action": link_needing_action(membership)}

    @app.template_filter("jst")
    def format_jst(value, fmt="%Y/%m/%d %H:%M"):
        """Show a stored UTC time in Japan time."""
        from zoneinfo import ZoneInfo
        return value.astimezone(ZoneInfo("Asia/Tokyo")).strftime(fmt) if value else ""

    @app.template_filter("filesize")
    def format_filesize(size: int) -> str:
        """A byte count as people read it (KB, MB, GB)."""
        for unit in ("バイト", "KB", "MB", "GB"):
            if size < 1024 or unit == "GB":
                return f"{size:,} {unit}" if unit == "バイト" else f"{size:,.1f} {unit}"
            size /= 1024
        return f"{size:,.1f} TB"

    @app.template_filter("ago")
    def format_ago(value, now=None) -> str:
        """How long ago a stored UTC time was, as people say it (たった今, 5分前, 3時間前, 2日前)."""
        from portal.models import utcnow
        seconds = int(((now or utcnow()) - value).total_seconds())
        if seconds < 60:
            return "たった今"
        for unit_seconds, unit in ((86400, "日"), (3600, "時間"), (60, "分")):
            if seconds >= unit_seconds:
                return f"{seconds // unit_seconds}{unit}前"
        return "たった今"

    @app.template_filter("every")
    def format_every(seconds: int) -> str:
        """A repeat interval in seconds as people say it: 3分おき, 1時間おき, 30秒おき."""
        for unit_seconds, unit in ((3600, "時間"), (60, "分")):
            if seconds >= unit_seconds and seconds % unit_seconds == 0:
                return f"{seconds // unit_seconds}{unit}おき"
        return f"{seconds}秒おき"

    from portal.automations.services import is_automatic_reply
    # The 自動返信 badge uses the same rule that keeps automatic replies from stopping an automation.
    app.jinja_env.globals["is_automatic_reply"] = is_automatic_reply

    # Blueprints whose screens live under アカウント・機能設定 (menu highlight and breadcrumb).
    app.jinja_env.globals["SETTINGS_FAMILY"] = {"settings", "users", "features", "presets", "mailbox"}
