"""All portal models; importing this package registers every table with the metadata."""
from portal.models.account import (Account, AccountStatus, Invitation, LoginSession, Membership,
                                   MembershipState, PasswordReset, Role, User)
from portal.models.audit import AuditLog
from portal.models.base import Base, utcnow
from portal.models.customer import Customer
from portal.models.mail import (Direction, ImportLogEntry, MailAttachment, MailCustomer, MailDraft, MailMessage,
                                MailSource, MailTemplate, MailThread, MailTombstone, TrackedLink, TrackingEvent,
                                TrackingKind)
from portal.models.features import EMAIL_FEATURE, BillingEvent, FeatureContract
from portal.models.mailbox import (AuthMethod, FolderRole, LinkState, MailboxFolder, MailboxLink, MailboxPreset,
                                   OAuthProvider, Security, UnlinkReason)
from portal.models.sales import Enrollment, EnrollmentState, Sequence, SequenceStep, StopReason

__all__ = ["Enrollment", "EnrollmentState", "MailDraft", "MailTemplate", "Sequence", "SequenceStep", "StopReason",
           "TrackedLink", "TrackingEvent", "TrackingKind", "Direction", "ImportLogEntry", "MailAttachment", "MailCustomer", "MailMessage", "MailSource", "MailThread", "MailTombstone",
           "Account", "AccountStatus", "AuditLog", "Invitation", "PasswordReset", "Base", "BillingEvent", "Customer", "EMAIL_FEATURE",
           "AuthMethod", "OAuthProvider", "FeatureContract", "FolderRole", "LinkState", "LoginSession", "MailboxFolder", "MailboxLink",
           "MailboxPreset", "Membership", "MembershipState", "Role", "Security", "UnlinkReason", "User", "utcnow"]
