-- Erasure (GDPR Art. 17): hashed suppressions, the erasures record, and the narrow way
-- past the consent history's and the audit log's append-only rules.
--
-- An erased person must stay suppressed without the suppression list keeping their
-- address. Each suppression now carries recipient_hash = HMAC-SHA256(installation key,
-- channel || ':' || normalised recipient), and the list is unique on, and compared on,
-- the hash; `recipient` becomes nullable (NULL once its person is erased). The key is
-- generated here, once per installation, from gen_random_uuid() (4 x 122 random bits;
-- core PostgreSQL has no gen_random_bytes without pgcrypto), and kept in
-- public.installation_secrets, which only the service role reads. HMAC is written with
-- core sha256() alone: sha256((K xor opad) || sha256((K xor ipad) || m)), the two padded
-- keys computed once below (the key is one 64-byte block, so it is used as it is).

-- ---------------------------------------------------------------- installation_secrets
CREATE TABLE public.installation_secrets (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    hmac_key bytea NOT NULL CHECK (length(hmac_key) = 64),
    hmac_inner bytea NOT NULL CHECK (length(hmac_inner) = 64),
    hmac_outer bytea NOT NULL CHECK (length(hmac_outer) = 64),
    created_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON TABLE public.installation_secrets FROM PUBLIC, anon, authenticated, service_role;
GRANT SELECT ON public.installation_secrets TO service_role;

COMMENT ON TABLE public.installation_secrets IS
    'This installation''s secret for keyed hashes of erased addresses (one row); '
    'read by the service role only';

WITH k AS (
    SELECT decode(
        replace(gen_random_uuid()::text || gen_random_uuid()::text
                || gen_random_uuid()::text || gen_random_uuid()::text, '-', ''),
        'hex') AS hmac_key
)
INSERT INTO public.installation_secrets (hmac_key, hmac_inner, hmac_outer)
SELECT k.hmac_key,
       (SELECT decode(string_agg(lpad(to_hex(get_byte(k.hmac_key, i) # 54), 2, '0'), ''
                                 ORDER BY i), 'hex')
        FROM generate_series(0, 63) AS i),
       (SELECT decode(string_agg(lpad(to_hex(get_byte(k.hmac_key, i) # 92), 2, '0'), ''
                                 ORDER BY i), 'hex')
        FROM generate_series(0, 63) AS i)
FROM k;

ALTER TABLE public.installation_secrets ENABLE ROW LEVEL SECURITY;

CREATE POLICY "Service role can read the installation secrets" ON public.installation_secrets
    FOR SELECT TO service_role USING ((SELECT auth.role()) = 'service_role');

-- ---------------------------------------------------------------- lqs_recipient_hash
CREATE FUNCTION public.lqs_recipient_hash(channel text, recipient text)
RETURNS bytea
LANGUAGE sql
STABLE
SET search_path = ''
AS $$
    SELECT sha256(s.hmac_outer || sha256(s.hmac_inner
                                         || convert_to(channel || ':' || recipient, 'UTF8')))
    FROM public.installation_secrets AS s
$$;

COMMENT ON FUNCTION public.lqs_recipient_hash(text, text) IS
    'HMAC-SHA256 of channel:recipient (recipient normalised) under the installation key: '
    'what the suppression list is unique on and compared on';

REVOKE ALL ON FUNCTION public.lqs_recipient_hash(text, text)
    FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.lqs_recipient_hash(text, text) TO service_role;

-- ---------------------------------------------------------------- suppressions
ALTER TABLE public.suppressions ADD COLUMN recipient_hash bytea;
UPDATE public.suppressions SET recipient_hash = public.lqs_recipient_hash(channel, recipient);
ALTER TABLE public.suppressions
    ALTER COLUMN recipient_hash SET NOT NULL,
    ALTER COLUMN recipient DROP NOT NULL,
    DROP CONSTRAINT suppressions_client_id_channel_recipient_key,
    ADD CONSTRAINT suppressions_client_id_channel_recipient_hash_key
        UNIQUE (client_id, channel, recipient_hash),
    DROP CONSTRAINT suppressions_reason_check,
    ADD CONSTRAINT suppressions_reason_check
        CHECK (reason IN ('bounce', 'complaint', 'unsubscribe', 'manual', 'erasure'));

COMMENT ON COLUMN public.suppressions.recipient IS
    'The normalised address (lower-case email, E.164 phone, endpoint URL); NULL once the '
    'person is erased';
COMMENT ON COLUMN public.suppressions.recipient_hash IS
    'public.lqs_recipient_hash(channel, recipient): set from the address when there is one';

-- The hash follows the address; an erased row (recipient NULL) keeps the hash it has.
CREATE FUNCTION public.suppressions_set_recipient_hash() RETURNS trigger
LANGUAGE plpgsql SET search_path = '' AS $$
BEGIN
    IF NEW.recipient IS NOT NULL THEN
        NEW.recipient_hash := public.lqs_recipient_hash(NEW.channel, NEW.recipient);
    END IF;
    RETURN NEW;
END;
$$;
REVOKE ALL ON FUNCTION public.suppressions_set_recipient_hash()
    FROM PUBLIC, anon, authenticated, service_role;

CREATE TRIGGER suppressions_set_recipient_hash
    BEFORE INSERT OR UPDATE OF recipient, channel ON public.suppressions
    FOR EACH ROW EXECUTE FUNCTION public.suppressions_set_recipient_hash();

-- New consent lifts an erasure's suppression: a 'granted' entry appended to the consent
-- history after the erasure (an intake submission or CSV import with consent) removes
-- the 'erasure' suppression of that channel and address. Bounces, complaints,
-- unsubscribes and manual suppressions stay: consent does not undo them.
CREATE FUNCTION public.consent_history_lift_erasure() RETURNS trigger
LANGUAGE plpgsql SET search_path = '' AS $$
BEGIN
    IF NEW.consent_status = 'granted' AND NEW.recipient IS NOT NULL THEN
        DELETE FROM public.suppressions AS s
        WHERE s.client_id = NEW.client_id AND s.channel = NEW.channel
          AND s.reason = 'erasure'
          AND s.recipient_hash = public.lqs_recipient_hash(NEW.channel, NEW.recipient);
    END IF;
    RETURN NULL;
END;
$$;
REVOKE ALL ON FUNCTION public.consent_history_lift_erasure()
    FROM PUBLIC, anon, authenticated, service_role;

CREATE TRIGGER consent_history_lift_erasure
    AFTER INSERT ON public.consent_history
    FOR EACH ROW EXECUTE FUNCTION public.consent_history_lift_erasure();

-- ---------------------------------------------------------------- consent_history
-- Still append-only, except for lqs_erase_history below: it sets lqs.erasing for its own
-- statements only (a plain UPDATE, by any role, is refused as before).
CREATE OR REPLACE FUNCTION public.consent_history_append_only() RETURNS trigger
LANGUAGE plpgsql SET search_path = '' AS $$
BEGIN
    IF TG_OP = 'DELETE' AND pg_trigger_depth() > 1 THEN
        RETURN OLD;
    END IF;
    IF TG_OP = 'UPDATE' AND current_setting('lqs.erasing', true) = 'on' THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'consent_history is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
REVOKE ALL ON FUNCTION public.consent_history_append_only()
    FROM PUBLIC, anon, authenticated, service_role;

-- The one way to rewrite the append-only records of a person being erased: their consent
-- history entries (the address, the network address, the browser, the wording they saw)
-- and the audit log details that name one of their addresses. SECURITY DEFINER because
-- the service role may only read and append these tables; executable by it alone.
CREATE FUNCTION public.lqs_erase_history(
    erased_client uuid, lead_ids uuid[], addresses text[]
)
RETURNS integer[]
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    history integer;
    audit integer;
BEGIN
    PERFORM set_config('lqs.erasing', 'on', true);
    UPDATE public.consent_history AS h
    SET recipient = 'erased', ip = NULL, user_agent = NULL, consent_text = NULL
    WHERE (h.lead_id = ANY(lead_ids)
           OR (h.client_id = erased_client AND h.recipient = ANY(addresses)))
      AND h.client_id = erased_client AND h.recipient <> 'erased';
    GET DIAGNOSTICS history = ROW_COUNT;
    PERFORM set_config('lqs.erasing', '', true);
    UPDATE public.audit_log AS a
    SET detail = a.detail || '{"recipient": "(erased)"}'::jsonb
    WHERE a.client_id = erased_client AND a.detail->>'recipient' = ANY(addresses);
    GET DIAGNOSTICS audit = ROW_COUNT;
    RETURN ARRAY[history, audit];
END;
$$;

COMMENT ON FUNCTION public.lqs_erase_history(uuid, uuid[], text[]) IS
    'Erasure only: clear the personal columns of the consent history entries of the leads '
    'or addresses, and the addresses in the client''s audit log details; [entries, audit rows]';

REVOKE ALL ON FUNCTION public.lqs_erase_history(uuid, uuid[], text[])
    FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.lqs_erase_history(uuid, uuid[], text[]) TO service_role;

-- ---------------------------------------------------------------- erasures
-- One row per erasure request (a CLI call, an API DELETE): who, when, which client, why,
-- and how many rows of each table it changed. Never the person's data, not even the hash.
CREATE TABLE public.erasures (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    client_id uuid NOT NULL REFERENCES public.clients(id) ON DELETE CASCADE,
    -- 'operator:<login>' (the CLI), 'user:<uuid>' (the tenant API).
    requested_by text NOT NULL CHECK (length(requested_by) BETWEEN 1 AND 200),
    reason text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
    counts jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(counts) = 'object'),
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
REVOKE ALL ON TABLE public.erasures FROM PUBLIC, anon, authenticated, service_role;

CREATE INDEX idx_erasures_client_started ON public.erasures(client_id, started_at DESC);

COMMENT ON TABLE public.erasures IS
    'Erasure requests: who, when, which client, why, rows changed per table; no personal data';

GRANT SELECT ON public.erasures TO authenticated;
GRANT SELECT, INSERT, UPDATE ON public.erasures TO service_role;

ALTER TABLE public.erasures ENABLE ROW LEVEL SECURITY;

CREATE POLICY "Admins can view erasures for their client" ON public.erasures
    FOR SELECT TO authenticated USING (
        client_id IN (
            SELECT p.client_id FROM public.profiles p
            WHERE p.id = (SELECT auth.uid()) AND p.role IN ('owner', 'admin')
        )
    );
CREATE POLICY "Service role can manage all erasures" ON public.erasures
    FOR ALL TO service_role USING ((SELECT auth.role()) = 'service_role')
    WITH CHECK ((SELECT auth.role()) = 'service_role');

-- ---------------------------------------------------------------- leads by address
-- An erasure (and a subject's request) finds every lead of a client holding an address;
-- the dedupe key names only one of a lead's addresses (the email when it has both). Not
-- partial: ANALYZE keeps no statistics for a partial index's expression, and without them
-- a lookup of 200 addresses was planned as a scan of the client's leads.
CREATE INDEX idx_leads_client_email ON public.leads(client_id, lower(email));
CREATE INDEX idx_leads_client_phone ON public.leads(client_id, phone) WHERE phone IS NOT NULL;
-- ... and every consent history entry on an address (a withdrawal names no lead).
CREATE INDEX idx_consent_history_client_recipient
    ON public.consent_history(client_id, recipient);
