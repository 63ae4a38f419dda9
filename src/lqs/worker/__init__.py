"""Background work: the lead processor (claim, score, plan messages), the dispatcher
(claim due messages under a lease, send, record), their send limits, re-rendering of
failed messages, and the run loops that drive them (``run_worker``), with the periodic
housekeeping (heartbeats, expired idempotency keys)."""
