"""The sequence form: a name, the 自動停止 checkbox and a fixed table of step rows."""
from wtforms import BooleanField, FieldList, Form, FormField, IntegerField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.utils import unset_value
from wtforms.validators import NumberRange, Optional, StopValidation

from portal.automations.services import MAX_STEPS, MAX_WAIT_DAYS, StepData
from portal.forms import PortalForm, ChoiceField, max_length, required, strip

STOP_ON_REPLY_LABEL = "お客様からメールを受信したら、セールスオートメーションを自動で停止"


class WaitDaysField(IntegerField):
    """Days to wait; blank stays None (an empty row), letters get a Japanese error."""

    def process_formdata(self, valuelist):
        """Parse the submitted number of days."""
        text = (valuelist[0] if valuelist else "") or ""
        text = text.strip()
        self.data = None
        if text:
            try:
                self.data = int(text)
            except ValueError as error:
                raise ValueError("日数は半角数字で入力してください。") from error

    def pre_validate(self, form):
        """Stop at the parse error rather than adding a vaguer one."""
        if self.process_errors:
            raise StopValidation()


class StepForm(Form):
    """One row of the step table: 待機日数 and テンプレート."""

    wait_days = WaitDaysField("待機日数", validators=[Optional(), NumberRange(
        min=0, max=MAX_WAIT_DAYS, message=f"0〜{MAX_WAIT_DAYS}の範囲で入力してください。")])
    template_id = ChoiceField("テンプレート", choices=[], default="")  # an unsent row is an empty row

    def is_blank(self) -> bool:
        """True for a row the member left empty (it is ignored)."""
        return not self.template_id.data and self.wait_days.data is None and not self.wait_days.errors


class StepRows(FieldList):
    """Exactly min_entries rows, each read from its own index (FieldList would renumber around a gap)."""

    def process(self, formdata, data=unset_value, extra_filters=None):
        """Bind rows 0..min_entries-1; the edit form fills them from the sequence afterwards."""
        self.last_index, self.entries, self.object_data = -1, [], data
        for _ in range(self.min_entries):
            self._add_entry(formdata)


class SequenceForm(PortalForm):
    """Name, 自動停止 (on by default) and up to MAX_STEPS step rows; empty rows are ignored."""

    name = StringField("セールスオートメーション名", filters=[strip], validators=[required(), max_length(100)])
    stop_on_reply = BooleanField(STOP_ON_REPLY_LABEL, default=True)
    steps = StepRows(FormField(StepForm), min_entries=MAX_STEPS, max_entries=MAX_STEPS)

    def set_templates(self, templates) -> None:
        """Offer the account's templates in every row (plus 「選択しない」 for an unused row)."""
        choices = [SelectChoice("", "（選択しない）")] + [SelectChoice(str(t.id), t.name) for t in templates]
        for row in self.steps:
            row.template_id.choices = choices

    def fill(self, steps) -> None:
        """Show a sequence's steps in the first rows (for the edit form)."""
        for row, step in zip(self.steps, steps):
            row.wait_days.data, row.template_id.data = step.wait_days, str(step.template_id)

    def validate_steps(self, field) -> None:
        """A row with days but no template is an error beside it; at least one step is needed."""
        filled = False
        for row in field:
            if row.is_blank():
                continue
            if not row.template_id.data and not row.template_id.errors:
                row.template_id.errors.append("テンプレートを選んでください。")
            filled = True
        if not filled:
            raise StopValidation("ステップを1つ以上設定してください（テンプレートを選んでください）。")
        if any(row.errors for row in field):
            # FieldList collected its rows' errors before this ran; collect again so the form counts as invalid.
            field.errors = [row.errors for row in field]

    def step_data(self) -> list[StepData]:
        """The filled rows in order, blank days meaning 0 (send at once)."""
        return [StepData(wait_days=row.wait_days.data or 0, template_id=int(row.template_id.data))
                for row in self.steps if not row.is_blank() and row.template_id.data]
