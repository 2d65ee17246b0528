"""メールボックス連携: link one's own mailbox after a real check, see its state, unlink it."""
from datetime import timedelta

from flask import Blueprint, current_app, flash, make_response, redirect, render_template, request, url_for

from portal.background import run_sync
from portal.errors import render_error
from portal.extensions import db
from portal.feature_contracts import FeatureOff, is_enabled
from portal.inputs import bounded_id
from portal.mailbox import checks, services
from portal.mailbox.credentials import secret_box
from portal.mailbox.forms import LinkForm, ReauthForm, show_check_error
from portal.mailbox.oauth_routes import NO_PUBLIC_BASE_URL, allow_sign_in_redirects, sign_in_label
from portal.mailsync.connection import MailboxError, ServerSettings
from portal.mailsync.rules import EXCLUSION_LABELS
from portal.models import LinkState, MailboxLink, MailboxPreset, Security, utcnow
from portal.policy import Action
from portal.web import (authorize, current_membership, get_scoped_or_404, member_required, permission_required,
                        scoped)

bp = Blueprint("mailbox", __name__, url_prefix="/settings/mailbox")

NEEDS_REAUTH_BEFORE_SYNC = "要再認証のため同期できません。先にパスワードの入力（またはサインイン）をやり直してください。"


def feature_off_page(title: str):
    """The explanation every mailbox screen shows while メール is off (409 for an attempted change)."""
    status = 200 if request.method == "GET" else 409
    return render_template("mailbox/feature_off.html", title=title), status


def _link_request(form: LinkForm, preset_id: int | None) -> services.LinkRequest:
    """Build the service input; SMTP credentials default to the IMAP ones."""
    imap = ServerSettings(form.imap_host.data, form.imap_port.data, Security(form.imap_security.data),
                          form.imap_username.data, form.imap_password.data)
    smtp = ServerSettings(form.smtp_host.data, form.smtp_port.data, Security(form.smtp_security.data),
                          form.smtp_username.data or imap.username, form.smtp_password.data or imap.password,
                          authenticate=not form.smtp_no_auth.data)
    return services.LinkRequest(email=form.email.data, imap=imap, smtp=smtp, preset_id=preset_id)


def _chosen_preset(form: LinkForm) -> MailboxPreset | None:
    """The preset the member picked, from their own account only."""
    if not form.preset_id.data:
        return None
    try:
        preset_id = bounded_id(form.preset_id.data)
    except ValueError:
        return None
    return db.session.scalar(scoped(MailboxPreset).where(MailboxPreset.id == preset_id))


@bp.route("", methods=["GET", "POST"])
@permission_required(Action.LINK_OWN_MAILBOX)
def index():
    """The link's state when linked; otherwise the link form, verified against the real servers on submit."""
    membership = current_membership()
    if not is_enabled(db.session, membership.account_id):
        return feature_off_page("メールボックス連携")
    link = services.live_link(db.session, membership.id)
    if link is not None:
        if request.method == "POST":
            flash("すでにメールボックスを連携しています。", "warning")
        return _status_page(link, ReauthForm())
    form = LinkForm()
    presets = services.presets_of(db.session, membership.account_id)
    form.set_presets([preset for preset in presets if not preset.uses_oauth])
    chosen = _chosen_preset(form) if request.method == "POST" else None
    if chosen is not None and chosen.uses_oauth:  # the sign-in flow starts from this form too (307 keeps the POST)
        return redirect(url_for("mailbox_oauth.start"), code=307)
    form.offer_plaintext(current_app.config["MAIL_ALLOW_PLAINTEXT"])
    status = 200
    if request.method == "GET":
        form.email.data = form.imap_username.data = membership.user.email
        form.imap_port.data, form.smtp_port.data = 993, 587
        form.imap_security.data, form.smtp_security.data = "ssl", "starttls"
    else:
        status = _link(form, membership)
        if status is None:
            flash("メールボックスを連携しました。これ以降に送受信したお客様とのメールが取り込まれます。", "success")
            return redirect(url_for("mailbox.index"))
    oauth_presets = [preset for preset in presets if preset.uses_oauth]
    page = make_response(render_template(
        "mailbox/form.html", form=form, reason_labels=services.UNLINK_REASON_LABELS, oauth_presets=oauth_presets,
        sign_in_label=sign_in_label, no_public_base_url=NO_PUBLIC_BASE_URL,
        previous=services.latest_unlinked(db.session, membership.id)), status)
    return allow_sign_in_redirects(page, oauth_presets)


def _status_page(link, reauth_form: ReauthForm):
    """The linked mailbox's state, the re-authentication form when needed, and the import log."""
    page = make_response(render_template(
        "mailbox/status.html", link=link, state_labels=services.STATE_LABELS,
        import_log=services.recent_import_log(db.session, link.id), exclusion_labels=EXCLUSION_LABELS,
        reauth_form=reauth_form, next_sync_at=services.next_sync_at(link, sync_interval(), utcnow())))
    # 「再度サインインして連携」 is a form too.
    return allow_sign_in_redirects(page, [link.preset] if link.uses_oauth else [])


