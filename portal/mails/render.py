"""An imported mail's body made safe to show in a sandboxed iframe (srcdoc): pure, no Flask, no database."""
import html as html_lib
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass
from secrets import token_hex
from urllib.parse import unquote, urlsplit

import nh3

from portal.tracking.tokens import CLICK_PATH, OPEN_PATH

ALLOWED_TAGS = frozenset({
    "p", "div", "span", "br", "hr", "b", "strong", "i", "em", "u", "s", "font", "blockquote", "pre", "code",
    "ul", "ol", "li", "table", "thead", "tbody", "tfoot", "tr", "td", "th", "caption", "colgroup", "col",
    "h1", "h2", "h3", "h4", "h5", "h6", "img", "a", "center", "small", "big", "sub", "sup",
})

# Removed with everything inside: their content is code, hidden markup or controls, never text meant for staff.
REMOVED_WITH_CONTENT = frozenset({
    "script", "style", "title", "head", "meta", "noscript", "template", "iframe", "object", "embed", "applet",
    "frame", "frameset", "noembed", "noframes", "svg", "math", "form", "input", "button", "select", "textarea",
    "option", "link", "base", "audio", "video",
})

ALLOWED_ATTRIBUTES = {
    "*": {"style", "align", "valign", "width", "height", "color", "bgcolor", "border", "dir", "lang", "title"},
    "table": {"cellpadding", "cellspacing"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan"},
    "col": {"span"},
    "colgroup": {"span"},
    "ol": {"start", "type"},
    "img": {"src", "alt"},
    "a": {"href"},
    "font": {"face", "size", "color"},
}

# No property here can take an image: background*, border-image*, list-style-image, content, cursor are left out.
SAFE_STYLE_PROPERTIES = frozenset({
    "color", "background-color",
    "font", "font-family", "font-size", "font-style", "font-weight", "font-variant", "font-stretch",
    "text-align", "text-decoration", "text-decoration-color", "text-decoration-line", "text-decoration-style",
    "text-indent", "text-transform", "text-shadow", "text-overflow",
    "line-height", "letter-spacing", "word-spacing", "word-break", "overflow-wrap", "word-wrap", "white-space",
    "margin", "margin-top", "margin-right", "margin-bottom", "margin-left",
    "padding", "padding-top", "padding-right", "padding-bottom", "padding-left",
    "border", "border-top", "border-right", "border-bottom", "border-left",
    "border-color", "border-style", "border-width", "border-radius",
    "border-top-color", "border-right-color", "border-bottom-color", "border-left-color",
    "border-top-style", "border-right-style", "border-bottom-style", "border-left-style",
    "border-top-width", "border-right-width", "border-bottom-width", "border-left-width",
    "border-collapse", "border-spacing",
    "width", "height", "max-width", "min-width", "max-height", "min-height",
    "vertical-align", "display", "list-style-type", "table-layout", "direction",
})

# Even inside an allowed property these would fetch something or run something (old IE, Firefox XBL).
_FORBIDDEN_CSS = (
    "url(", "expression(", "image(", "image-set(", "cross-fade(", "element(", "paint(", "src(",
    "javascript:", "vbscript:", "behavior", "binding", "@import",
)

HREF_SCHEMES = frozenset({"http", "https", "mailto", "tel"})
REMOTE_SCHEMES = frozenset({"http", "https"})
_DATA_IMAGE = re.compile(r"data:image/(?:png|gif|jpeg|webp);base64,[a-z0-9+/=\s]*\Z", re.IGNORECASE)
_SCHEME = re.compile(r"([a-z][a-z0-9+.\-]*):", re.IGNORECASE)
_PROTOCOL_RELATIVE = re.compile(r"[/\\]{2}")
_HOST = re.compile(r"[a-z0-9.\-]+\Z|[0-9a-f:.]+\Z", re.IGNORECASE)

HEAD_STYLE = (
    'body{font-family:system-ui,"Noto Sans CJK JP",sans-serif;font-size:14px;margin:8px;color:#212529;'
    "word-break:break-word} img{max-width:100%;height:auto} "
    "blockquote{border-left:3px solid #ced4da;margin:0 0 0 .5em;padding-left:.75em;color:#495057}"
)

# Only here to normalise style values the same way the main pass will; it keeps nothing but span/style.
_STYLE_CLEANER = nh3.Cleaner(
    tags={"span"}, attributes={"span": {"style"}}, filter_style_properties=set(SAFE_STYLE_PROPERTIES), link_rel=None,
)
_STYLE_OUT = re.compile(r'<span style="([^"]*)">')
# nh3 (html5ever) escapes < and > in text and in attribute values, so in its output every "<img" starts a real
# tag and "[^<>]*" cannot run past its end; the tests pin that down.
_IMG_TAG = re.compile(r"<img\b[^<>]*>")


@dataclass(frozen=True)
class RenderedHtml:
    """A srcdoc-ready document and how many remote images it does not load."""

    html: str
    blocked_remote_images: int


def render_mail_html(html: str, *, inline_image_url: Callable[[str], str | None], allow_remote_images: bool,
                     tracking_paths: tuple[str, ...] = (OPEN_PATH, CLICK_PATH)) -> RenderedHtml:
    """Sanitise a mail's HTML body with nh3 and wrap it in a small srcdoc document with its own CSP."""
    # inline_image_url(content_id) must return an ABSOLUTE http(s) URL or None: a relative one would resolve
    # against the parent page, and CSP 'self' in a sandboxed (opaque-origin) document matches nothing. The
    # origins of the URLs actually used are the only hosts img-src allows, besides data: images and, when
    # allow_remote_images, any http:/https: image.
    blocked = 0
    tracking_seen = False
    origins: list[str] = []
    inline_cache: dict[str, str | None] = {}
    # Per call (bounded by this mail) because mail HTML repeats the same style strings on hundreds of cells.
    style_cache: dict[str, str | None] = {}
    # Random per call, so no mail can carry a src the tracking-pixel removal below would mistake for its own.
    tracking_marker = f"cid:portal-tracking-{token_hex(16)}"

    def inline_url(content_id: str) -> str | None:
        """The absolute URL of an inline image (asked once per content id), recording its origin for CSP."""
        if content_id not in inline_cache:
            url = inline_image_url(content_id)
            origin = _origin(url) if isinstance(url, str) else None
            inline_cache[content_id] = url if origin else None
            if origin and origin not in origins:
                origins.append(origin)
        return inline_cache[content_id]

    def image_src(value: str) -> str | None:
        """The src an img keeps (None to drop it); counts blocked remote images and notes tracking pixels."""
        nonlocal blocked, tracking_seen
        url = _clean_url(value)
        scheme = _scheme_of(url)
        remote = scheme in REMOTE_SCHEMES or (scheme is None and _PROTOCOL_RELATIVE.match(url) is not None)
        if (remote or scheme is None) and _is_tracking(url, tracking_paths):
            tracking_seen = True
            return tracking_marker
        if scheme == "cid":
            content_id = unquote(url[4:]).strip().strip("<>").strip()
            return inline_url(content_id) if content_id else None
        if scheme == "data":
            return url if _DATA_IMAGE.match(url) else None
        if remote:
            if not allow_remote_images:
                blocked += 1
                return None
            # A protocol-relative src would otherwise take the scheme of the portal page around the iframe.
            return url if scheme else "https:" + url
        return None

    def attribute_filter(tag: str, attr: str, value: str) -> str | None:
        """nh3 callback: nh3 does not re-check what this returns, so every URL decision is made here."""
        if attr == "style":
            if value not in style_cache:
                style_cache[value] = _safe_style(value)
            return style_cache[value]
        if tag == "img" and attr == "src":
            return image_src(value)
        if tag == "a" and attr == "href":
            return _link_href(value, tracking_paths)
        return value

    body = _clean(html, attribute_filter) if html else ""
    if tracking_seen:
        # nh3 can drop an attribute but not its element, so a tracking pixel is marked above and cut out here.
        body = _IMG_TAG.sub(lambda m: "" if f'src="{tracking_marker}"' in m.group(0) else m.group(0), body)
    return RenderedHtml(html=_document(body, origins, allow_remote_images), blocked_remote_images=blocked)


def render_plain_text(text: str) -> str:
    """A plain-text body as the same kind of srcdoc document: escaped, line breaks kept, no links made."""
    body = f'<div class="mail-text" style="white-space:pre-wrap">{html_lib.escape(text or "")}</div>'
    return _document(body, [], False)


MAX_NESTING = 1000
_TAG_TOKEN = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9]*)[^>]*?(/?)>")
# Elements that never nest (void) or that the parser closes on its own when the next one starts.
_NO_DEPTH = {"br", "img", "hr", "meta", "link", "input", "col", "area", "base", "wbr", "source", "track", "param",
             "embed", "p", "li", "td", "th", "tr", "option", "dt", "dd", "thead", "tbody", "tfoot"}


