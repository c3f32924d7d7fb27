"""Payout batches: settled cash leaves the ledger once (decision 0019)."""