def _link(form: LinkForm, membership) -> int | None:
    """Validate, apply the chosen preset, and link; failures become form errors and their status (None: linked)."""
    preset = _chosen_preset(form)
    if preset is not None:
        form.apply_preset(preset)
    policy = services.connection_policy(current_app.config, interactive=True)
    valid = form.validate() & form.check_server_fields(policy)
    if form.preset_id.data and preset is None:
        form.preset_id.errors.append("推奨設定を選び直してください。")
        valid = False
    if not valid:
        return 422
    try:
        services.link_mailbox(db.session, membership, _link_request(form, preset.id if preset else None), policy,
                              secret_box(current_app.config), utcnow(), checks.checked_verifier(membership.id))
        return None
    except checks.CheckRefused as refused:
        form.form_errors.append(refused.message)
        return 429
    except MailboxError as error:
        show_check_error(form, error)
    except FeatureOff:
        form.form_errors.append("メール機能がオフのため、連携できません。")
    except services.AlreadyLinked:
        form.form_errors.append("すでにメールボックスを連携しています。")
    return 422


@bp.post("/reauth")
@permission_required(Action.LINK_OWN_MAILBOX)
def reauth():
    """Re-enter the password of a 要再認証 link; verified against the servers before it is stored."""
    membership = current_membership()
    link = services.live_link(db.session, membership.id)
    if link is None:
        return redirect(url_for("mailbox.index"))
    form = ReauthForm()
    if link.uses_oauth:  # no password to enter: the provider's sign-in is the only way back
        form.form_errors.append(services.OAUTH_LINK_HAS_NO_PASSWORD)
        return _status_page(link, form), 409
    if form.validate_on_submit():
        try:
            services.reauthenticate(db.session, membership, link, form.imap_password.data, form.smtp_password.data,
                                    services.connection_policy(current_app.config, interactive=True),
                                    secret_box(current_app.config), utcnow(), checks.checked_verifier(membership.id))
        except checks.CheckRefused as refused:
            form.form_errors.append(refused.message)
            return _status_page(link, form), 429
        except MailboxError as error:
            show_check_error(form, error)
        else:
            flash("パスワードを更新しました。同期を再開します。", "success")
            return redirect(url_for("mailbox.index"))
    return _status_page(link, form), 422


@bp.post("/sync")
@permission_required(Action.LINK_OWN_MAILBOX)
def sync_now():
    """「今すぐ同期」: one import pass over the member's own link, now."""
    link = services.live_link(db.session, current_membership().id)
    if link is None:
        flash("連携しているメールボックスはありません。", "info")
        return redirect(url_for("mailbox.index"))
    if link.state == LinkState.REAUTH:  # a pass would only be refused again: re-authenticate first
        flash(NEEDS_REAUTH_BEFORE_SYNC, "warning")
        return redirect(url_for("mailbox.index"))
    app = current_app._get_current_object()
    try:
        [result] = checks.gate(app).run(current_membership().id, run_sync, app, [link.id])
    except checks.CheckRefused as refused:
        return render_error(429, refused.message)
    if result.error:
        flash(result.error, "danger")
    else:
        flash(f"同期しました。新しく取り込んだメール: {result.imported}件", "success")
    return redirect(url_for("mailbox.index"))


def sync_interval() -> timedelta:
    """How often the scheduler imports new mail."""
    return timedelta(seconds=current_app.config["SYNC_INTERVAL_SECONDS"])


@bp.get("/links")
@permission_required(Action.VIEW_ALL_LINKS)
def links():
    """Owner/admin: every member's link state and sync health, to find who needs to act."""
    overview = services.member_link_overview(db.session, current_membership().account_id, sync_interval(),
                                             utcnow())
    return render_template("mailbox/links.html", overview=overview, state_labels=services.OVERVIEW_STATES,
                           badges=services.STATE_BADGES, reason_labels=services.UNLINK_REASON_LABELS,
                           recent_days=services.RECENT_DAYS, now=utcnow())


@bp.get("/links/<int:link_id>")
@member_required
def link_detail(link_id: int):
    """Owner/admin: one member's link and its import log (「なぜ取り込まれないのか」)."""
    link = get_scoped_or_404(MailboxLink, link_id)
    authorize(Action.VIEW_ALL_LINKS)
    return render_template("mailbox/link_detail.html", link=link, state_labels=services.STATE_LABELS,
                           import_log=services.recent_import_log(db.session, link.id),
                           exclusion_labels=EXCLUSION_LABELS, reason_labels=services.UNLINK_REASON_LABELS,
                           next_sync_at=services.next_sync_at(link, sync_interval(), utcnow()))


@bp.route("/unlink", methods=["GET", "POST"])
@permission_required(Action.LINK_OWN_MAILBOX)
def unlink():
    """Confirm, then unlink one's own mailbox; imported mail stays."""
    membership = current_membership()
    link = services.live_link(db.session, membership.id)
    if link is None:
        flash("連携しているメールボックスはありません。", "info")
        return redirect(url_for("mailbox.index"))
    if request.method == "POST":
        services.unlink_member_link(db.session, membership, link, utcnow())
        flash("メールボックスの連携を解除しました。取り込み済みのメールはそのまま残ります。", "success")
        return redirect(url_for("mailbox.index"))
    return render_template("mailbox/unlink.html", link=link)
