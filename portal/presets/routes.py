"""メールボックスサーバーの推奨設定: list, add, edit (pen) and delete (trash, then 「はい、削除します」)."""
from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for

from portal.extensions import db
from portal.feature_contracts import is_enabled
from portal.mailbox.credentials import secret_box
from portal.mailbox.oauth import url_policy
from portal.mailbox.oauth_routes import CALLBACK_PATH
from portal.mailbox.routes import feature_off_page
from portal.mailbox.services import connection_policy, presets_of
from portal.presets import services
from portal.presets.forms import PresetForm
from portal.models import AuthMethod, MailboxPreset, OAuthProvider, Security
from portal.oauth.providers import PROVIDER_LABELS, operator_app_configured
from portal.policy import Action
from portal.web import authorize, current_membership, get_scoped_or_404, member_required, permission_required

bp = Blueprint("presets", __name__, url_prefix="/settings/mailbox-servers")


def _email_on() -> bool:
    """True when the current account has the メール feature on."""
    return is_enabled(db.session, current_membership().account_id)


def _form_data(form: PresetForm) -> services.PresetData:
    """The service input from a validated form (an empty secret field keeps the stored secret)."""
    oauth = form.uses_oauth
    return services.PresetData(
        name=form.name.data, imap_host=form.imap_host.data, imap_port=form.imap_port.data,
        imap_security=Security(form.imap_security.data), smtp_host=form.smtp_host.data,
        smtp_port=form.smtp_port.data, smtp_security=Security(form.smtp_security.data),
        smtp_auth=oauth or not form.smtp_no_auth.data,
        auth_method=AuthMethod(form.auth_method.data), oauth_provider=form.provider if oauth else None,
        oauth_discovery_url=form.oauth_discovery_url.data or None, oauth_scopes=form.oauth_scopes.data or None,
        oauth_tenant=form.oauth_tenant.data or None, oauth_client_id=form.oauth_client_id.data or None,
        oauth_client_secret=form.oauth_client_secret.data or None)


def _valid(form: PresetForm, preset: MailboxPreset | None) -> bool:
    """Field checks plus the operator's port, plaintext and provider URL rules, and a usable client app."""
    form.fill_provider_servers()
    config = current_app.config
    stored_secret = bool(preset and preset.oauth_client_secret_encrypted)
    return (form.validate_on_submit() & form.check_server_fields(connection_policy(config))
            & form.check_oauth_fields(config, url_policy(config), stored_secret))


def oauth_redirect_uri() -> str | None:
    """The redirect URI to register at the provider; None until the operator sets PUBLIC_BASE_URL."""
    base = current_app.config.get("PUBLIC_BASE_URL")
    return base + CALLBACK_PATH if base else None


def method_label(preset: MailboxPreset) -> str:
    """パスワード, or OAuth2 and its provider, for the list."""
    if not preset.uses_oauth:
        return "パスワード"
    return f"OAuth2: {PROVIDER_LABELS.get(preset.oauth_provider, '')}"


@bp.get("")
@member_required
def index():
    """Every member sees the presets; only managers and above get the pen and trash icons."""
    if not _email_on():
        return feature_off_page("メールボックスサーバーの推奨設定")
    return render_template("presets/index.html", presets=presets_of(db.session, current_membership().account_id),
                           method_label=method_label)


@bp.route("/new", methods=["GET", "POST"])
@permission_required(Action.EDIT_MAILBOX_PRESETS)
def create():
    """Add a preset."""
    return _preset_form(None)


@bp.route("/<int:preset_id>/edit", methods=["GET", "POST"])
@member_required
def edit(preset_id: int):
    """Edit a preset (the pen icon)."""
    preset = get_scoped_or_404(MailboxPreset, preset_id)
    authorize(Action.EDIT_MAILBOX_PRESETS)
    return _preset_form(preset)


def _preset_form(preset: MailboxPreset | None):
    """The shared add/edit form: 「メールボックスサーバーの推奨設定を追加/編集」."""
    if not _email_on():
        return feature_off_page("メールボックスサーバーの推奨設定")
    form = PresetForm(obj=preset if request.method == "GET" else None)
    form.offer_plaintext(current_app.config["MAIL_ALLOW_PLAINTEXT"])
    if request.method == "GET":
        form.imap_port.data = preset.imap_port if preset else 993
        form.smtp_port.data = preset.smtp_port if preset else 587
        form.imap_security.data = preset.imap_security.value if preset else "ssl"
        form.smtp_security.data = preset.smtp_security.value if preset else "starttls"
        form.auth_method.data = preset.auth_method.value if preset else "password"
        form.smtp_no_auth.data = bool(preset and not preset.smtp_auth)
        form.oauth_provider.data = (preset.oauth_provider.value if preset and preset.oauth_provider
                                    else "microsoft")
    status = 200
    if request.method == "POST" and _valid(form, preset):
        box = secret_box(current_app.config)
        try:
            if preset is None:
                services.create_preset(db.session, current_membership(), _form_data(form), box)
            else:
                services.update_preset(db.session, current_membership(), preset, _form_data(form), box)
        except services.PresetInUse as in_use:
            db.session.rollback()
            form.auth_method.errors.append(
                f"この推奨設定でOAuth2連携しているメールボックスが{in_use.link_count}件あるため、認証方式と"
                "プロバイダーは変更できません。別の推奨設定を追加してください。")
            status = 409
        else:
            flash("メールボックスサーバーの推奨設定を保存しました。", "success")
            return redirect(url_for("presets.index"))
    if form.errors and status == 200:
        status = 422
    config = current_app.config
    return render_template(
        "presets/form.html", form=form, preset=preset, redirect_uri=oauth_redirect_uri(),
        has_stored_secret=bool(preset and preset.oauth_client_secret_encrypted),
        operator_apps={provider.value: operator_app_configured(provider, config)
                       for provider in (OAuthProvider.MICROSOFT, OAuthProvider.GOOGLE)}), status


@bp.route("/<int:preset_id>/delete", methods=["GET", "POST"])
@member_required
def delete(preset_id: int):
    """Confirm, then delete a preset (the trash icon)."""
    preset = get_scoped_or_404(MailboxPreset, preset_id)
    authorize(Action.EDIT_MAILBOX_PRESETS)
    if request.method == "POST":
        try:
            services.delete_preset(db.session, current_membership(), preset)
        except services.PresetInUse as in_use:
            db.session.rollback()
            return render_template("presets/delete.html", preset=preset, in_use=in_use.link_count), 409
        flash(f"推奨設定「{preset.name}」を削除しました。", "success")
        return redirect(url_for("presets.index"))
    # Say it before the member confirms, rather than only after they press the button.
    return render_template("presets/delete.html", preset=preset, in_use=services.links_using(db.session, preset))
