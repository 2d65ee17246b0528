"""Forms of the mail screens: the list's filters, the reply composer and the new-mail composer."""
from wtforms import DateField, HiddenField, MultipleFileField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Optional, Regexp, ValidationError

from portal.email_address import is_valid_email
from portal.forms import PortalForm, email_address, max_length, required, strip
from portal.inputs import clamp_date
from portal.mails.compose import MAX_CC, cc_addresses, split_cc
from portal.mails.sending import InvalidHeader, check_header_text


def no_line_breaks(form, field):
    """Refuse raw or encoded line breaks, which could smuggle extra headers into the mail."""
    try:
        check_header_text(field.name, field.data or "")
    except InvalidHeader as error:
        raise ValidationError(error.message) from error


class JapaneseDateField(DateField):
    """A date field whose unreadable input gets a Japanese error, and whose far dates are clamped."""

    def process_formdata(self, valuelist):
        """Parse YYYY-MM-DD; anything else is the member's mistake, said in Japanese."""
        try:
            super().process_formdata(valuelist)
        except ValueError as error:
            raise ValueError("日付は YYYY-MM-DD の形式で入力してください。") from error
        # 0001-01-01 or 9999-12-31 overflow as soon as a period is turned into times (a day added, JST to UTC).
        self.data = clamp_date(self.data)


class MailFilterForm(PortalForm):
    """送受信メール一覧の絞り込み (GET, so no CSRF token)."""

    class Meta:
        csrf = False

    member = SelectField("ユーザー", coerce=str, validators=[Optional()], validate_choice=False)
    direction = SelectField("種別", choices=[SelectChoice("", "すべて"), SelectChoice("received", "受信"),
                                     SelectChoice("sent", "送信")],
                            validators=[Optional()], validate_choice=False)
    date_from = JapaneseDateField("期間（開始）", validators=[Optional()])
    date_to = JapaneseDateField("期間（終了）", validators=[Optional()])
    q = StringField("キーワード（件名・本文）", filters=[strip], validators=[Optional(), max_length(200)])

    def validate_date_to(self, field):
        """The end of the range cannot come before its start."""
        if field.data and self.date_from.data and field.data < self.date_from.data:
            raise ValidationError("終了日は開始日以降の日付を入力してください。")


class ComposeForm(PortalForm):
    """返信 and new mail: one recipient, Cc, a subject, a body, files, and the template to insert."""

    to = StringField("宛先", filters=[strip], validators=[required(), max_length(254), no_line_breaks,
                                                          email_address()])
    cc = StringField("Cc", filters=[strip], validators=[Optional(), max_length(MAX_CC * 255), no_line_breaks],
                     description="複数のアドレスはカンマ（,）で区切ります。Cc の相手は顧客として扱われません。")
    subject = StringField("件名", filters=[strip], validators=[required(), max_length(255), no_line_breaks])
    body = TextAreaField("本文", validators=[required(), max_length(100_000)])
    template_id = SelectField("テンプレート", coerce=str, validators=[Optional()], validate_choice=False)
    action = HiddenField(default="send")
    compose_id = HiddenField(validators=[Optional(), Regexp(r"^[A-Za-z0-9_-]{16,64}$",
                                                            message="送信フォームを開き直してください。")])
    attachments = MultipleFileField("添付ファイル")

    def validate_cc(self, field):
        """Every Cc address valid by the same rule as 宛先, and at most MAX_CC of them."""
        for item in split_cc(field.data):
            if not is_valid_email(item):
                raise ValidationError(f"Cc のメールアドレスが正しくありません（{item}）。")
        try:
            cc_addresses(field.data)
        except InvalidHeader as error:
            raise ValidationError(error.message) from error


class NewMailForm(ComposeForm):
    """メールを作成: to one of the account's customers (its address is the 宛先), starting a new thread."""

    to = None
    customer_id = SelectField("宛先（顧客）", coerce=str, validators=[required()], validate_choice=False)
