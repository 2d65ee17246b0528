"""Password hashing with argon2id; the work factor comes from the app's settings."""
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()


def configure(time_cost: int, memory_cost: int) -> None:
    """Set the argon2id work factor used for new hashes."""
    global _hasher
    _hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_cost)


def hash_password(password: str) -> str:
    """Return an argon2id hash of the password."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True when the password matches the stored hash."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def burn_time(password: str) -> None:
    """Spend a verification's worth of time so unknown emails answer as slowly as wrong passwords."""
    verify_password(_dummy_hash(), password)


_DUMMY: dict[str, str] = {}


def _dummy_hash() -> str:
    """A hash made with the current work factor, computed once."""
    key = f"{_hasher.time_cost}:{_hasher.memory_cost}"
    if key not in _DUMMY:
        _DUMMY[key] = _hasher.hash("not-a-real-password")
    return _DUMMY[key]
