-- Resilience: leads that keep failing are parked, a send is recorded as started before the
-- provider is called, and workers report that they are alive.

-- ---------------------------------------------------------------- leads
-- A lead whose processing fails (its own data, its client's rules or templates) counts a
-- failure and stays queued; after LQS_WORKER_MAX_LEAD_FAILURES it is parked with
-- status 'error' and the reason in error_message, so one lead cannot fail a batch forever.
ALTER TABLE public.leads
    ADD COLUMN processing_failures smallint NOT NULL DEFAULT 0 CHECK (processing_failures >= 0);

COMMENT ON COLUMN public.leads.processing_failures IS
    'Times processing this lead failed; at the worker''s limit it is parked (status error)';

-- ---------------------------------------------------------------- delivery_attempts
-- For providers without idempotency keys (SendGrid, Twilio, push, webhooks) the attempt is
-- written as 'started' before the request: after a crash, the retry knows an earlier
-- attempt may have reached the provider, and the audit trail says so.
ALTER TABLE public.delivery_attempts
    ALTER COLUMN finished_at DROP NOT NULL,
    ALTER COLUMN latency_ms DROP NOT NULL,
    DROP CONSTRAINT delivery_attempts_outcome_check,
    ADD CONSTRAINT delivery_attempts_outcome_check
        CHECK (outcome IN ('started', 'accepted', 'transient', 'permanent'));

COMMENT ON COLUMN public.delivery_attempts.outcome IS
    'started: the request was about to be made and no answer was recorded (yet)';

-- ---------------------------------------------------------------- worker_heartbeats
-- Each worker process writes its row every few seconds; /readyz reports a stale fleet.
CREATE TABLE public.worker_heartbeats (
    owner text PRIMARY KEY CHECK (length(owner) BETWEEN 1 AND 200),
    host text NOT NULL,
    pid integer NOT NULL,
    started_at timestamptz NOT NULL,
    beat_at timestamptz NOT NULL,
    stopped_at timestamptz
);

COMMENT ON TABLE public.worker_heartbeats IS
    'One row per worker process: when it started, last reported alive, and stopped';

GRANT SELECT, INSERT, UPDATE, DELETE ON public.worker_heartbeats TO service_role;
ALTER TABLE public.worker_heartbeats ENABLE ROW LEVEL SECURITY;
CREATE POLICY "Service role can manage worker heartbeats" ON public.worker_heartbeats
    FOR ALL USING ((SELECT auth.role()) = 'service_role')
    WITH CHECK ((SELECT auth.role()) = 'service_role');
