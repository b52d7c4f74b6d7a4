"""Outbound network policy: where the server may connect on someone's behalf."""
