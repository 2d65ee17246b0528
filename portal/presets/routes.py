"""メールボックスサーバーの推奨設定: list, add, edit (pen) and delete (trash, then 「はい、削除します」)."""
from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for

from portal.extensions import db
from portal.features.services import is_enabled
from portal.mailbox.routes import feature_off_page
from portal.mailbox.services import connection_policy, presets_of
from portal.presets import services
from portal.presets.forms import PresetForm
from portal.models import MailboxPreset, Security
from portal.policy import Action
from portal.web import authorize, current_membership, get_scoped_or_404, member_required, permission_required

bp = Blueprint("presets", __name__, url_prefix="/settings/mailbox-servers")


def _email_on() -> bool:
    """True when the current account has the メール feature on."""
    return is_enabled(db.session, current_membership().account_id)


def _form_data(form: PresetForm) -> services.PresetData:
    """The service input from a validated form."""
    return services.PresetData(
        name=form.name.data, imap_host=form.imap_host.data, imap_port=form.imap_port.data,
        imap_security=Security(form.imap_security.data), smtp_host=form.smtp_host.data,
        smtp_port=form.smtp_port.data, smtp_security=Security(form.smtp_security.data))


def _valid(form: PresetForm) -> bool:
    """Field checks plus the operator's port and plaintext rules."""
    return form.validate_on_submit() & form.check_server_fields(connection_policy(current_app.config))


@bp.get("")
@member_required
def index():
    """Every member sees the presets; only managers and above get the pen and trash icons."""
    if not _email_on():
        return feature_off_page("メールボックスサーバーの推奨設定")
    return render_template("presets/index.html",
                           presets=presets_of(db.session, current_membership().account_id))


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
    if request.method == "POST" and _valid(form):
        if preset is None:
            services.create_preset(db.session, current_membership(), _form_data(form))
        else:
            services.update_preset(db.session, current_membership(), preset, _form_data(form))
        flash("メールボックスサーバーの推奨設定を保存しました。", "success")
        return redirect(url_for("presets.index"))
    return render_template("presets/form.html", form=form), 422 if form.errors else 200


@bp.route("/<int:preset_id>/delete", methods=["GET", "POST"])
@member_required
def delete(preset_id: int):
    """Confirm, then delete a preset (the trash icon)."""
    preset = get_scoped_or_404(MailboxPreset, preset_id)
    authorize(Action.EDIT_MAILBOX_PRESETS)
    if request.method == "POST":
        services.delete_preset(db.session, current_membership(), preset)
        flash(f"推奨設定「{preset.name}」を削除しました。", "success")
        return redirect(url_for("presets.index"))
    return render_template("presets/delete.html", preset=preset)
