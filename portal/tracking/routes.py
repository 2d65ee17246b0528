"""Public tracking endpoints fetched by customers' mail clients: the open image and the click redirect."""
from datetime import timedelta

from flask import Blueprint, Response, abort, current_app, redirect, request, session

from portal.extensions import db
from portal.models import utcnow
from portal.tracking import services
from portal.tracking.tokens import CLICK_PATH, OPEN_PATH

# No login and no url_prefix: the paths are the ones baked into mail already sent.
bp = Blueprint("tracking", __name__)

# A transparent 1x1 GIF (43 bytes).
PIXEL = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00"
         b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")

# The destination only ever comes from the database; a request naming one is forged, so it gets nothing.
REDIRECT_PARAMETERS = frozenset({"url", "next", "redirect", "redirect_uri", "redirect_url", "to", "target",
                                 "dest", "destination", "goto", "return", "return_to", "continue"})

NO_STORE = {"Cache-Control": "no-store, private", "X-Content-Type-Options": "nosniff"}


@bp.before_request
def refuse_redirect_parameters():
    """404 for any tracking request that carries a destination of its own."""
    if any(name.lower() in REDIRECT_PARAMETERS for name in request.args):
        abort(404)


@bp.after_request
def never_set_cookies(response: Response) -> Response:
    """Keep the portal's session cookie out of answers to mail clients and link scanners."""
    # The app-wide login check may touch the session of a signed-in member who follows a link; saving it
    # would put a cookie on a customer-facing response. Dropping the write is harmless: login sessions live
    # in the database, and the member's next portal page makes the same change again.
    session.modified = False
    response.headers.update(NO_STORE)
    return response


def _count_window() -> timedelta:
    """TRACKING_COUNT_WINDOW_SECONDS: one counted open or click per client in this time."""
    return timedelta(seconds=current_app.config["TRACKING_COUNT_WINDOW_SECONDS"])


@bp.get(OPEN_PATH + "<token>")
def open_image(token: str):
    """The tracking image: one open recorded per GET, then a transparent pixel."""
    secret_key = current_app.config["SECRET_KEY"]
    if request.method == "HEAD":
        # Scanners probe with HEAD; answering without recording keeps one event per real fetch.
        found = services.tracked_message_id(db.session, secret_key, token) is not None
    else:
        found = services.record_open(db.session, secret_key, token, request.user_agent.string, utcnow(),
                                     request.remote_addr, _count_window())
    if not found:
        abort(404)
    return Response(PIXEL, mimetype="image/gif")


@bp.get(CLICK_PATH + "<token>")
def follow_link(token: str):
    """A tracked link: one click recorded per GET, then a redirect to the address stored when it was sent."""
    secret_key = current_app.config["SECRET_KEY"]
    if request.method == "HEAD":
        link = services.tracked_link(db.session, secret_key, token)
        destination = link.url if link is not None else None
    else:
        destination = services.record_click(db.session, secret_key, token, request.user_agent.string, utcnow(),
                                            request.remote_addr, _count_window())
    if destination is None:
        abort(404)
    response = redirect(destination, code=302)
    # The destination site must not learn the token from Referer and replay it as more clicks.
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
