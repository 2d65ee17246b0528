"""セールスオートメーション: list, detail, create, edit (pen), delete (trash), enrol and stop customers."""
from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for

from portal.automations import services
from portal.automations.forms import SequenceForm
from portal.customers.routes import RESTRICTED
from portal.customers.services import may_open
from portal.extensions import db
from portal.feature_contracts import is_enabled
from portal.inputs import bounded_id
from portal.mailtemplates.services import templates_for
from portal.models import Customer, Enrollment, Sequence, utcnow
from portal.policy import Action, PermissionDenied
from portal.web import (authorize, current_membership, get_scoped_or_404, is_safe_next, member_required,
                        permission_required)

bp = Blueprint("automations", __name__, url_prefix="/automations")

ALREADY_RUNNING = "このお客様はすでに実行中です。"


def enroll_for_others_message(assignee) -> str:
    """Why a plain user may not enrol this customer, naming the 担当者 whose mailbox would send."""
    if assignee is None:
        return ("担当者が設定されていないお客様を登録できるのは、マネージャー以上のユーザーです。"
                "先に顧客情報で担当者を自分に設定してください。")
    return (f"このお客様の担当者は{assignee.user.name}さんです。セールスオートメーションのメールは担当者のメールボックスから"
            "送信されるため、登録できるのは担当者本人かマネージャー以上のユーザーです。")


@bp.app_context_processor
def automation_labels():
    """State and stop-reason labels for every template (the customer page shows enrolments too)."""
    return {"ENROLLMENT_STATE_LABELS": services.STATE_LABELS, "STOP_REASON_LABELS": services.STOP_REASON_LABELS}


def _back(default: str):
    """Redirect to the posted next= page when it is on this site, else to the default."""
    target = request.form.get("next")
    return redirect(target if is_safe_next(target) else default)


def _refused(message: str, status: int, sequence: Sequence | None = None, customer: Customer | None = None):
    """A short page saying why an enrolment request was refused, with the way back."""
    target = request.form.get("next")
    return render_template("automations/refused.html", message=message, sequence=sequence, customer=customer,
                           next_url=target if is_safe_next(target) else None), status


@bp.get("")
@permission_required(Action.ENROLL_CUSTOMERS)
def index():
    """Every sequence of the account with its step count, 自動停止 and running enrolments."""
    membership = current_membership()
    page = db.paginate(services.sequence_list(membership.account_id), per_page=current_app.config["PER_PAGE"],
                       error_out=False)
    return render_template("automations/index.html", page=page,
                           counts=services.sequence_counts(db.session, membership.account_id,
                                                          [s.id for s in page.items]),
                           email_on=is_enabled(db.session, membership.account_id))


@bp.get("/<int:sequence_id>")
@member_required
def detail(sequence_id: int):
    """A sequence's steps and its enrolments (customer names link only where the member may open them)."""
    sequence = get_scoped_or_404(Sequence, sequence_id)
    membership = authorize(Action.ENROLL_CUSTOMERS)
    page = db.paginate(services.sequence_enrollments(sequence), per_page=current_app.config["PER_PAGE"],
                       error_out=False)
    return render_template("automations/detail.html", sequence=sequence, page=page,
                           may_open=lambda customer: may_open(membership, customer),
                           counts=services.enrollment_counts(db.session, sequence))


@bp.route("/new", methods=["GET", "POST"])
@permission_required(Action.EDIT_SEQUENCES)
def create():
    """Add a sequence."""
    return _sequence_form(None)


@bp.route("/<int:sequence_id>/edit", methods=["GET", "POST"])
@member_required
def edit(sequence_id: int):
    """Change a sequence (the pen icon)."""
    sequence = get_scoped_or_404(Sequence, sequence_id)
    authorize(Action.EDIT_SEQUENCES, "セールスオートメーションを編集する権限がありません。")
    return _sequence_form(sequence)


