"""Emails without an SMTP server: one .eml file each under var/mail/, as a mail client opens it."""

from __future__ import annotations

import email
import email.policy

from django.core.mail import EmailMultiAlternatives, get_connection

from campaign.email_files import EmailBackend


def test_two_emails_become_two_eml_files_a_mail_client_reads(tmp_path, settings):
    settings.EMAIL_FILE_PATH = str(tmp_path / "mail")
    messages = [
        EmailMultiAlternatives(
            f"Jack, your cart is waiting ({n})",
            "Hello Jack",
            "Geometrixx <shop@geometrixx.example>",
            ["jack@example.com"],
            reply_to=["help@geometrixx.example"],
            alternatives=[("<p>Hello <b>Jack</b></p>", "text/html")],
        )
        for n in (1, 2)
    ]
    connection = get_connection("campaign.email_files.EmailBackend")
    connection.open()  # as the email channel does, to reuse an SMTP connection
    assert connection.send_messages(messages) == 2
    connection.close()
    files = sorted((tmp_path / "mail").iterdir())
    assert [f.suffix for f in files] == [".eml", ".eml"]
    read = [email.message_from_bytes(f.read_bytes(), policy=email.policy.default) for f in files]
    assert sorted(m["Subject"] for m in read) == [
        "Jack, your cart is waiting (1)",
        "Jack, your cart is waiting (2)",
    ]
    for message in read:
        assert message["To"] == "jack@example.com" and message["Reply-To"] == "help@geometrixx.example"
        assert message.get_body(("html",)).get_content().strip() == "<p>Hello <b>Jack</b></p>"
        assert message.get_body(("plain",)).get_content().strip() == "Hello Jack"


def test_an_email_without_recipients_writes_nothing(tmp_path):
    backend = EmailBackend(file_path=str(tmp_path))
    assert backend.send_messages([EmailMultiAlternatives("s", "b", "a@example.com", [])]) == 0
    assert list(tmp_path.iterdir()) == []
