"""Writing audit log entries; the caller's transaction commits them with the change itself."""
from sqlalchemy.orm import Session

from portal.models import AuditLog


def record(session: Session, account_id: int, actor_user_id: int | None, action: str,
           target_type: str, target_id: int | None, **details) -> AuditLog:
    """Add an audit entry to the session (no commit)."""
    entry = AuditLog(account_id=account_id, actor_user_id=actor_user_id, action=action,
                     target_type=target_type, target_id=target_id, details=details)
    session.add(entry)
    return entry
