"""Durable state: SQLModel tables, the database, and repositories."""

from storage.database import Database, DatabaseUnavailable, Session, redact_url
from storage.models import Approval, AuditEntry, Handoff, Run, Step, ToolCall

__all__ = [
    "Approval",
    "AuditEntry",
    "Database",
    "DatabaseUnavailable",
    "Handoff",
    "Run",
    "Session",
    "Step",
    "ToolCall",
    "redact_url",
]
