"""Customer form."""
from wtforms import EmailField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Optional

from portal.forms import PortalForm, email_address, max_length, required, strip
from portal.inputs import bounded_id
from portal.models import MembershipState


def _member_id_or_none(value):
    """Read the submitted 担当者 id; empty means 未設定, garbage is caught by the service."""
    if value in (None, "", "None"):
        return None
    try:
        return bounded_id(value)
    except (TypeError, ValueError):
        return -1


class CustomerForm(PortalForm):
    """Name, email, company and 担当者 of a customer."""

    name = StringField("顧客名", validators=[required(), max_length(200)], filters=[strip])
    email = EmailField("メールアドレス", validators=[required(), max_length(254), email_address()], filters=[strip])
    company = StringField("会社名", validators=[Optional(), max_length(200)], filters=[strip])
    assigned_user_id = SelectField("担当者", coerce=_member_id_or_none,
                                   validate_choice=False)  # the service checks the member, in Japanese

    def set_assignees(self, members, current=None) -> None:
        """Offer the members the actor may choose, the current 担当者 (kept as is, even if disabled), and 未設定."""
        choices = [SelectChoice("", "（未設定）")] + [SelectChoice(str(m.id), m.user.name) for m in members]
        if current is not None and current not in members:
            suffix = "" if current.state == MembershipState.ACTIVE else "（無効）"
            choices.append(SelectChoice(str(current.id), f"{current.user.name}{suffix}"))
        self.assigned_user_id.choices = choices
