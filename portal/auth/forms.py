"""Sign-in and account-choice forms."""
from flask_wtf import FlaskForm
from wtforms import EmailField, HiddenField, IntegerField, PasswordField
from wtforms.validators import DataRequired

from portal.forms import max_length, required, strip


class LoginForm(FlaskForm):
    """Email and password."""

    email = EmailField("メールアドレス", validators=[required(), max_length(254)], filters=[strip])
    password = PasswordField("パスワード", validators=[required(), max_length(200)])
    next = HiddenField()


class SelectAccountForm(FlaskForm):
    """The membership to work in."""

    membership_id = IntegerField(validators=[DataRequired(message="アカウントを選択してください。")])
    next = HiddenField()
