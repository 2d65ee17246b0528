"""Demo mail history, templates and a sales automation, so a fresh demo shows every mail screen filled in."""
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from portal.automations.services import SequenceData, StepData, create_sequence
from portal.mailtemplates.services import TemplateData, create_template
from portal.models import Customer, Direction, MailCustomer, MailMessage, MailThread, Membership

DEMO_TEMPLATES = [
    ("お打ち合わせのお礼", "{{会社名}}様 お打ち合わせのお礼",
     "{{顧客名}}様\n\n本日はお忙しいところお時間をいただき、ありがとうございました。\n"
     "ご説明した内容の資料をお送りいたします。\n\n{{担当者名}}"),
    ("資料送付のご案内", "サービス資料のご案内",
     "{{顧客名}}様\n\nお問い合わせいただいたサービスの資料をご案内いたします。\n"
     "ご不明な点がございましたら、お気軽にご連絡ください。\n\n{{担当者名}}"),
]


def _message(account_id: int, thread: MailThread, member: Membership, customer: Customer, direction: Direction,
             subject: str, text: str, when: datetime, number: int, html: str | None = None) -> MailMessage:
    """One stored demo message between a member and a customer."""
    member_address = member.user.email
    sender, recipient = ((customer.email, member_address) if direction == Direction.RECEIVED
                         else (member_address, customer.email))
    message = MailMessage(
        account_id=account_id, message_key=f"mid:demo-{number}@demo.example.jp",
        message_id_header=f"demo-{number}@demo.example.jp", thread=thread, direction=direction,
        membership_id=member.id, subject=subject, from_address=sender,
        from_name=customer.name if direction == Direction.RECEIVED else member.user.name,
        to_addresses=recipient, sent_at=when, received_at=when, text_body=text, html_body=html,
        size_bytes=len(text.encode()))
    message.customer_links.append(MailCustomer(customer_id=customer.id))
    return message


def seed_demo_mail(session: Session, owner: Membership, members: list[Membership], customers: list[Customer],
                   now: datetime) -> None:
    """Two shared templates, a follow-up automation, and a few threads of demo mail history."""
    templates = [create_template(session, owner, TemplateData(name, subject, body, shared=True))
                 for name, subject, body in DEMO_TEMPLATES]
    create_sequence(session, owner, SequenceData("資料請求後のフォロー", True,
                                                 [StepData(0, templates[1].id), StepData(3, templates[0].id)]))
    conversations = [
        ("お見積りのお願い", [
            (Direction.RECEIVED, "お世話になっております。\n新サービスのお見積りをお願いできますでしょうか。",
             '<p>お世話になっております。</p><p><b>新サービス</b>のお見積りをお願いできますでしょうか。</p>'),
            (Direction.SENT, "お問い合わせありがとうございます。\n本日中にお見積書をお送りいたします。", None)]),
        ("導入スケジュールについて", [
            (Direction.RECEIVED, "来月からの導入を検討しています。スケジュールをご相談させてください。", None)]),
        ("セミナーのご案内", [
            (Direction.SENT, "来週開催のオンラインセミナーのご案内です。ぜひご参加ください。", None)]),
    ]
    number = 0
    for index, (subject, exchange) in enumerate(conversations):
        customer, member = customers[index % len(customers)], members[index % len(members)]
        start = now - timedelta(days=7 - index * 2)
        thread = MailThread(account_id=owner.account_id, subject_key=subject, last_message_at=start)
        session.add(thread)
        for step, (direction, text, html) in enumerate(exchange):
            number += 1
            when = start + timedelta(hours=step * 3)
            thread.last_message_at = when
            shown_subject = subject if step == 0 else f"Re: {subject}"
            session.add(_message(owner.account_id, thread, member, customer, direction, shown_subject, text, when,
                                 number, html))
    session.commit()
