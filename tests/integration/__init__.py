"""Integration tests against real mail servers: a private Dovecot (IMAP) and aiosmtpd (SMTP) on 127.0.0.1."""
