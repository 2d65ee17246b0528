"""ホーム: a short overview of the current account."""
from flask import Blueprint, render_template
from sqlalchemy import func, select

from portal.customers.services import visible_customers
from portal.extensions import db
from portal.feature_contracts import is_enabled
from portal.mailbox.services import STATE_BADGES, STATE_LABELS, latest_unlinked, live_link
from portal.web import current_membership, member_required

bp = Blueprint("main", __name__)


@bp.get("/")
@member_required
def home():
    """Overview: how many customers the member can see, the mail feature and the member's own link."""
    membership = current_membership()
    visible = visible_customers(membership).order_by(None).subquery()
    customer_count = db.session.scalar(select(func.count()).select_from(visible))
    return render_template("main/home.html", customer_count=customer_count,
                           mail_on=is_enabled(db.session, membership.account_id),
                           own_link=live_link(db.session, membership.id),
                           stopped_link=latest_unlinked(db.session, membership.id),
                           state_labels=STATE_LABELS, badges=STATE_BADGES)
