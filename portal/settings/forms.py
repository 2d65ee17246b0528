"""Account settings form."""
from wtforms import BooleanField, StringField

from portal.forms import PortalForm, max_length, required, strip


class AccountSettingsForm(PortalForm):
    """Account name and 担当者閲覧制限."""

    name = StringField("アカウント名（会社名）", validators=[required(), max_length(200)], filters=[strip])
    viewing_restricted = BooleanField("担当者閲覧制限（ユーザー権限のメンバーは、担当の顧客のみ閲覧できます）")
