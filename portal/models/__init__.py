"""All portal models; importing this package registers every table with the metadata."""
from portal.models.account import (Account, AccountStatus, LoginSession, Membership,
                                   MembershipState, Role, User)
from portal.models.audit import AuditLog
from portal.models.base import Base, utcnow
from portal.models.customer import Customer

__all__ = ["Account", "AccountStatus", "AuditLog", "Base", "Customer", "LoginSession",
           "Membership", "MembershipState", "Role", "User", "utcnow"]
