"""The mailbox link form."""
from wtforms import BooleanField, EmailField, PasswordField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Optional

from portal.forms import (PortalForm, ServerFieldsMixin, email_address, host_field, max_length, port_field, required,
                          security_field, strip)


class LinkForm(ServerFieldsMixin, PortalForm):
    """The address, the server settings (typed or from a preset) and the credentials."""

    preset_id = SelectField("推奨設定から選ぶ", validate_choice=False)
    email = EmailField("メールアドレス", filters=[strip], validators=[required(), max_length(254), email_address()])
    imap_host = host_field("IMAPサーバー")
    imap_port = port_field("IMAPポート")
    imap_security = security_field("IMAPの暗号化")
    imap_username = StringField("IMAPユーザー名", filters=[strip], validators=[required(), max_length(254)])
    imap_password = PasswordField("IMAPパスワード", validators=[required(), max_length(500)])
    smtp_host = host_field("SMTPサーバー")
    smtp_port = port_field("SMTPポート")
    smtp_security = security_field("SMTPの暗号化")
    smtp_username = StringField("SMTPユーザー名", filters=[strip], validators=[Optional(), max_length(254)])
    smtp_password = PasswordField("SMTPパスワード", validators=[Optional(), max_length(500)])
    smtp_no_auth = BooleanField("SMTP認証なし（社内の中継サーバーなど、ログインせずに送信するサーバー）")

    def set_presets(self, presets) -> None:
        """Offer the account's presets; choosing one fills (and on the server, supplies) the server fields."""
        self.preset_id.choices = [SelectChoice("", "手動で入力する")] + [
            SelectChoice(str(p.id), p.name, render_kw={
                "data-imap-host": p.imap_host, "data-imap-port": p.imap_port,
                "data-imap-security": p.imap_security.value, "data-smtp-host": p.smtp_host,
                "data-smtp-port": p.smtp_port, "data-smtp-security": p.smtp_security.value,
                "data-smtp-no-auth": "1" if not p.smtp_auth else ""})
            for p in presets]

    def apply_preset(self, preset) -> None:
        """Take the server settings from the chosen preset, before validation."""
        for protocol in ("imap", "smtp"):
            for part in ("host", "port", "security"):
                value = getattr(preset, f"{protocol}_{part}")
                field = getattr(self, f"{protocol}_{part}")
                field.data = value.value if hasattr(value, "value") else value
                field.raw_data = [str(field.data)]
                field.process_errors = []
        self.smtp_no_auth.data = not preset.smtp_auth


class ReauthForm(PortalForm):
    """New passwords for a link whose login was rejected."""

    imap_password = PasswordField("IMAPパスワード", validators=[required(), max_length(500)])
    smtp_password = PasswordField("SMTPパスワード", validators=[Optional(), max_length(500)])


# Which field a failed server check is about, so its message sits beside that field (codes from
# portal.mailsync.connection; network failures name their protocol at the start of the message).
FIELD_OF_ERROR = {"imap_login": "imap_password", "smtp_login": "smtp_password", "not_imap": "imap_port",
                  "imap_failed": "imap_host", "smtp_rejected": "smtp_security", "smtp_no_auth": "smtp_no_auth"}
FIELD_OF_NETWORK_ERROR = {"host_not_found": "host", "address_refused": "host", "timeout": "port",
                          "connect_failed": "port", "port_refused": "port", "tls_certificate": "security",
                          "tls_failed": "security", "plaintext_refused": "security"}


def show_check_error(form, error) -> None:
    """Put a server check's message beside the field it concerns, or above the form when it concerns none."""
    name = FIELD_OF_ERROR.get(error.code)
    if name is None and error.code in FIELD_OF_NETWORK_ERROR:
        protocol = "smtp" if error.message.startswith("SMTP") else "imap"
        name = f"{protocol}_{FIELD_OF_NETWORK_ERROR[error.code]}"
    field = getattr(form, name, None) if name else None
    if field is None:
        form.form_errors.append(error.message)
    else:
        field.errors = list(field.errors) + [error.message]
