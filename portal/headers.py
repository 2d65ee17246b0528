"""Security headers on every response: a CSP that forbids framing, nosniff, a Referrer-Policy, no-store when signed in.

A route may send a stricter policy of its own (the mail thread, attachments, tracking); it keeps it, and only
gets `frame-ancestors 'none'` added when its policy does not say who may frame it.
"""
from flask import Flask, Response, request
from flask_login import current_user

# No inline script anywhere (every script is a static file); style attributes stay allowed (the mail frames' height
# is set per message). data: images are Bootstrap's form icons.
DEFAULT_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
               "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    # Links out of the portal (a customer's site in a mail) never learn the portal's URLs.
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
}


def add_security_headers(response: Response) -> Response:
    """Fill in what the route did not set itself."""
    policy = response.headers.get("Content-Security-Policy")
    if policy is None:
        response.headers["Content-Security-Policy"] = DEFAULT_CSP
    elif "frame-ancestors" not in policy:
        response.headers["Content-Security-Policy"] = policy.rstrip("; ") + "; frame-ancestors 'none'"
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    # Static files stay cacheable; checking them must not load the signed-in user either.
    if request.endpoint != "static" and current_user.is_authenticated \
            and "no-store" not in response.headers.get("Cache-Control", ""):
        response.headers["Cache-Control"] = "no-store"
    return response


def init_app(app: Flask) -> None:
    """Send the headers on every response of the app, error pages included."""
    app.after_request(add_security_headers)
