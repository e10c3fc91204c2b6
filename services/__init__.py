"""The sscard services: identity, card, bank and transit, on a shared platform runtime."""
