"""Agents (代办人, A24): who may act for a card holder, and what they must present.

An agent may activate the card, report a temporary loss, change the service password and query
status (A24.1), and cancel the card (A19.1 names the agent; for a deceased holder only an agent
can); every other operation is refused AGENT_NOT_ALLOWED (A24.1). The agent presents its own
ID document, the principal's ID document and the principal's written authorisation (A24.2).
"""

from __future__ import annotations

from dataclasses import dataclass

from services.platform.channels import Operation
from services.platform.errors import DomainError, Kind, Violations

AGENT_MAY = frozenset(
    {
        Operation.ACTIVATE,
        Operation.TEMPORARY_LOSS,
        Operation.SERVICE_PASSWORD_CHANGE,
        Operation.QUERY,
        Operation.CANCEL,
    }
)


@dataclass(frozen=True)
class AgentPresence:
    """What an agent presented, decoded from the request."""

    agent_document_type: str
    agent_document_number: str
    agent_name: str
    principal_document_type: str
    principal_document_number: str
    authorisation_ref: str


def check_agent(operation: Operation, agent: AgentPresence | None) -> None:
    """A24.1 and A24.2; None means the holder acts in person."""
    if agent is None:
        return
    if operation not in AGENT_MAY:
        raise DomainError(
            "AGENT_NOT_ALLOWED",
            f"an agent may not do this: {operation.value}",
            kind=Kind.PERMISSION,
            rule="A24.1",
        )
    v = Violations()
    if not agent.agent_document_type or not agent.agent_document_number.strip():
        v.add("agent.agent_document", "the agent's own ID document is required", "REQUIRED")
    if not agent.agent_name.strip():
        v.add("agent.agent_name", "the agent's name is required", "REQUIRED")
    if not agent.principal_document_type or not agent.principal_document_number.strip():
        v.add("agent.principal_document", "the holder's ID document is required", "REQUIRED")
    if not agent.authorisation_ref.strip():
        v.add("agent.authorisation_ref", "the holder's written authorisation is required")
    if (agent.agent_document_type, agent.agent_document_number.strip().upper()) == (
        agent.principal_document_type,
        agent.principal_document_number.strip().upper(),
    ):
        v.add("agent.agent_document", "the agent is the holder: act in person instead")
    v.raise_if_any("AGENT_DOCUMENTS_MISSING", rule="A24.2")
