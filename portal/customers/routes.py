"""Customer list, detail, create, edit and delete screens."""
from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for

from portal.automations import services as automation_services
from portal.customers import services
from portal.customers.forms import CustomerForm
from portal.extensions import db
from portal.mails import services as mail_services
from portal.models import Customer, Direction, utcnow
from portal.policy import Action
from portal.web import authorize, current_membership, get_scoped_or_404, member_required, permission_required

bp = Blueprint("customers", __name__, url_prefix="/customers")

RESTRICTED = "閲覧権限がありません。担当者閲覧制限により、担当のお客様のみ表示できます。"
ASSIGN_SELF_ONLY = "担当者には自分か「（未設定）」を選んでください。ほかのユーザーを担当者にできるのはマネージャー以上です。"


def _load_visible(customer_id: int) -> Customer:
    """A live customer of the current account that the member may open (404 / 403 otherwise)."""
    customer = get_scoped_or_404(Customer, customer_id, Customer.deleted_at.is_(None))
    if not services.may_open(current_membership(), customer):
        abort(403, description=RESTRICTED)
    return customer


def _form_data(form: CustomerForm) -> services.CustomerData:
    """Turn the submitted form into the service's input."""
    return services.CustomerData(name=form.name.data, email=form.email.data, company=form.company.data or "",
                                 assigned_membership_id=form.assigned_user_id.data)


def _save(form: CustomerForm, save) -> bool:
    """Run a save; a domain error becomes a form error beside its field."""
    try:
        save(_form_data(form))
        return True
    except services.DuplicateCustomerEmail:
        form.email.errors.append("このメールアドレスの顧客はすでに登録されています。")
    except services.InvalidAssignee:
        form.assigned_user_id.errors.append("担当者を選び直してください。")
    except services.AssignToOthersDenied:
        form.assigned_user_id.errors.append(ASSIGN_SELF_ONLY)
    return False


@bp.get("")
@permission_required(Action.VIEW_CUSTOMERS)
def index():
    """Paginated, searchable list of customers."""
    membership = current_membership()
    query = request.args.get("q", "")
    page = db.paginate(services.visible_customers(membership, query),
                       per_page=current_app.config["PER_PAGE"], error_out=False)
    return render_template("customers/index.html", page=page, query=query,
                           member_domains=services.member_domains(db.session, membership.account_id))


@bp.route("/new", methods=["GET", "POST"])
@permission_required(Action.EDIT_CUSTOMERS)
def create():
    """Register a new customer."""
    membership = current_membership()
    form = CustomerForm()
    form.set_assignees(services.assignees_for(db.session, membership))
    if request.method == "GET":
        form.assigned_user_id.data = membership.id
    if form.validate_on_submit() and _save(form, lambda data: services.create_customer(
            db.session, membership, data)):
        flash("顧客を登録しました。", "success")
        return redirect(url_for("customers.index"))
    return render_template("customers/form.html", form=form, customer=None), 422 if form.errors else 200


@bp.get("/<int:customer_id>")
@member_required
def detail(customer_id: int):
    """One customer's profile and mail timeline (threads, newest first)."""
    authorize(Action.VIEW_CUSTOMERS)
    customer = _load_visible(customer_id)
    threads = db.paginate(mail_services.timeline_threads(customer.account_id, customer.id),
                          per_page=current_app.config["PER_PAGE"], error_out=False)
    timeline = mail_services.timeline_messages(db.session, customer.account_id, customer.id, list(threads.items))
    return render_template("customers/detail.html", customer=customer, threads=threads, timeline=timeline,
                           viewer=current_membership(), may_open=services.may_open, Direction=Direction,
                           enrollments=automation_services.customer_enrollments(db.session, customer.account_id,
                                                                                customer.id),
                           may_enroll=automation_services.may_enroll(current_membership(), customer),
                           sequences=automation_services.sequences_of(db.session, customer.account_id))


@bp.route("/<int:customer_id>/edit", methods=["GET", "POST"])
@member_required
def edit(customer_id: int):
    """Change a customer."""
    customer = _load_visible(customer_id)
    authorize(Action.EDIT_CUSTOMERS)
    form = CustomerForm(obj=customer if request.method == "GET" else None)
    form.set_assignees(services.assignees_for(db.session, current_membership()), customer.assigned_membership)
    if request.method == "GET":
        form.assigned_user_id.data = customer.assigned_membership_id
    if form.validate_on_submit() and _save(form, lambda data: services.update_customer(
            db.session, current_membership(), customer, data)):
        flash("顧客情報を更新しました。", "success")
        return redirect(url_for("customers.detail", customer_id=customer.id))
    return render_template("customers/form.html", form=form, customer=customer), 422 if form.errors else 200


@bp.route("/<int:customer_id>/delete", methods=["GET", "POST"])
@member_required
def delete(customer_id: int):
    """Confirm, then delete a customer."""
    customer = _load_visible(customer_id)
    authorize(Action.DELETE_CUSTOMERS)
    if request.method == "POST":
        services.delete_customer(db.session, current_membership(), customer, utcnow())
        flash(f"顧客「{customer.name}」を削除しました。", "success")
        return redirect(url_for("customers.index"))
    return render_template("customers/delete.html", customer=customer)
