"""Request-side helpers: the current membership, access decorators and account-scoped queries."""
from functools import wraps
from urllib.parse import urlsplit

from flask import abort, g, redirect, request, url_for
from flask_login import current_user
from sqlalchemy import select

from portal.extensions import db, login_manager
from portal.inputs import MAX_ID
from portal.models import Membership
from portal.policy import Action, can
from portal.scoping import for_account, get_in_account


def current_membership() -> Membership | None:
    """The membership the signed-in user is working in, or None."""
    login_session = g.get("login_session")
    return login_session.membership if login_session is not None else None


def member_required(view):
    """Require a signed-in user who has chosen one of their accounts."""
    @wraps(view)
    def wrapped(*args, **kwargs):
        if not current_user.is_authenticated:
            return login_manager.unauthorized()
        if current_membership() is None:
            return redirect(url_for("auth.select_account", next=request.full_path))
        return view(*args, **kwargs)
    return wrapped


def authorize(action: Action, message: str | None = None) -> Membership:
    """Abort with 403 unless the current member's role allows the action; returns the membership."""
    membership = current_membership()
    if membership is None or not can(membership.role, action):
        abort(403, description=message)
    return membership


def permission_required(action: Action):
    """Decorator form of authorize for routes that act on no particular object."""
    def decorator(view):
        @wraps(view)
        @member_required
        def wrapped(*args, **kwargs):
            authorize(action)
            return view(*args, **kwargs)
        return wrapped
    return decorator


def scoped(model):
    """A SELECT of the model limited to the current account."""
    return for_account(select(model), current_membership().account_id)


def get_scoped_or_404(model, object_id: int, *criteria):
    """Load one object of the current account, or 404 (another account's object does not exist)."""
    if not isinstance(object_id, int) or not 1 <= object_id <= MAX_ID:
        abort(404)  # past the id column's range (PostgreSQL would refuse the query): no such object
    obj = get_in_account(db.session, model, object_id, current_membership().account_id, *criteria)
    if obj is None:
        abort(404)
    return obj


def is_safe_next(target: str | None) -> bool:
    """True for same-site relative paths only, so ?next= cannot redirect elsewhere."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return False
    parts = urlsplit(target)
    return parts.scheme == "" and parts.netloc == ""