def too_deeply_nested(html: str, limit: int = MAX_NESTING) -> bool:
    """True when tags nest deeper than any real mail does: nh3's time grows with the square of the depth."""
    depth = 0
    for closing, name, self_closing in _TAG_TOKEN.findall(html):
        if self_closing or name.lower() in _NO_DEPTH:
            continue
        depth = max(depth - 1, 0) if closing else depth + 1
        if depth > limit:
            return True
    return False


def _clean(html: str, attribute_filter: Callable[[str, str, str], str | None]) -> str:
    """Run nh3 with the portal's allow-lists; lone surrogates (which nh3 cannot take) become U+FFFD first."""
    if too_deeply_nested(html):
        # One hostile mail must not tie up a worker each time it is opened: show its text without markup.
        text = html_lib.unescape(_TAG_TOKEN.sub(" ", html))
        return f'<div style="white-space:pre-wrap">{html_lib.escape(" ".join(text.split()))}</div>'
    try:
        return _nh3_clean(html, attribute_filter)
    except UnicodeEncodeError:
        # Through UTF-16 so that surrogate pairs join up and only the lone halves are replaced.
        fixed = html.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return _nh3_clean(fixed, attribute_filter)


def _nh3_clean(html: str, attribute_filter: Callable[[str, str, str], str | None]) -> str:
    """One nh3 pass; URLs are left to the attribute filter (relative ones included, so it can judge them)."""
    return nh3.clean(
        html,
        tags=set(ALLOWED_TAGS),
        clean_content_tags=set(REMOVED_WITH_CONTENT),
        attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
        attribute_filter=attribute_filter,
        link_rel="noopener noreferrer nofollow",
        set_tag_attribute_values={"a": {"target": "_blank"}},
        url_schemes={"http", "https", "mailto", "tel", "cid", "data"},
        filter_style_properties=set(SAFE_STYLE_PROPERTIES),
        url_relative="pass_through",
    )


