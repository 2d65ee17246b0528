"""ホーム: a short overview of the current account."""
from flask import Blueprint, render_template
from sqlalchemy import func, select

from portal.customers.services import visible_customers
from portal.extensions import db
from portal.web import current_membership, member_required

bp = Blueprint("main", __name__)


@bp.get("/")
@member_required
def home():
    """Overview: how many customers the member can see, and where to go next."""
    visible = visible_customers(current_membership()).order_by(None).subquery()
    customer_count = db.session.scalar(select(func.count()).select_from(visible))
    return render_template("main/home.html", customer_count=customer_count)
