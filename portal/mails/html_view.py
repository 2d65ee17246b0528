"""A message's body as its frame shows it: the HTML sanitised once and kept, and past a size cap the text part.

Sanitising a 10 MB HTML mail took 9 s, on every view. The result with remote images blocked (the usual view) is
stored on the message; inline images stay placeholders in it, since their signed addresses change with time.
"""
import html as html_lib
import re
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from portal.mails.render import estimated_frame_height, render_mail_html
from portal.models import MailMessage

# Bump when the sanitiser's rules change: every kept result is then made again on its next view.
RENDER_VERSION = 1
# A stand-in for an inline image's address in the kept HTML: `.invalid` names nothing that could ever load.
_PLACEHOLDER_ORIGIN = "https://inline-image.portal.invalid"
_PLACEHOLDER_URL = re.compile(re.escape(_PLACEHOLDER_ORIGIN) + r"/(\d+)")
_TAG = re.compile(r"<[^>]*>")
_HIDDEN = re.compile(r"<(style|script|head|title)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class BodyView:
    """What the thread page shows for one message: a srcdoc document, or text with the reason."""

    document: str | None = None
    height: int = 0
    blocked_remote_images: int = 0
    text: str | None = None
    html_too_large: bool = False


def body_view(session: Session, message: MailMessage, *, show_images: bool, size_cap: int,
              inline_url: Callable[[int], str | None]) -> BodyView:
    """The message's HTML body made safe (kept on the message for later views), or its text past size_cap.

    inline_url(attachment_id) gives the absolute, signed address of one of the message's inline images.
    """
    if len(message.html_body) > size_cap:
        return BodyView(text=message.text_body or _text_of(message.html_body, size_cap), html_too_large=True)
    if not show_images and message.safe_html_version == RENDER_VERSION and message.safe_html is not None:
        document, blocked, height = message.safe_html, message.safe_html_blocked or 0, message.safe_html_height
    else:
        by_cid = {a.content_id: a.id for a in message.attachments if a.content_id}
        result = render_mail_html(
            message.html_body, allow_remote_images=show_images,
            inline_image_url=lambda cid: f"{_PLACEHOLDER_ORIGIN}/{by_cid[cid]}" if cid in by_cid else None)
        document, blocked = result.html, result.blocked_remote_images
        height = estimated_frame_height(document)
        if not show_images:
            message.safe_html, message.safe_html_blocked = document, blocked
            message.safe_html_height, message.safe_html_version = height, RENDER_VERSION
            session.commit()
    return BodyView(document=_with_inline_urls(document, message, inline_url), height=height,
                    blocked_remote_images=blocked)


def _with_inline_urls(document: str, message: MailMessage, inline_url: Callable[[int], str | None]) -> str:
    """The kept document with each placeholder replaced by the image's signed address (and its origin in the CSP)."""
    if _PLACEHOLDER_ORIGIN not in document:
        return document
    own = {a.id for a in message.attachments if a.content_id}
    origins: set[str] = set()

    def real(match: re.Match) -> str:
        attachment_id = int(match.group(1))
        url = inline_url(attachment_id) if attachment_id in own else None
        if not url:
            return ""
        origins.add(re.match(r"^[a-z]+://[^/]+", url).group(0))
        return html_lib.escape(url)

    document = _PLACEHOLDER_URL.sub(real, document)
    return document.replace(_PLACEHOLDER_ORIGIN, " ".join(sorted(origins)))


def _text_of(markup: str, limit: int) -> str:
    """Readable text of an HTML body, cheaply (no parser): tags and hidden parts dropped, at most `limit` long."""
    text = html_lib.unescape(_TAG.sub(" ", _HIDDEN.sub(" ", markup)))
    text = re.sub(r"[ \t\r\f\v]+", " ", text)
    text = re.sub(r"\n\s*\n+", "\n\n", text).strip()
    return text[:limit]
