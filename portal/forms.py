"""Validators with Japanese messages shared by every form."""
from wtforms.validators import DataRequired, Email, Length


def required():
    """A required field."""
    return DataRequired(message="入力してください。")


def max_length(limit: int):
    """At most `limit` characters."""
    return Length(max=limit, message=f"{limit}文字以内で入力してください。")


def email_address():
    """A syntactically valid email address (no DNS lookup)."""
    return Email(message="メールアドレスの形式が正しくありません。", check_deliverability=False)


def strip(value):
    """Trim surrounding whitespace from a submitted text (pasted addresses often carry some)."""
    return value.strip() if isinstance(value, str) else value
