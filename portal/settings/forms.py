"""Account settings form."""
from flask_wtf import FlaskForm
from wtforms import BooleanField, StringField

from portal.forms import max_length, required, strip


class AccountSettingsForm(FlaskForm):
    """Account name and 担当者閲覧制限."""

    name = StringField("アカウント名（会社名）", validators=[required(), max_length(200)], filters=[strip])
    viewing_restricted = BooleanField("担当者閲覧制限（ユーザー権限のメンバーは、担当の顧客のみ閲覧できます）")
