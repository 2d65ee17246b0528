"""Which paid features (機能契約) an account has on: read by the use cases that need a feature, below all of them.

Turning a feature on or off is a use case of portal/features/, which sits above the mailbox (turning メール off
unlinks every mailbox); whether it is on is read here, so the mailbox never has to import portal/features/.
"""
from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.models import EMAIL_FEATURE, FeatureContract
from portal.scoping import for_account


class FeatureOff(Exception):
    """The メール feature must be on first."""


def is_enabled(session: Session, account_id: int, feature: str = EMAIL_FEATURE) -> bool:
    """True when the feature is on for the account."""
    return bool(session.scalar(for_account(select(FeatureContract.enabled), account_id)
                               .where(FeatureContract.feature == feature)))
