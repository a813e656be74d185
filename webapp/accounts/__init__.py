"""Accounts: who is signed in and what they may do, and the audit trail of what everyone did.

Owns the permission checks (reviewer, staff), the login lockout's hooks, the session's renewal, the
private-pages and security-header middleware, the acting user of a request or a job (`actors`), and the
append-only audit trail (`audit`) with the login events written to it.

Imports only the models: every other room may import it, it imports no room.
"""
