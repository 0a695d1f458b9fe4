"""E-mail channel: one message per notification through an SMTP server (smtplib in a thread).

``security``: ``starttls`` upgrades a plain connection (port 587) and fails if the server does
not offer it; ``tls`` speaks TLS from the start (465); ``none`` sends in clear (a relay on the
host only). The login happens only over TLS unless ``security`` is ``none``.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import formatdate, make_msgid

from mercure.core.config.models import EmailChannel
from mercure.notifier.senders import EVENT_HEADER, ID_HEADER, Message, SendFailed


def build_message(channel: EmailChannel, message: Message) -> EmailMessage:
    """The e-mail of ``message``: subject and body rendered, headers set."""
    subject = message.render(channel.subject, "subject")
    body = message.render(channel.body, "body", html=channel.html)
    mail = EmailMessage()
    mail["From"] = channel.sender
    mail["To"] = ", ".join(channel.to)
    mail["Subject"] = " ".join(subject.split())
    mail["Date"] = formatdate(localtime=False)
    mail["Message-ID"] = make_msgid(domain="mercure.invalid")
    mail[ID_HEADER] = message.id
    mail[EVENT_HEADER] = message.trigger
    mail.set_content(body, subtype="html" if channel.html else "plain")
    return mail


def _context(channel: EmailChannel) -> ssl.SSLContext:
    if not channel.verify_tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    cafile = str(channel.ca_certificate) if channel.ca_certificate else None
    return ssl.create_default_context(cafile=cafile)


def _answer(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    first = text.splitlines()[0] if text else ""
    return f"{code} {first}".strip()


def _failed(code: int, text: bytes | str, what: str) -> SendFailed:
    # SMTP: 4xx is transient, 5xx permanent (RFC 5321 section 4.2.1).
    return SendFailed(f"{what}: {_answer(code, text)}", permanent=500 <= code < 600)


def send_blocking(channel: EmailChannel, message: Message) -> str:
    """Send the e-mail; the server's answer to the message (``250 ...``)."""
    mail = build_message(channel, message)
    timeout = channel.timeout
    try:
        context = _context(channel) if channel.security != "none" else None
    except OSError as exc:
        raise SendFailed(f"cannot read ca_certificate: {exc.strerror or exc}") from None
    try:
        smtp: smtplib.SMTP
        if channel.security == "tls":
            smtp = smtplib.SMTP_SSL(channel.host, channel.port, timeout=timeout, context=context)
        else:
            smtp = smtplib.SMTP(channel.host, channel.port, timeout=timeout)
        with smtp:
            smtp.ehlo()
            if channel.security == "starttls":
                if not smtp.has_extn("starttls"):
                    raise SendFailed("the server does not offer STARTTLS", permanent=True)
                smtp.starttls(context=context)
                smtp.ehlo()
            if channel.username:
                password = channel.password.get_secret_value() if channel.password else ""
                smtp.login(channel.username, password)
            code, text = smtp.mail(channel.sender)
            if code != 250:
                raise _failed(code, text, "sender refused")
            accepted = 0
            refusal = None
            for recipient in channel.to:
                code, text = smtp.rcpt(recipient)
                if code in (250, 251):
                    accepted += 1
                elif refusal is None:
                    refusal = _failed(code, text, "recipient refused")
            if not accepted:
                smtp.rset()
                raise refusal or SendFailed("no recipient accepted", permanent=True)
            code, text = smtp.data(mail.as_bytes(policy=SMTP_POLICY))
            if code != 250:
                raise _failed(code, text, "message refused")
            return _answer(code, text)
    except smtplib.SMTPAuthenticationError as exc:
        raise _failed(exc.smtp_code, exc.smtp_error, "login refused") from None
    except smtplib.SMTPResponseException as exc:
        raise _failed(exc.smtp_code, exc.smtp_error, "SMTP error") from None
    except ssl.SSLError as exc:
        raise SendFailed(f"TLS: {exc.reason or exc}") from None
    except (smtplib.SMTPException, OSError) as exc:
        raise SendFailed(f"{type(exc).__name__}: {exc}") from None


async def send(channel: EmailChannel, message: Message) -> str:
    """Send the e-mail in a worker thread (each socket operation bounded by the timeout)."""
    return await asyncio.to_thread(send_blocking, channel, message)