def _sequence_form(sequence: Sequence | None):
    """The shared create/edit form; a domain error becomes a form error."""
    membership = current_membership()
    form = SequenceForm()
    form.set_templates(templates_for(db.session, membership.account_id))
    if request.method == "GET" and sequence is not None:
        form.name.data, form.stop_on_reply.data = sequence.name, sequence.stop_on_reply
        form.fill(sequence.steps)
    if form.validate_on_submit():
        data = services.SequenceData(name=form.name.data, stop_on_reply=form.stop_on_reply.data,
                                     steps=form.step_data())
        try:
            if sequence is None:
                sequence = services.create_sequence(db.session, membership, data)
            else:
                services.update_sequence(db.session, membership, sequence, data)
            flash(f"セールスオートメーション「{sequence.name}」を保存しました。", "success")
            return redirect(url_for("automations.detail", sequence_id=sequence.id))
        except services.UnknownTemplate:
            db.session.rollback()
            form.steps.errors = ["選択したテンプレートが見つかりません。選び直してください。"]
    return render_template("automations/form.html", form=form, sequence=sequence), 422 if form.errors else 200


@bp.route("/<int:sequence_id>/delete", methods=["GET", "POST"])
@member_required
def delete(sequence_id: int):
    """Confirm, then delete a sequence (the trash icon); refused while customers are running it."""
    sequence = get_scoped_or_404(Sequence, sequence_id)
    authorize(Action.EDIT_SEQUENCES, "セールスオートメーションを削除する権限がありません。")
    active, finished = services.enrollment_counts(db.session, sequence)
    if request.method == "POST":
        try:
            services.delete_sequence(db.session, current_membership(), sequence)
        except services.SequenceInUse:
            return render_template("automations/delete.html", sequence=sequence, active=active,
                                   finished=finished), 409
        flash(f"セールスオートメーション「{sequence.name}」を削除しました。", "success")
        return redirect(url_for("automations.index"))
    return render_template("automations/delete.html", sequence=sequence, active=active, finished=finished)


@bp.post("/<int:sequence_id>/enroll")
@member_required
def enroll(sequence_id: int):
    """Enrol a customer (customer_id in the form) in this sequence."""
    return _enroll(get_scoped_or_404(Sequence, sequence_id))


@bp.post("/enroll")
@member_required
def enroll_chosen():
    """Enrol a customer in the sequence chosen in the customer page's picker (sequence_id in the form)."""
    sequence_id = request.form.get("sequence_id", type=bounded_id)
    if sequence_id is None:
        customer = _form_customer()
        authorize(Action.ENROLL_CUSTOMERS)
        return _refused("セールスオートメーションを選んでください。", 422, customer=customer)
    return _enroll(get_scoped_or_404(Sequence, sequence_id))


def _form_customer() -> Customer:
    """The live customer of the current account named by customer_id in the form (404 otherwise)."""
    customer_id = request.form.get("customer_id", type=bounded_id)
    if customer_id is None:
        abort(404)
    return get_scoped_or_404(Customer, customer_id, Customer.deleted_at.is_(None))


def _enroll(sequence: Sequence):
    """Enrol the form's customer: 404 for another account's customer, 403 when hidden, 409 when already running."""
    customer = _form_customer()
    membership = authorize(Action.ENROLL_CUSTOMERS)
    try:
        services.enroll_customer(db.session, membership, sequence, customer, utcnow())
    except PermissionDenied:
        abort(403, description=RESTRICTED)
    except services.AlreadyEnrolled:
        return _refused(ALREADY_RUNNING, 409, sequence=sequence, customer=customer)
    except services.EnrollForOthersDenied as denied:
        return _refused(enroll_for_others_message(denied.assignee), 403, sequence=sequence, customer=customer)
    flash(f"「{customer.name}」をセールスオートメーション「{sequence.name}」に登録しました。", "success")
    return _back(url_for("automations.detail", sequence_id=sequence.id))


@bp.post("/enrollments/<int:enrollment_id>/stop")
@member_required
def stop(enrollment_id: int):
    """Stop a running enrolment (手動で停止)."""
    enrollment = get_scoped_or_404(Enrollment, enrollment_id)
    membership = authorize(Action.ENROLL_CUSTOMERS)
    try:
        services.stop_enrollment(db.session, membership, enrollment, utcnow())
    except PermissionDenied:
        abort(403, description=RESTRICTED)
    except services.NotActive:
        return _refused("このセールスオートメーションはすでに終了しています。", 409, sequence=enrollment.sequence,
                        customer=enrollment.customer)
    flash(f"「{enrollment.customer.name}」のセールスオートメーション「{enrollment.sequence.name}」を停止しました。",
          "success")
    return _back(url_for("automations.detail", sequence_id=enrollment.sequence_id))
