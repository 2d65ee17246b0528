"""機能契約: the feature list with billing history, and the on/off confirmation screens."""
from flask import Blueprint, abort, flash, redirect, render_template, url_for

from portal.extensions import db
from portal.feature_contracts import is_enabled
from portal.features import services
from portal.features.chart import volume_chart
from portal.features.forms import TurnOffForm, TurnOnForm
from portal.models import EMAIL_FEATURE, utcnow
from portal.policy import Action
from portal.web import current_membership, permission_required

bp = Blueprint("features", __name__, url_prefix="/settings/features")


@bp.get("")
@permission_required(Action.MANAGE_FEATURES)
def index():
    """Each optional feature with オン/オフ, the billing history and the stored mail volume."""
    account_id = current_membership().account_id
    states = {feature: is_enabled(db.session, account_id, feature) for feature in services.FEATURE_LABELS}
    setup = services.mail_setup_progress(db.session, account_id) if states[EMAIL_FEATURE] else None
    return render_template("features/index.html", states=states, labels=services.FEATURE_LABELS,
                           history=services.billing_history(db.session, account_id),
                           volume=services.stored_mail_volume(db.session, account_id), setup=setup,
                           chart=volume_chart(services.volume_history(db.session, account_id, utcnow())))


@bp.route("/<feature>/<any(on, off):change>", methods=["GET", "POST"])
@permission_required(Action.MANAGE_FEATURES)
def confirm(feature: str, change: str):
    """Explain what changes (billing, unlinking), require agreement, then switch on 「確認」."""
    if feature not in services.FEATURE_LABELS:
        abort(404)
    turning_on = change == "on"
    form = TurnOnForm() if turning_on else TurnOffForm()
    if form.validate_on_submit():
        membership = current_membership()
        services.set_feature(db.session, membership, feature, turning_on, utcnow())
        label = services.FEATURE_LABELS[feature]
        flash(f"{label}機能を{'オン' if turning_on else 'オフ'}にしました。", "success")
        return redirect(url_for("features.index"))
    return render_template("features/confirm.html", form=form, feature=feature, turning_on=turning_on,
                           label=services.FEATURE_LABELS[feature]), 422 if form.errors else 200
