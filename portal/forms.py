"""Validators and fields with Japanese messages shared by every form."""
from wtforms import IntegerField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, NumberRange, Regexp, StopValidation, ValidationError

from portal.email_address import INVALID_EMAIL, is_valid_email


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
