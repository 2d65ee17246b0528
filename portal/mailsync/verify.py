"""Checking a mailbox before linking: IMAP login, folders, the Sent folder, its boundary, and SMTP login."""
from dataclasses import dataclass

from imapclient import IMAPClient

from portal.mailsync.connection import (ConnectionPolicy, MailboxError, ServerSettings, close_quietly,
                                        network_error, open_imap, open_smtp)
from portal.models.mailbox import FolderRole

# Tried in order when no folder carries the SPECIAL-USE \Sent flag.
SENT_FOLDER_NAMES = ("Sent", "Sent Items", "Sent Messages", "Sent Mail", "送信済みメール", "送信済みアイテム",
                     "送信済み", "送信箱", "INBOX.Sent", "INBOX/Sent")


@dataclass(frozen=True)
class FolderSnapshot:
    """A folder's identity and where its next message will land: the import boundary."""

    role: FolderRole
    name: str
    uidvalidity: int
    uidnext: int


def find_sent_folder(folders: list[tuple[tuple, bytes, str]]) -> str | None:
    """SPECIAL-USE \\Sent first, then common English and Japanese names (case-insensitive)."""
    for flags, _, name in folders:
        if b"\\Sent" in flags:
            return name
    by_name = {name.casefold(): name for _, _, name in folders}
    by_leaf = {}
    for _, delimiter, name in folders:
        leaf = name.rsplit(delimiter.decode(), 1)[-1] if delimiter else name
        by_leaf.setdefault(leaf.casefold(), name)
    for candidate in SENT_FOLDER_NAMES:
        found = by_name.get(candidate.casefold()) or by_leaf.get(candidate.casefold())
        if found:
            return found
    return None


def folder_snapshot(client: IMAPClient, role: FolderRole, name: str) -> FolderSnapshot:
    """UIDVALIDITY and UIDNEXT of a folder, via STATUS (no SELECT, nothing marked read)."""
    status = client.folder_status(name, [b"UIDVALIDITY", b"UIDNEXT"])
    return FolderSnapshot(role, name, int(status[b"UIDVALIDITY"]), int(status[b"UIDNEXT"]))


def verify_mailbox(imap: ServerSettings, smtp: ServerSettings, policy: ConnectionPolicy) -> list[FolderSnapshot]:
    """Prove both servers accept the member and return INBOX and Sent with their boundaries."""
    client = open_imap(imap, policy)
    try:
        folders = client.list_folders()
        sent = find_sent_folder(folders)
        if sent is None:
            raise MailboxError("sent_not_found", "送信済みフォルダが見つかりません。メールソフトで一度メールを送信してから、もう一度お試しください。")
        snapshots = [folder_snapshot(client, FolderRole.INBOX, "INBOX"), folder_snapshot(client, FolderRole.SENT, sent)]
    except IMAPClient.Error as error:
        raise MailboxError("imap_failed", "IMAPサーバーでフォルダを確認できません。") from error
    except OSError as error:
        raise network_error("IMAP", error) from error
    finally:
        try:
            client.logout()
        except Exception:  # noqa: BLE001 - the server may already have closed
            close_quietly(client)
    smtp_connection = open_smtp(smtp, policy)
    try:
        smtp_connection.quit()
    except Exception:  # noqa: BLE001 - login already succeeded, which is what we checked
        close_quietly(smtp_connection)
    return snapshots
