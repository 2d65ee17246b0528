"""送受信メール: the mail list, a thread, attachments, and replying in a thread."""
import re
import secrets
from io import BytesIO

from flask import (Blueprint, abort, current_app, flash, make_response, redirect, render_template, request, send_file,
                   url_for)

from werkzeug.datastructures import FileStorage
from wtforms.fields.choices import SelectChoice

from portal.customers.routes import RESTRICTED
from portal.customers.services import may_open
from portal.errors import render_error
from portal.extensions import db
from portal.inputs import bounded_id, clamp_date, requested_page
from portal.mails import compose, deletion, sending, services
from portal.mails.forms import ComposeForm, MailFilterForm, NewMailForm
from portal.mails.html_view import body_view
from portal.mailsync.charsets import safe_filename
from portal.models import Customer, Direction, MailMessage, utcnow
from portal.policy import Action
from portal.tracking.services import tracking_summaries
from portal.web import authorize, current_membership, get_scoped_or_404, member_required, permission_required

bp = Blueprint("mails", __name__, url_prefix="/mails")

COMPOSE_ENDPOINTS = ("mails.reply", "mails.new_mail")


@bp.url_value_preprocessor
def _room_for_attachments(endpoint: str | None, values: dict | None) -> None:
    """A compose form may carry files past the portal-wide request limit, by up to their own limit.

    Set here because URL preprocessors run before any before_request (the CSRF check reads the form first).
    """
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    if endpoint in COMPOSE_ENDPOINTS and limit is not None:
        request.max_content_length = limit + current_app.config["MAIL_ATTACHMENTS_MAX_BYTES"]


@bp.errorhandler(413)
def _too_large(error):
    """A compose form too large to read: say how much may be attached."""
    if request.endpoint not in COMPOSE_ENDPOINTS:
        return render_error(413)
    size = current_app.jinja_env.filters["filesize"](current_app.config["MAIL_ATTACHMENTS_MAX_BYTES"])
    return render_error(413, f"添付ファイルは合計 {size} までです。ファイルを減らして、もう一度お試しください。")


@bp.get("")
@permission_required(Action.READ_MAIL)
def index():
    """Every imported message of the account, newest first, with filters."""
    membership = current_membership()
    form = MailFilterForm(request.args)
    members = services.filter_members(db.session, membership.account_id)
    form.member.choices = [SelectChoice("", "すべてのユーザー")] + [SelectChoice(str(m.id), m.user.name) for m in members]
    valid = form.validate()
    filters = _filters(form, valid)
    # Another account's customer answers like one that does not exist: 404 either way, so no id can be probed.
    customer = get_scoped_or_404(Customer, filters.customer_id) if filters.customer_id else None
    config, number = current_app.config, requested_page()
    if filters.text.strip():
        page = services.search_page(db.session, membership.account_id, filters, number, config["PER_PAGE"],
                                    services.SearchLimits(**config["SEARCH_LIMITS"]))
    else:
        page = services.list_page(db.session, membership.account_id, filters, number, config["PER_PAGE"],
                                  config["MAIL_LIST_COUNT_CAP"])
    args = {key: value for key, value in request.args.items() if key != "page" and value}
    response = render_template("mails/index.html", page=page, form=form, filter_customer=customer,
                               filters=filters, page_args=args, viewer=membership, may_open=may_open,
                               Direction=Direction)
    return response, 200 if valid else 422


def _filters(form: MailFilterForm, valid: bool) -> services.MailFilters:
    """The list filters from the query string; invalid fields filter nothing."""
    direction = form.direction.data if form.direction.data in ("received", "sent") else None
    member = request.args.get("member", type=bounded_id)
    return services.MailFilters(
        customer_id=request.args.get("customer", type=bounded_id), membership_id=member,
        direction=Direction(direction) if direction else None,
        date_from=clamp_date(form.date_from.data) if not form.date_from.errors else None,
        date_to=clamp_date(form.date_to.data) if valid or not form.date_to.errors else None,
        text=(form.q.data or "") if not form.q.errors else "")


