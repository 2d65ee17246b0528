"""The role x action table matches the product's documented matrix."""
import pytest

from portal.models import Role
from portal.policy import PERMISSIONS, Action, PermissionDenied, can, ensure

O, A, M, U = Role.OWNER, Role.ADMIN, Role.MANAGER, Role.USER

DOCUMENTED = {
    Action.EDIT_MAILBOX_PRESETS: {O, A, M},
    Action.LINK_OWN_MAILBOX: {O, A, M, U},
    Action.MANAGE_FEATURES: {O, A},
    Action.MANAGE_USERS: {O, A},
    Action.MANAGE_ACCOUNT: {O, A},
    Action.CLOSE_ACCOUNT: {O},
    Action.ASSIGN_TO_OTHERS: {O, A, M},
    Action.ENROLL_FOR_OTHERS: {O, A, M},
}


@pytest.mark.parametrize("action", list(DOCUMENTED))
@pytest.mark.parametrize("role", list(Role))
def test_documented_matrix(action, role):
    """Each documented cell of the matrix holds."""
    assert can(role, action) == (role in DOCUMENTED[action])


def test_every_action_has_a_row():
    """No action is missing from the table (a missing row would be a KeyError at request time)."""
    assert set(PERMISSIONS) == set(Action)


def test_ensure_raises_for_forbidden_role():
    """Services can rely on ensure() to refuse a plain user."""
    ensure(O, Action.MANAGE_USERS)
    with pytest.raises(PermissionDenied):
        ensure(U, Action.MANAGE_USERS)
