"""Each import rule, with a message that must come in and one that must not."""
from datetime import datetime, timedelta, timezone

from portal.mailsync.rules import AccountSnapshot, CustomerRef, Envelope, Exclusion, addresses, decide

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc)
YAMADA = CustomerRef(1, "yamada@example.jp", T0 - timedelta(days=30))
LATE = CustomerRef(2, "late@example.jp", T0 + timedelta(days=1))
INTERNAL = CustomerRef(3, "accounting@ourco.example.jp", T0 - timedelta(days=30))
SNAPSHOT = AccountSnapshot({c.email: c for c in (YAMADA, LATE, INTERNAL)},
                           frozenset({"sales@ourco.example.jp", "boss@ourco.example.jp", "late@example.jp"}))


def envelope(uid=10, when=T0, **headers):
    """An envelope arriving at `when` with UID `uid`."""
    return Envelope(uid=uid, internal_date=when, **headers)


def test_rule1_only_mail_after_the_link():
    """UIDs below the boundary stored at link time never come in."""
    assert decide(envelope(uid=10, from_="yamada@example.jp"), SNAPSHOT, boundary_uid=10).customer_ids == (1,)
    assert decide(envelope(uid=9, from_="yamada@example.jp"), SNAPSHOT, 10).exclusion == Exclusion.BEFORE_LINK


def test_rule2_customer_in_from_or_to_but_never_cc_or_bcc():
    """From and To count; Cc and Bcc never do."""
    assert decide(envelope(from_="yamada@example.jp", to="sales@ourco.example.jp"), SNAPSHOT, 1).imported
    assert decide(envelope(from_="sales@ourco.example.jp", to="yamada@example.jp"), SNAPSHOT, 1).imported
    cc_only = envelope(from_="sales@ourco.example.jp", to="someone@else.example", cc="yamada@example.jp")
    assert decide(cc_only, SNAPSHOT, 1).exclusion == Exclusion.CC_ONLY
    bcc_only = envelope(from_="sales@ourco.example.jp", to="x@else.example", bcc="yamada@example.jp")
    assert decide(bcc_only, SNAPSHOT, 1).exclusion == Exclusion.CC_ONLY
    assert decide(envelope(from_="a@b.example", to="c@d.example"), SNAPSHOT, 1).exclusion == Exclusion.NO_CUSTOMER


def test_rule3_member_addresses_never_count_as_customers():
    """A customer record with a member's address does not pull the member's own mail in."""
    late_member_later = envelope(when=T0 + timedelta(days=2), from_="x@else.example", to="late@example.jp")
    assert decide(late_member_later, SNAPSHOT, 1).exclusion == Exclusion.MEMBER_ADDRESS
    but_a_real_customer_too = envelope(when=T0 + timedelta(days=2), from_="yamada@example.jp", to="late@example.jp")
    assert decide(but_a_real_customer_too, SNAPSHOT, 1).customer_ids == (1,)


def test_rule3_internal_non_member_address_registered_as_customer_is_imported():
    """An accounting address that is a customer but no member's address comes in."""
    assert decide(envelope(from_="boss@ourco.example.jp", to="accounting@ourco.example.jp"), SNAPSHOT, 1).imported


def test_rule4_customer_must_exist_when_the_message_arrived():
    """Mail that arrived before the customer was created stays out; mail after it comes in."""
    other = AccountSnapshot({LATE.email: LATE})
    before = envelope(when=LATE.created_at - timedelta(seconds=1), from_="late@example.jp")
    after = envelope(when=LATE.created_at, from_="late@example.jp")
    assert decide(before, other, 1).exclusion == Exclusion.BEFORE_CUSTOMER
    assert decide(after, other, 1).customer_ids == (2,)


def test_rule5_addresses_compare_case_insensitively_whatever_the_display_name():
    """Display names, encoded words and case do not matter."""
    for header in ('"山田" <Yamada@Example.JP>', "=?ISO-2022-JP?B?GyRCOzNFRBsoQg==?= <yamada@example.jp>",
                   "YAMADA@EXAMPLE.JP (山田)"):
        assert decide(envelope(from_=header), SNAPSHOT, 1).customer_ids == (1,)


def test_odd_headers_do_not_break_address_parsing():
    """Group syntax, empty and garbage headers give no addresses instead of exceptions."""
    assert addresses("unlisted-recipients:; (no To-header on input)") == []
    assert addresses("") == [] and addresses("<<<>>>") == []
    assert addresses("a@x.example, B@Y.example") == ["a@x.example", "b@y.example"]


def test_rule4_compares_at_the_servers_one_second_resolution():
    """A customer created at 10:00:00.7 and mail arriving in that same second (INTERNALDATE 10:00:00) comes in."""
    created = T0.replace(microsecond=700000)
    snapshot = AccountSnapshot({"same@example.jp": CustomerRef(9, "same@example.jp", created)})
    assert decide(envelope(when=T0, from_="same@example.jp"), snapshot, 1).customer_ids == (9,)
    earlier = envelope(when=T0 - timedelta(seconds=1), from_="same@example.jp")
    assert decide(earlier, snapshot, 1).exclusion == Exclusion.BEFORE_CUSTOMER


def test_deeply_nested_comments_do_not_crash_a_pass():
    """A To header that makes email.utils.getaddresses recurse to death still yields its address."""
    nested = "yamada@example.jp " + "(" * 3000 + ")" * 3000
    assert decide(envelope(to=nested), SNAPSHOT, 1).customer_ids == (1,)
