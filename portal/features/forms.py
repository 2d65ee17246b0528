"""Confirmation forms for turning a feature on or off."""
from wtforms import BooleanField
from wtforms.validators import DataRequired

from portal.forms import PortalForm

AGREE = "内容を確認し、同意のうえチェックを入れてください。"


class TurnOnForm(PortalForm):
    """Both agreements must be ticked before billing starts."""

    agree_billing = BooleanField("有料オプションであり、オンにした時点から課金が開始されることに同意します",
                                 validators=[DataRequired(message=AGREE)])
    agree_storage = BooleanField("取り込んだメールの保存容量に応じて、ストレージ料金が発生する場合があることに同意します",
                                 validators=[DataRequired(message=AGREE)])


class TurnOffForm(PortalForm):
    """The member acknowledges that every mailbox link stops."""

    agree_unlink = BooleanField("アカウントのすべてのメールボックス連携が解除されることを理解しました",
                                validators=[DataRequired(message=AGREE)])
