"""One rule for what comes in from the browser: control characters, integers and dates within the database's range.

PostgreSQL refuses a NUL inside any text and an integer past 2^31-1 in an integer column, and Python's dates stop
at year 1 and 9999: each of these reached the database (or date arithmetic) as a 500 before.
"""
import re
from datetime import date

from flask import Flask, abort, request
from werkzeug.datastructures import ImmutableMultiDict
from werkzeug.routing import IntegerConverter

# Ids are PostgreSQL `integer` columns: 1 .. 2^31-1.
MAX_ID = 2**31 - 1
# C0 controls but tab, LF and CR (allowed in multi-line fields only, see portal.forms).
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
ANY_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f]")
CONTROL_CHARACTER_MESSAGE = "使用できない文字（制御文字）が含まれています。入力内容を確認してください。"
# Dates a member can mean: anything outside is clamped (the far past and future hold no mail).
EARLIEST_DATE, LATEST_DATE = date(1970, 1, 1), date(2999, 12, 31)
# Read by Flask-SQLAlchemy's paginate on every list: past 2^31 its OFFSET overflows PostgreSQL's bigint.
PAGE_ARGUMENTS = ("page", "per_page")


class BoundedIntConverter(IntegerConverter):
    """`<int:...>` limited to the database's ids: a larger number is no route at all (404)."""

    def __init__(self, map, fixed_digits=0, min=None, max=MAX_ID, signed=False):
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)


def bounded_id(value) -> int:
    """An id from a query string or form (1 .. 2^31-1); anything else raises ValueError (so the default applies)."""
    number = int(value)
    if not 1 <= number <= MAX_ID:
        raise ValueError("out of range")
    return number


def page_number(value) -> int:
    """A page= argument: 1 .. 2^31-1 (a page past the last one is simply empty)."""
    return bounded_id(value)


def requested_page() -> int:
    """The page= of this request, 1 when missing or out of range."""
    return request.args.get("page", 1, type=page_number)


def clamp_date(day: date | None) -> date | None:
    """A date within EARLIEST_DATE .. LATEST_DATE (None stays None)."""
    if day is None:
        return None
    return min(max(day, EARLIEST_DATE), LATEST_DATE)


def has_control_characters(text: str, multiline: bool = False) -> bool:
    """True when the text holds a C0 control character (tab, CR and LF are fine in a multi-line field)."""
    return bool((CONTROL_CHARACTERS if multiline else ANY_CONTROL_CHARACTER).search(text))


def _acceptable_query_argument(key: str, value: str) -> bool:
    """False for an argument with a control character, or a page= that is no page number (db.paginate reads it)."""
    if has_control_characters(key) or has_control_characters(value):
        return False
    if key in PAGE_ARGUMENTS:
        try:
            page_number(value)
        except ValueError:
            return False
    return True


def _drop_bad_query_arguments() -> None:
    """A query argument the rule refuses is ignored, as if it had not been sent."""
    args = request.args
    if not all(_acceptable_query_argument(key, value) for key, value in args.items(multi=True)):
        request.args = ImmutableMultiDict(
            [(key, value) for key, value in args.items(multi=True) if _acceptable_query_argument(key, value)])


def _refuse_bad_path_arguments() -> None:
    """A path part with a control character (a token, a feature name) names nothing: 404."""
    for value in (request.view_args or {}).values():
        if isinstance(value, str) and has_control_characters(value):
            abort(404)


def init_app(app: Flask) -> None:
    """Bounded `<int:>` ids (before any blueprint adds its rules) and the request-wide input checks."""
    app.url_map.converters["int"] = BoundedIntConverter

    @app.before_request
    def check_inputs():
        _drop_bad_query_arguments()
        _refuse_bad_path_arguments()