def _document(body: str, image_origins: list[str], allow_remote_images: bool) -> str:
    """The srcdoc document around a sanitised body."""
    img_src = " ".join(["data:", *image_origins, *(["http:", "https:"] if allow_remote_images else [])])
    csp = f"default-src 'none'; style-src 'unsafe-inline'; img-src {img_src}; font-src 'none'; form-action 'none'"
    return (
        '<!doctype html><html><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
        f'<base target="_blank"><style>{HEAD_STYLE}</style></head><body>{body}</body></html>'
    )


def _safe_style(value: str) -> str | None:
    """A style value reduced to safe properties by nh3, or None when what nh3 keeps could still fetch or run."""
    # nh3 keeps some values it should not (width:expression(...), font-family:url(...),
    # background-color:image(url(...))), so its output is checked again after undoing CSS escapes and comments.
    match = _STYLE_OUT.match(_STYLE_CLEANER.clean(f'<span style="{html_lib.escape(value)}">'))
    kept = html_lib.unescape(match.group(1)) if match else ""
    if not kept.strip():
        return None
    flat = _flatten_css(kept)
    if any(token in flat for token in _FORBIDDEN_CSS):
        return None
    return kept


def _flatten_css(value: str) -> str:
    """CSS text with comments, escapes and whitespace undone and lowercased, for token checks only."""
    without_comments = re.sub(r"/\*.*?(?:\*/|\Z)", "", value, flags=re.DOTALL)
    unescaped = re.sub(r"\\([0-9a-fA-F]{1,6})[ \t\r\n\f]?|\\(.)", _css_unescape, without_comments, flags=re.DOTALL)
    unescaped = re.sub(r"/\*.*?(?:\*/|\Z)", "", unescaped, flags=re.DOTALL)
    return re.sub(r"[\s\x00-\x1f\x7f]+", "", unescaped).lower()


