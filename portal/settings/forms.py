"""Account settings form and the audit log's filters."""
from wtforms import BooleanField, SelectField, StringField
from wtforms.validators import Optional, ValidationError

from portal.forms import PortalForm, max_length, required, strip
from portal.mails.forms import JapaneseDateField


class AccountSettingsForm(PortalForm):
    """Account name and 担当者閲覧制限."""

    name = StringField("アカウント名（会社名）", validators=[required(), max_length(200)], filters=[strip])
    viewing_restricted = BooleanField("担当者閲覧制限（ユーザー権限の方は、担当の顧客のみ閲覧できます）")


class AuditFilterForm(PortalForm):
    """操作履歴の絞り込み (GET, so no CSRF token)."""

    class Meta:
        csrf = False

    member = SelectField("ユーザー", coerce=str, validators=[Optional()], validate_choice=False)
    kind = SelectField("種類", coerce=str, validators=[Optional()], validate_choice=False)
    date_from = JapaneseDateField("期間（開始）", validators=[Optional()])
    date_to = JapaneseDateField("期間（終了）", validators=[Optional()])

    def validate_date_to(self, field):
        """The end of the range cannot come before its start."""
        if field.data and self.date_from.data and field.data < self.date_from.data:
            raise ValidationError("終了日は開始日以降の日付を入力してください。")
