"""The role x action table grants what the product promises each role, for every action."""
import pytest

from portal.models import Role
from portal.policy import PERMISSIONS, Action, PermissionDenied, can, ensure

OWNER_ONLY = {Role.OWNER}
ADMINS_UP = {Role.OWNER, Role.ADMIN}
MANAGERS_UP = {Role.OWNER, Role.ADMIN, Role.MANAGER}
EVERYONE = set(Role)

# Who the product says may do each thing, stated from its rules (README, screens), not read off PERMISSIONS.
PROMISED = {
    # Customers: everyone works with customers; only managers and above see past 担当者閲覧制限, delete,
    # or make someone else a customer's 担当者 (a plain user assigns himself or nobody).
    Action.VIEW_CUSTOMERS: EVERYONE,
    Action.VIEW_ALL_CUSTOMERS: MANAGERS_UP,
    Action.EDIT_CUSTOMERS: EVERYONE,
    Action.DELETE_CUSTOMERS: MANAGERS_UP,
    Action.ASSIGN_TO_OTHERS: MANAGERS_UP,
    # Mailboxes: 推奨設定 is kept by managers and above; every member links his own mailbox; only owners and
    # admins see every member's link and import log.
    Action.EDIT_MAILBOX_PRESETS: MANAGERS_UP,
    Action.LINK_OWN_MAILBOX: EVERYONE,
    Action.VIEW_ALL_LINKS: ADMINS_UP,
    # Mail: every member reads all of the account's mail and replies through his own mailbox; managers and above
    # delete imported mail in the portal (issue 12: 「マネージャー以上」).
    Action.READ_MAIL: EVERYONE,
    Action.SEND_MAIL: EVERYONE,
    Action.DELETE_MAIL: MANAGERS_UP,
    # Templates: everyone writes his own and uses any; shared ones and other members' are managers' and above.
    Action.USE_TEMPLATES: EVERYONE,
    Action.EDIT_SHARED_TEMPLATES: MANAGERS_UP,
    # Sales automation: everyone enrols his own customers; managers and above enrol others' customers and
    # make, change and delete automations.
    Action.ENROLL_CUSTOMERS: EVERYONE,
    Action.ENROLL_FOR_OTHERS: MANAGERS_UP,
    Action.EDIT_SEQUENCES: MANAGERS_UP,
    # The account: owners and admins manage features (billing), members, settings and read the audit log;
    # disabling or cancelling the whole account locks everyone out, so only owners may.
    Action.MANAGE_FEATURES: ADMINS_UP,
    Action.MANAGE_USERS: ADMINS_UP,
    Action.MANAGE_ACCOUNT: ADMINS_UP,
    Action.VIEW_AUDIT_LOG: ADMINS_UP,
    Action.CLOSE_ACCOUNT: OWNER_ONLY,
}

RANK = [Role.USER, Role.MANAGER, Role.ADMIN, Role.OWNER]


def test_every_action_has_a_promise_and_a_row():
    """A new action needs both a row in the table and a stated promise here."""
    assert set(PROMISED) == set(Action), "state who may do the new action in PROMISED"
    assert set(PERMISSIONS) == set(Action), "a missing row would be a KeyError at request time"


@pytest.mark.parametrize("action", list(Action), ids=lambda action: action.value)
@pytest.mark.parametrize("role", list(Role), ids=lambda role: role.value)
def test_table_grants_what_is_promised(action, role):
    """Each cell of role x action: allowed exactly when promised, and ensure() agrees with can()."""
    allowed = role in PROMISED[action]
    assert can(role, action) == allowed
    if allowed:
        ensure(role, action)
    else:
        with pytest.raises(PermissionDenied):
            ensure(role, action)


@pytest.mark.parametrize("action", list(Action), ids=lambda action: action.value)
def test_a_higher_role_may_do_whatever_a_lower_one_may(action):
    """Roles are nested: promoting a member never takes a permission away."""
    for lower, higher in zip(RANK, RANK[1:]):
        assert not can(lower, action) or can(higher, action), f"{higher.value} lacks what {lower.value} has"
