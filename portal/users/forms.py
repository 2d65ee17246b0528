"""Member management forms."""
from wtforms import EmailField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import ValidationError

from portal.forms import PortalForm, ChoiceField, email_address, max_length, required, strip
from portal.models import Role
from portal.policy import ROLE_LABELS

ROLE_CHOICES = [SelectChoice(role.value, ROLE_LABELS[role]) for role in Role]


class RoleField(ChoiceField):
    """A role picker."""

    def __init__(self, label="権限", **kwargs):
        super().__init__(label, choices=ROLE_CHOICES, validators=[required()], **kwargs)

    def pre_validate(self, form):
        """Refuse values outside the role list."""
        if self.data not in {choice.value for choice in ROLE_CHOICES}:
            raise ValidationError("権限を選択してください。")


class InviteMemberForm(PortalForm):
    """An invitation: email, the name to use for a new login, and role (no password: the person sets their own)."""

    email = EmailField("メールアドレス", validators=[required(), max_length(254), email_address()], filters=[strip])
    name = StringField("氏名", validators=[required(), max_length(100)], filters=[strip])
    role = RoleField()


class RoleForm(PortalForm):
    """A member's new role."""

    role = RoleField()
