-- Proof of consent (GDPR Art. 7(1)): the consent history keeps the evidence of each change.
--
-- An intake submission may carry a consent record (the wording shown, or its version; when
-- and from where it was captured); the history keeps it with the API key that submitted it.
-- CSV imports, unsubscribe links and providers' complaints keep what they know in
-- `evidence` (the import's file and operator, the provider's event). Every column is
-- nullable: entries recorded before this migration have none of it.
--
-- The table stays append-only (the trigger of 0006 is untouched). api_key_id is not a
-- foreign key on purpose: ON DELETE SET NULL would UPDATE history rows, which the trigger
-- refuses, and keys are revoked, not deleted; the id alone still names the key.

ALTER TABLE public.consent_history
    ADD COLUMN text_version text CHECK (length(text_version) BETWEEN 1 AND 100),
    ADD COLUMN consent_text text CHECK (length(consent_text) BETWEEN 1 AND 10000),
    ADD COLUMN captured_at timestamptz,
    ADD COLUMN ip inet,
    ADD COLUMN user_agent text CHECK (length(user_agent) BETWEEN 1 AND 1000),
    ADD COLUMN api_key_id uuid,
    ADD COLUMN evidence jsonb CHECK (jsonb_typeof(evidence) = 'object');

COMMENT ON COLUMN public.consent_history.text_version IS
    'The version of the consent wording the person saw (a consent record from intake)';
COMMENT ON COLUMN public.consent_history.consent_text IS
    'The consent wording itself, when the submission sent it instead of a version';
COMMENT ON COLUMN public.consent_history.captured_at IS
    'When the person gave (or refused) consent, as the submitter says';
COMMENT ON COLUMN public.consent_history.api_key_id IS
    'The API key that submitted the change (public.api_keys.id; not a foreign key)';
COMMENT ON COLUMN public.consent_history.evidence IS
    'What else proves the change: the CSV import and operator, the provider event';
COMMENT ON TABLE public.consent_history IS
    'Append-only record of consent changes and their proof (intake, CSV import, unsubscribe links, provider unsubscribes and complaints)';

-- The latest entry of a lead is read at every send (the consent a message relies on):
-- (lead_id, id) answers it from the index; it also serves every lookup by lead_id alone.
CREATE INDEX idx_consent_history_lead_latest ON public.consent_history(lead_id, id);
DROP INDEX public.idx_consent_history_lead_id;
