"""Who may do what: one table of roles x actions, used by routes, templates and services."""
import enum

from portal.models.account import Role


class Action(str, enum.Enum):
    """Things a member can try to do in an account."""

    VIEW_CUSTOMERS = "view_customers"
    VIEW_ALL_CUSTOMERS = "view_all_customers"  # ignores 担当者閲覧制限
    EDIT_CUSTOMERS = "edit_customers"
    DELETE_CUSTOMERS = "delete_customers"
    ASSIGN_TO_OTHERS = "assign_to_others"  # make another member a customer's 担当者 (plain users: self or nobody)
    EDIT_MAILBOX_PRESETS = "edit_mailbox_presets"
    LINK_OWN_MAILBOX = "link_own_mailbox"
    MANAGE_FEATURES = "manage_features"
    MANAGE_USERS = "manage_users"
    MANAGE_ACCOUNT = "manage_account"
    CLOSE_ACCOUNT = "close_account"  # disable or cancel the whole account (locks everyone out)
    VIEW_AUDIT_LOG = "view_audit_log"
    VIEW_ALL_LINKS = "view_all_links"  # every member's link state and import log
    READ_MAIL = "read_mail"  # 送受信メール: every member reads all imported mail of the account
    SEND_MAIL = "send_mail"  # reply from the portal through one's own linked mailbox
    DELETE_MAIL = "delete_mail"  # delete imported mail in the portal (never on the mail server)
    USE_TEMPLATES = "use_templates"  # create own templates and use any template
    EDIT_SHARED_TEMPLATES = "edit_shared_templates"  # shared templates and other members' templates
    ENROLL_CUSTOMERS = "enroll_customers"  # put a customer into (or take out of) a sales automation
    ENROLL_FOR_OTHERS = "enroll_for_others"  # enrol a customer of another 担当者, whose mailbox then sends
    EDIT_SEQUENCES = "edit_sequences"  # create, change and delete sales automations


_ALL = {Role.OWNER, Role.ADMIN, Role.MANAGER, Role.USER}
_MANAGERS_UP = {Role.OWNER, Role.ADMIN, Role.MANAGER}
_ADMINS_UP = {Role.OWNER, Role.ADMIN}
_OWNERS = {Role.OWNER}

PERMISSIONS: dict[Action, frozenset[Role]] = {
    Action.VIEW_CUSTOMERS: frozenset(_ALL),
    Action.VIEW_ALL_CUSTOMERS: frozenset(_MANAGERS_UP),
    Action.EDIT_CUSTOMERS: frozenset(_ALL),
    Action.DELETE_CUSTOMERS: frozenset(_MANAGERS_UP),
    Action.ASSIGN_TO_OTHERS: frozenset(_MANAGERS_UP),
    Action.EDIT_MAILBOX_PRESETS: frozenset(_MANAGERS_UP),
    Action.LINK_OWN_MAILBOX: frozenset(_ALL),
    Action.MANAGE_FEATURES: frozenset(_ADMINS_UP),
    Action.MANAGE_USERS: frozenset(_ADMINS_UP),
    Action.MANAGE_ACCOUNT: frozenset(_ADMINS_UP),
    Action.CLOSE_ACCOUNT: frozenset(_OWNERS),  # as granting the owner role is
    Action.VIEW_AUDIT_LOG: frozenset(_ADMINS_UP),
    Action.VIEW_ALL_LINKS: frozenset(_ADMINS_UP),
    Action.READ_MAIL: frozenset(_ALL),
    Action.SEND_MAIL: frozenset(_ALL),
    Action.DELETE_MAIL: frozenset(_MANAGERS_UP),
    Action.USE_TEMPLATES: frozenset(_ALL),
    Action.EDIT_SHARED_TEMPLATES: frozenset(_MANAGERS_UP),
    Action.ENROLL_CUSTOMERS: frozenset(_ALL),
    Action.ENROLL_FOR_OTHERS: frozenset(_MANAGERS_UP),
    Action.EDIT_SEQUENCES: frozenset(_MANAGERS_UP),
}

ROLE_LABELS = {Role.OWNER: "オーナー", Role.ADMIN: "アドミン", Role.MANAGER: "マネージャー", Role.USER: "ユーザー"}


class PermissionDenied(Exception):
    """Raised by services when the acting member's role does not allow the action."""


def can(role: Role, action: Action) -> bool:
    """True when the role may perform the action."""
    return role in PERMISSIONS[action]


def ensure(role: Role, action: Action) -> None:
    """Raise PermissionDenied unless the role may perform the action."""
    if not can(role, action):
        raise PermissionDenied(action)
