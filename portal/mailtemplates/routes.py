"""メールテンプレート: list, preview, create, edit (pen) and delete (trash, then 「はい、削除します」)."""
from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for

from portal.extensions import db
from portal.mailtemplates import services
from portal.mailtemplates.forms import TemplateForm
from portal.mailtemplates.placeholders import PLACEHOLDERS, PlaceholderValues, fill_placeholders, fill_subject
from portal.models import MailTemplate
from portal.policy import Action, can
from portal.web import authorize, current_membership, get_scoped_or_404, member_required, permission_required

bp = Blueprint("mailtemplates", __name__, url_prefix="/templates")

NOT_EDITABLE = "このテンプレートを編集する権限がありません。"


def _editable(template_id: int) -> MailTemplate:
    """A template of the current account (404 otherwise) that the member may change (403 otherwise)."""
    template = get_scoped_or_404(MailTemplate, template_id)
    if not services.may_edit(authorize(Action.USE_TEMPLATES), template):
        abort(403, description=NOT_EDITABLE)
    return template


def _form(template: MailTemplate | None = None) -> TemplateForm:
    """The form (filled from the template on GET), without the shared checkbox for members who may not share."""
    if template is not None and request.method == "GET":
        form = TemplateForm(obj=template, shared=template.owner_membership_id is None)
    else:
        form = TemplateForm()
    if not can(current_membership().role, Action.EDIT_SHARED_TEMPLATES):
        del form.shared
    return form


def _form_data(form: TemplateForm) -> services.TemplateData:
    """The service input from a validated form."""
    return services.TemplateData(name=form.name.data, subject=form.subject.data or "", body=form.body.data,
                                 shared=bool("shared" in form and form.shared.data))


def _form_page(form: TemplateForm, template: MailTemplate | None):
    """Render the create/edit form; 422 when it carries errors."""
    return render_template("mailtemplates/form.html", form=form, template=template,
                           placeholders=PLACEHOLDERS), 422 if form.errors else 200


@bp.get("")
@permission_required(Action.USE_TEMPLATES)
def index():
    """Every template of the account; the pen and trash only on templates the member may change."""
    membership = current_membership()
    page = db.paginate(services.template_list(membership.account_id),
                       per_page=current_app.config["PER_PAGE"], error_out=False)
    return render_template("mailtemplates/index.html", page=page,
                           may_edit=lambda template: services.may_edit(membership, template))


@bp.route("/new", methods=["GET", "POST"])
@permission_required(Action.USE_TEMPLATES)
def create():
    """Add a template (shared only for managers and above)."""
    form = _form()
    if form.validate_on_submit():
        template = services.create_template(db.session, current_membership(), _form_data(form))
        flash(f"テンプレート「{template.name}」を作成しました。", "success")
        return redirect(url_for("mailtemplates.index"))
    return _form_page(form, None)


@bp.get("/<int:template_id>")
@member_required
def detail(template_id: int):
    """Preview a template with sample values; every member may use any template."""
    template = get_scoped_or_404(MailTemplate, template_id)
    membership = authorize(Action.USE_TEMPLATES)
    sample = PlaceholderValues(customer_name="山田 太郎", company="株式会社サンプル",
                               member_name=membership.user.name)
    return render_template("mailtemplates/detail.html", template=template, sample=sample,
                           subject=fill_subject(template.subject, sample),
                           body=fill_placeholders(template.body, sample),
                           editable=services.may_edit(membership, template))


@bp.route("/<int:template_id>/edit", methods=["GET", "POST"])
@member_required
def edit(template_id: int):
    """Change a template (the pen icon)."""
    template = _editable(template_id)
    form = _form(template)
    if form.validate_on_submit():
        services.update_template(db.session, current_membership(), template, _form_data(form))
        flash(f"テンプレート「{template.name}」を保存しました。", "success")
        return redirect(url_for("mailtemplates.index"))
    return _form_page(form, template)


@bp.route("/<int:template_id>/delete", methods=["GET", "POST"])
@member_required
def delete(template_id: int):
    """Confirm, then delete a template (the trash icon); refused while a sales automation sends it."""
    template = _editable(template_id)
    if request.method == "POST":
        try:
            services.delete_template(db.session, current_membership(), template)
        except services.TemplateInUse as refused:
            return render_template("mailtemplates/delete.html", template=template,
                                   in_use=refused.sequence_names), 409
        flash(f"テンプレート「{template.name}」を削除しました。", "success")
        return redirect(url_for("mailtemplates.index"))
    # Say it before the member confirms, rather than only after they press the button.
    return render_template("mailtemplates/delete.html", template=template,
                           in_use=services.sequences_using(db.session, template))
