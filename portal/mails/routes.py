"""The 送受信メール list; empty until mailboxes are linked and mail is imported."""
from flask import Blueprint, render_template

from portal.web import member_required

bp = Blueprint("mails", __name__, url_prefix="/mails")


@bp.get("")
@member_required
def index():
    """Imported mail of the account (none can exist before mailbox linking)."""
    return render_template("mails/index.html")
