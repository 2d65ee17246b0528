"""The preset form: メールボックスサーバーの推奨設定を追加/編集."""
from flask_wtf import FlaskForm
from wtforms import StringField

from portal.forms import ServerFieldsMixin, host_field, max_length, port_field, required, security_field, strip


class PresetForm(ServerFieldsMixin, FlaskForm):
    """Name plus IMAP and SMTP host, port and security."""

    name = StringField("設定名", filters=[strip], validators=[required(), max_length(100)])
    imap_host = host_field("IMAPサーバー")
    imap_port = port_field("IMAPポート")
    imap_security = security_field("IMAPの暗号化")
    smtp_host = host_field("SMTPサーバー")
    smtp_port = port_field("SMTPポート")
    smtp_security = security_field("SMTPの暗号化")
