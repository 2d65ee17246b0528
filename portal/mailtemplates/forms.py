"""The template form: メールテンプレートの作成/編集."""
from wtforms import BooleanField, StringField, TextAreaField
from wtforms.validators import ValidationError

from portal.forms import PortalForm, max_length, required, strip
from portal.mailtemplates.placeholders import PLACEHOLDERS, unknown_placeholders


TEMPLATE_BODY_MAX = 20_000


def unknown_placeholder_message(names: list[str]) -> str:
    """The Japanese error naming the unknown placeholders and the ones that may be used."""
    used = "・".join(f"{{{{{name}}}}}" for name in names)
    allowed = "・".join(f"{{{{{name}}}}}" for name in PLACEHOLDERS)
    return f"不明な差し込み項目 {used} があります。使えるのは {allowed} です。"


def known_placeholders(form, field) -> None:
    """Refuse text that uses a placeholder the portal cannot fill."""
    names = unknown_placeholders(field.data or "")
    if names:
        raise ValidationError(unknown_placeholder_message(names))


def unix_newlines(value):
    """Store line breaks as \\n whatever the browser sent, so sent mail and previews agree."""
    return value.replace("\r\n", "\n").replace("\r", "\n") if isinstance(value, str) else value


class TemplateForm(PortalForm):
    """Name, subject and body; the shared checkbox is removed for members who may not share."""

    name = StringField("テンプレート名", filters=[strip], validators=[required(), max_length(100)])
    subject = StringField("件名", filters=[strip], validators=[max_length(255), known_placeholders])
    # Well under a reply body's 100,000: a template is inserted above the quoted original.
    body = TextAreaField("本文", filters=[unix_newlines], validators=[required(), max_length(TEMPLATE_BODY_MAX),
                                                                     known_placeholders])
    shared = BooleanField("共有テンプレートにする")
