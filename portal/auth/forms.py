"""Sign-in and account-choice forms."""
from wtforms import EmailField, HiddenField, IntegerField, PasswordField
from wtforms.validators import DataRequired, EqualTo, Length, NumberRange

from portal.forms import PortalForm, max_length, required, strip
from portal.inputs import MAX_ID


class LoginForm(PortalForm):
    """Email and password."""

    email = EmailField("メールアドレス", validators=[required(), max_length(254)], filters=[strip])
    password = PasswordField("パスワード", validators=[required(), max_length(200)])
    next = HiddenField()


class SelectAccountForm(PortalForm):
    """The membership to work in."""

    membership_id = IntegerField(validators=[DataRequired(message="アカウントを選択してください。"),
                                             NumberRange(min=1, max=MAX_ID, message="このアカウントは選択できません。")])
    next = HiddenField()


PASSWORD_MIN, PASSWORD_MAX = 10, 200


def new_password_field(label: str = "新しいパスワード") -> PasswordField:
    """A password someone chooses: 10 to 200 characters."""
    return PasswordField(label, validators=[required(), Length(
        min=PASSWORD_MIN, max=PASSWORD_MAX, message=f"{PASSWORD_MIN}文字以上{PASSWORD_MAX}文字以内で入力してください。")])


def confirm_field() -> PasswordField:
    """The same password once more."""
    return PasswordField("新しいパスワード（確認）", validators=[
        required(), EqualTo("password", message="確認用のパスワードが一致しません。")])


class ChangePasswordForm(PortalForm):
    """Self-service change: the current password, then the new one twice."""

    current_password = PasswordField("現在のパスワード", validators=[required(), max_length(PASSWORD_MAX)])
    password = new_password_field()
    password_confirm = confirm_field()


class ResetPasswordForm(PortalForm):
    """A reset link's form: the new password twice."""

    password = new_password_field()
    password_confirm = confirm_field()


class JoinForm(PortalForm):
    """An invitation link opened without a session: one form whether or not the address already has a login.

    A new address sets this password; an existing login types its own (twice, so the page is the same).
    """

    password = new_password_field("パスワード")
    password_confirm = PasswordField("パスワード（確認）", validators=[
        required(), EqualTo("password", message="確認用のパスワードが一致しません。")])


class InvitationAnswerForm(PortalForm):
    """Accept or decline, for someone already signed in as the invited address (or declining without signing in)."""

    answer = HiddenField()
