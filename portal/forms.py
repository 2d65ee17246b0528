"""The base form, validators and fields with Japanese messages shared by every form."""
from flask import flash
from flask_wtf import FlaskForm
from wtforms import FieldList, FormField, HiddenField, IntegerField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, NumberRange, Regexp, StopValidation, ValidationError

from portal.email_address import INVALID_EMAIL, is_valid_email
from portal.inputs import CONTROL_CHARACTER_MESSAGE, has_control_characters

LINE_BREAK_MESSAGE = "改行を含めることはできません。1行で入力してください。"
TAB_MESSAGE = "タブを含めることはできません。"
# The ceiling of a text field that names no max_length of its own (every field has one).
DEFAULT_MAX_LENGTH, DEFAULT_MAX_LENGTH_MULTILINE = 1_000, 100_000


class PortalForm(FlaskForm):
    """Every form's base: the input rule of portal.inputs, applied to each submitted field.

    A C0 control character (a NUL above all) is refused in every field, tab and line breaks everywhere but in a
    multi-line field (TextAreaField); a field without a Length validator of its own gets a default ceiling.
    """

    def validate(self, extra_validators=None) -> bool:
        """The form's own checks, then the input rule (whose message replaces the others of that field)."""
        valid = super().validate(extra_validators)
        for field in submitted_text_fields(self):
            problem = input_rule_problem(field)
            if problem:
                field.errors[:] = [problem]
                valid = False
                if isinstance(field, HiddenField):
                    flash(problem, "danger")  # no template shows a hidden field's errors
        return valid


def submitted_text_fields(form):
    """The form's fields, rows of field lists and subforms included."""
    for field in form:
        if isinstance(field, FieldList):
            for entry in field:
                yield from (submitted_text_fields(entry.form) if isinstance(entry, FormField) else [entry])
        elif isinstance(field, FormField):
            yield from submitted_text_fields(field.form)
        else:
            yield field


def input_rule_problem(field) -> str | None:
    """The Japanese message for a submitted value the portal never accepts, or None."""
    multiline = isinstance(field, TextAreaField)
    values = [field.data] if isinstance(field.data, str) else [v for v in field.raw_data or [] if isinstance(v, str)]
    for value in values:
        if has_control_characters(value, multiline=True):
            return CONTROL_CHARACTER_MESSAGE
        if not multiline and has_control_characters(value):
            return TAB_MESSAGE if "\t" in value and not any(c in value for c in "\r\n") else LINE_BREAK_MESSAGE
    if not any(isinstance(validator, Length) for validator in field.validators):
        limit = DEFAULT_MAX_LENGTH_MULTILINE if multiline else DEFAULT_MAX_LENGTH
        if any(len(value) > limit for value in values):
            return f"{limit:,}文字以内で入力してください。"
    return None


def required():
    """A required field."""
    return DataRequired(message="入力してください。")


def max_length(limit: int):
    """At most `limit` characters."""
    return Length(max=limit, message=f"{limit}文字以内で入力してください。")


def email_address():
    """A syntactically valid email address: the same rule as the CLI (portal.email_address)."""
    def check(form, field):
        """Refuse a filled-in value that is not an address (an empty one is the required check's business)."""
        if field.data and not is_valid_email(field.data):
            raise ValidationError(INVALID_EMAIL)
    return check


def strip(value):
    """Trim surrounding whitespace from a submitted text (pasted addresses often carry some)."""
    return value.strip() if isinstance(value, str) else value


SECURITY_LABELS = {"ssl": "SSL/TLS", "starttls": "STARTTLS", "none": "なし（暗号化しない）"}
# The same, beside a server address on a status screen (no nested brackets there).
SECURITY_SHORT_LABELS = {"ssl": "SSL/TLS", "starttls": "STARTTLS", "none": "暗号化なし"}


SMTP_NO_AUTH_NEEDS_TLS = ("SMTP認証なしは、SSL/TLS か STARTTLS で接続する場合だけ選べます"
                          "（暗号化なしの中継サーバーは、サーバー管理者が許可した場合のみ使えます）。")


class ServerFieldsMixin:
    """Checks host, port and security of the IMAP and SMTP fields against the operator's connection policy."""

    def check_server_fields(self, policy) -> bool:
        """Add Japanese errors for a port outside the mail ports or plaintext that is not allowed."""
        ok = True
        for protocol in ("imap", "smtp"):
            port, security = getattr(self, f"{protocol}_port"), getattr(self, f"{protocol}_security")
            if port.data is not None and not port.errors and port.data not in policy.allowed_ports:
                allowed = "、".join(str(p) for p in sorted(policy.allowed_ports))
                port.errors.append(f"メール用のポート番号（{allowed}）を入力してください。")
                ok = False
            if security.data == "none" and not policy.allow_plaintext:
                security.errors.append("暗号化なしの接続は許可されていません。SSL/TLS か STARTTLS を選んでください。")
                ok = False
        no_auth = getattr(self, "smtp_no_auth", None)
        if no_auth is not None and no_auth.data and self.smtp_security.data == "none" and not policy.allow_plaintext:
            no_auth.errors.append(SMTP_NO_AUTH_NEEDS_TLS)
            ok = False
        return ok

    def offer_plaintext(self, allowed: bool) -> None:
        """Hide 「なし（暗号化しない）」 unless the operator allows plaintext (a posted none still gets its message)."""
        for protocol in ("imap", "smtp"):
            for choice in getattr(self, f"{protocol}_security").choices:
                if choice.value == "none" and not allowed:
                    choice.render_kw = {"hidden": True, "disabled": True}


def security_choices():
    """The security options, in the order members usually need them."""
    return [SelectChoice(value, label) for value, label in SECURITY_LABELS.items()]


class PortField(IntegerField):
    """An integer field whose non-numeric input gets a Japanese error."""

    def process_formdata(self, valuelist):
        """Parse the submitted port number."""
        if not valuelist or valuelist[0] in ("", None):
            self.data = None
            return
        try:
            self.data = int(valuelist[0])
        except ValueError as error:
            self.data = None
            raise ValueError("ポート番号は半角数字で入力してください。") from error

    def pre_validate(self, form):
        """Stop at the parse error; the required check would otherwise replace it with a vaguer one."""
        if self.process_errors:
            raise StopValidation()


def port_field(label: str):
    """A TCP port between 1 and 65535."""
    return PortField(label, validators=[
        DataRequired(message="ポート番号を入力してください。"),
        NumberRange(min=1, max=65535, message="ポート番号は1〜65535の範囲で入力してください。")])


class ChoiceField(SelectField):
    """A select whose tampered values get a Japanese error instead of WTForms' English one."""

    def pre_validate(self, form):
        """Refuse values that are not among the choices."""
        if self.data not in {str(choice.value) for choice in self.choices}:
            raise ValidationError("選択肢から選んでください。")


def security_field(label: str):
    """ssl / starttls / none."""
    return ChoiceField(label, choices=security_choices(), validators=[required()])


def host_field(label: str):
    """A host name or address."""
    return StringField(label, filters=[strip], validators=[
        required(), max_length(253),
        Regexp(r"^[A-Za-z0-9.\-:\[\]]+$", message="ホスト名の形式が正しくありません。")])
