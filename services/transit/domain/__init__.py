"""The transit service's pure domain: wallet ledger rules and the park annual pass."""