@bp.get("/<int:message_id>")
@permission_required(Action.READ_MAIL)
def thread(message_id: int):
    """The whole thread of a message; HTML bodies are sanitised and shown in sandboxed frames."""
    message = get_scoped_or_404(MailMessage, message_id)
    membership = current_membership()
    show_images = request.args.get("images") == "1"
    messages = services.thread_messages(db.session, message)
    secret = current_app.config["SECRET_KEY"]
    rendered, as_text, blocked = {}, {}, 0
    for item in messages:
        if item.html_body:
            view = body_view(db.session, item, show_images=show_images,
                             size_cap=current_app.config["MAIL_HTML_VIEW_CAP"],
                             inline_url=lambda attachment_id: _inline_url(secret, membership.account_id, attachment_id))
            if view.document is not None:
                rendered[item.id] = (view.document, view.height)
                blocked += view.blocked_remote_images
            else:
                as_text[item.id] = view
    summaries = tracking_summaries(db.session, membership.account_id, [m.id for m in messages if m.tracked])
    response = make_response(render_template(
        "mails/thread.html", message=message, messages=messages, rendered=rendered, as_text=as_text,
        blocked_images=blocked,
        show_images=show_images, summaries=summaries, viewer=membership, may_open=may_open, Direction=Direction))
    remote = " https: http:" if show_images else ""
    # The page's own policy; the sandboxed srcdoc frames inherit it on top of their own.
    response.headers["Content-Security-Policy"] = (
        f"default-src 'self'; img-src 'self' data:{remote}; style-src 'self' 'unsafe-inline'; script-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _inline_url(secret: str, account_id: int, attachment_id: int) -> str:
    """An absolute, signed address of an inline image (the sandboxed frame sends no session cookie)."""
    return url_for("mails.inline_image", attachment_id=attachment_id, _external=True,
                   sig=services.inline_image_token(secret, account_id, attachment_id))


@bp.get("/attachments/<int:attachment_id>")
@permission_required(Action.READ_MAIL)
def attachment(attachment_id: int):
    """Download an attachment of one of the account's messages."""
    found = services.account_attachment(db.session, current_membership().account_id, attachment_id)
    if found is None:
        abort(404)
    return _file_response(found, as_attachment=True)


@bp.get("/attachments/<int:attachment_id>/inline")
def inline_image(attachment_id: int):
    """An inline (cid:) image for a mail frame: the signature names the account and the file."""
    claim = services.read_inline_image_token(current_app.config["SECRET_KEY"], request.args.get("sig", ""))
    if claim is None or claim[1] != attachment_id:
        abort(404)
    found = services.account_attachment(db.session, claim[0], attachment_id)
    if found is None or found.content_type.lower() not in services.INLINE_IMAGE_TYPES:
        abort(404)
    return _file_response(found, as_attachment=False)


def _file_response(found, as_attachment: bool):
    """Send stored bytes so a browser never runs them as a page of the portal."""
    # Cleaned again here: rows imported before the importer cleaned names may hold a CR/LF (a 500 in the header).
    content_type = found.content_type if re.fullmatch(r"[\w.+-]+/[\w.+-]+", found.content_type or "") else None
    response = send_file(BytesIO(found.content), mimetype=content_type or "application/octet-stream",
                         as_attachment=as_attachment, download_name=safe_filename(found.filename) or "attachment",
                         max_age=0)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.route("/<int:message_id>/reply", methods=["GET", "POST"])
@permission_required(Action.SEND_MAIL)
def reply(message_id: int):
    """返信: compose an answer in the thread and send it through the member's own mail server."""
    original = get_scoped_or_404(MailMessage, message_id)
    membership = current_membership()
    page = compose.screen(db.session, membership)
    form = _compose_form(page)
    draft = None
    if request.method == "GET":
        typed, draft = compose.reply_start(db.session, membership, original, _jst)
        _fill(form, typed)
        return render_template("mails/reply.html", form=form, original=original, draft=draft, **page.context())
    status, error = 200, None
    if form.action.data == "insert_template":
        _insert_template(form, membership, compose.reply_customer(original, form.to.data or ""))
    elif not page.can_send:
        status, error = 409, page.refusal(reply=True)
    elif not form.validate():
        status = 422
    else:
        try:
            sent = compose.send_reply(db.session, membership, original, _typed(form),
                                      sending.send_environment(current_app.config), utcnow())
        except compose.ComposeRefused as refused:
            status, error = _refusal(form, refused)
        else:
            return _after_send(sent, "返信を送信しました。", "この返信はすでに送信済みです。二重には送信していません。")
    return render_template("mails/reply.html", form=form, original=original, draft=draft, error=error,
                           files_dropped=_files_dropped(form), **page.context()), status


@bp.route("/new", methods=["GET", "POST"])
@permission_required(Action.SEND_MAIL)
def new_mail():
    """メールを作成: a new mail to a customer from the member's own mail server, starting a new thread."""
    membership = current_membership()
    page = compose.screen(db.session, membership)
    form = _compose_form(page, NewMailForm())
    customers = compose.recipients(db.session, membership)
    form.customer_id.choices = [SelectChoice("", "顧客を選択")] + [
        SelectChoice(str(c.id), f"{c.name} <{c.email}>") for c in customers]
    draft = None
    if request.method == "GET":
        customer = _visible_customer(request.args.get("customer", type=int))
        if customer is not None:
            typed, draft = compose.new_mail_start(db.session, membership, customer)
            _fill(form, typed)
            form.customer_id.data = str(customer.id)
        else:
            _fill(form, compose.Composition())
        return render_template("mails/new.html", form=form, draft=draft, **page.context())
    status, error = 200, None
    customer = compose.chosen_recipient(customers, form.customer_id.data)
    if form.action.data == "insert_template":
        _insert_template(form, membership, customer, new_mail=True)
    elif not page.can_send:
        status, error = 409, page.refusal(reply=False)
    elif not form.validate() or customer is None:
        if customer is None and not form.customer_id.errors:
            form.customer_id.errors.append("宛先の顧客を選んでください。")
        status = 422
    else:
        try:
            sent = compose.send_new_mail(db.session, membership, customer, _typed(form),
                                         sending.send_environment(current_app.config), utcnow())
        except compose.ComposeRefused as refused:
            status, error = _refusal(form, refused)
        else:
            return _after_send(sent, "メールを送信しました。", "このメールはすでに送信済みです。二重には送信していません。")
    return render_template("mails/new.html", form=form, draft=draft, error=error,
                           files_dropped=_files_dropped(form), **page.context()), status


def _visible_customer(customer_id: int | None) -> Customer | None:
    """The live customer of ?customer=, if the member may open it (another account's: 404; hidden: 403)."""
    if customer_id is None:
        return None
    customer = get_scoped_or_404(Customer, customer_id, Customer.deleted_at.is_(None))
    if not may_open(current_membership(), customer):
        abort(403, description=RESTRICTED)
    return customer


def _files_dropped(form: ComposeForm) -> bool:
    """True when files came with a form shown again: a browser cannot keep them, so the page asks for them again."""
    return any(isinstance(upload, FileStorage) and upload.filename for upload in form.attachments.data or [])


def _compose_form(page: compose.Screen, form: ComposeForm | None = None) -> ComposeForm:
    """The compose form with the account's templates to choose from."""
    form = form if form is not None else ComposeForm()
    form.template_id.choices = [SelectChoice("", "テンプレートを選択")] + [SelectChoice(str(t.id), t.name)
                                                                     for t in page.templates]
    return form


def _fill(form: ComposeForm, typed: compose.Composition) -> None:
    """Start the form from a fresh composition or a kept draft, with a new id for this compose form."""
    if form.to is not None:
        form.to.data = typed.to
    form.cc.data, form.subject.data, form.body.data = typed.cc, typed.subject, typed.body
    form.template_id.data = str(typed.template_id or "")
    form.compose_id.data = secrets.token_urlsafe(24)


def _typed(form: ComposeForm) -> compose.Composition:
    """What the member typed, as the compose service takes it."""
    return compose.Composition(to=form.to.data if form.to is not None else "", subject=form.subject.data,
                               body=form.body.data, template_id=_template_id(form),
                               compose_id=form.compose_id.data or None, cc=form.cc.data or "",
                               attachments=tuple(_uploads(form)))


def _uploads(form: ComposeForm) -> list:
    """The chosen files (an empty file field still sends one nameless part)."""
    return [compose.attachment(upload.filename, upload.mimetype, upload.read())
            for upload in form.attachments.data or [] if isinstance(upload, FileStorage) and upload.filename]


def _refusal(form: ComposeForm, refused: compose.ComposeRefused) -> tuple[int, str | None]:
    """A refusal beside its field when it names one, else above the form."""
    if refused.status == 422:
        getattr(form, refused.field_name or "subject", form.subject).errors.append(refused.message)
        return 422, None
    return refused.status, refused.message


def _after_send(sent: compose.Sent, done: str, again: str):
    """To the sent message in its thread, saying what happened."""
    flash(again if sent.again else done, "info" if sent.again else "success")
    for warning in sent.warnings:
        flash(warning, "warning")
    return redirect(url_for("mails.thread", message_id=sent.message.id, _anchor=f"message-{sent.message.id}"))


def _jst(value) -> str:
    """A time as the screens show it."""
    return current_app.jinja_env.filters["jst"](value)


def _template_id(form: ComposeForm) -> int | None:
    """The chosen template's id, if any."""
    try:
        return bounded_id(form.template_id.data)
    except (TypeError, ValueError):
        return None


def _insert_template(form: ComposeForm, membership, customer, new_mail: bool = False) -> None:
    """Put the chosen template's body (placeholders filled) above what is already written."""
    template_id = _template_id(form)
    if template_id is None:
        form.template_id.errors = ["テンプレートを選んでください。"]
        return
    try:
        filled, template = compose.insert_template(
            db.session, membership, template_id, customer,
            compose.Composition(subject=form.subject.data or "", body=form.body.data or ""), new_mail=new_mail)
    except compose.TemplateNotFound:
        abort(404)
    form.subject.data, form.body.data = filled.subject, filled.body
    flash(f"テンプレート「{template.name}」を挿入しました。", "info")


@bp.route("/<int:message_id>/delete", methods=["GET", "POST"])
@member_required
def delete(message_id: int):
    """Confirm, then delete one message in the portal (never on the mail server); managers and above."""
    message = get_scoped_or_404(MailMessage, message_id)
    authorize(Action.DELETE_MAIL)
    return _delete([message], message, "メールの削除", "このメールを削除しますか？",
                   url_for("mails.delete", message_id=message.id))


@bp.route("/<int:message_id>/delete-thread", methods=["GET", "POST"])
@member_required
def delete_thread(message_id: int):
    """Confirm, then delete every message of the message's thread in the portal; managers and above."""
    message = get_scoped_or_404(MailMessage, message_id)
    authorize(Action.DELETE_MAIL)
    doomed = deletion.thread_of(db.session, message)
    return _delete(doomed, message, "スレッドの削除", f"このスレッドのメール {len(doomed)}件をすべて削除しますか？",
                   url_for("mails.delete_thread", message_id=message.id))


def _delete(doomed: list[MailMessage], message: MailMessage, title: str, question: str, action: str):
    """The confirmation screen (GET) or the deletion (POST), then back to what is left of the thread or the list."""
    if request.method == "GET":
        return render_template("mails/delete.html", doomed=doomed, message=message, title=title, question=question,
                               action=action)
    remaining = [m.id for m in deletion.thread_of(db.session, message) if m not in doomed]
    done = deletion.delete_messages(db.session, current_membership(), doomed, utcnow())
    flash(f"メールを{done.messages}件削除しました。メールサーバーのメールはそのまま残っています。", "success")
    if remaining:
        return redirect(url_for("mails.thread", message_id=remaining[0]))
    return redirect(url_for("mails.index"))