def _css_unescape(match: re.Match) -> str:
    """One CSS escape decoded; code points a browser would refuse become U+FFFD as CSS says."""
    if match.group(1) is None:
        return "" if match.group(2) in "\r\n\f" else match.group(2)
    code = int(match.group(1), 16)
    return chr(code) if 0 < code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF else "\ufffd"


def _link_href(value: str, tracking_paths: tuple[str, ...]) -> str | None:
    """The href a link keeps: http(s)/mailto/tel only, never relative and never the portal's tracking."""
    url = _clean_url(value)
    scheme = _scheme_of(url)
    if scheme is None and _PROTOCOL_RELATIVE.match(url):
        url, scheme = "https:" + url, "https"
    if scheme not in HREF_SCHEMES:
        # Relative links would resolve against the portal page around the iframe.
        return None
    if scheme in REMOTE_SCHEMES and _is_tracking(url, tracking_paths):
        return None
    return url


def _clean_url(value: str) -> str:
    """A URL as a browser reads it: outer spaces and controls dropped, tabs and newlines removed inside."""
    return re.sub(r"[\t\n\r]", "", value).strip("\x00\x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0c\x0e\x0f"
                                                   "\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c"
                                                   "\x1d\x1e\x1f ")


def _scheme_of(url: str) -> str | None:
    """The lowercased scheme of a URL, or None when it is relative."""
    match = _SCHEME.match(url)
    return match.group(1).lower() if match else None


def _is_tracking(url: str, tracking_paths: tuple[str, ...]) -> bool:
    """Whether the URL's path, read the way the portal's router would, contains one of the tracking paths."""
    if not tracking_paths:
        return False
    try:
        raw_path = urlsplit(url.replace("\\", "/")).path
    except ValueError:
        # Unparseable (e.g. a broken IPv6 host): safest to treat it as tracking so it is never loaded.
        return True
    # Percent-escapes, doubled slashes and dot segments all still reach /t/o/ on the server.
    decoded = unquote(raw_path).lower()
    normalised = posixpath.normpath(re.sub(r"/+", "/", "/" + decoded)) + "/"
    candidates = (raw_path.lower(), decoded, normalised)
    return any(path.lower() in candidate for path in tracking_paths for candidate in candidates)


def _origin(url: str) -> str | None:
    """scheme://host[:port] of an absolute http(s) URL, or None if it is not one."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname or ""
    if parts.scheme.lower() not in REMOTE_SCHEMES or not _HOST.match(host):
        return None
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme.lower()}://{host}" + (f":{port}" if port is not None else "")


_BLOCK_BREAK = re.compile(r"<(?:br|p|div|tr|li|h[1-6]|blockquote|table)\b", re.IGNORECASE)
_TAG = re.compile(r"<[^>]*>")


def estimated_frame_height(document: str, *, line_px: int = 22, chars_per_line: int = 70,
                           minimum: int = 140, maximum: int = 640) -> int:
    """A frame height that fits a short mail without a big empty box (the sandbox forbids measuring it)."""
    body = document.split("<body>", 1)[-1]
    text_lines = len(_TAG.sub("", body)) // chars_per_line
    lines = len(_BLOCK_BREAK.findall(body)) + text_lines + len(re.findall(r"<img\b", body, re.IGNORECASE)) * 6
    return max(minimum, min(maximum, 48 + lines * line_px))
