-- Provider events keep the reason they were parsed with, and name the provider's message
-- id as communications does.

-- ---------------------------------------------------------------- provider_events.reason
-- Why the provider says a message bounced, failed or was deferred, as the webhook's parser
-- read it; an event applied late (it arrived before the send was recorded) is applied
-- with the same text, without reading the payload again.
ALTER TABLE public.provider_events
    ADD COLUMN reason text CHECK (char_length(reason) <= 2000);

-- Events stored before this migration: the reason is read from the payload as the
-- application did until now (Resend data.bounce / data.failed: message, else reason;
-- then a top-level reason, then Twilio's ErrorCode; a string, or an integer as text).
UPDATE public.provider_events AS e
   SET reason = left(found.text, 2000)
  FROM (
    SELECT DISTINCT ON (p.id) p.id, c.text
      FROM public.provider_events AS p
     CROSS JOIN LATERAL (VALUES
            (1, p.payload -> 'data' -> 'bounce', true),
            (2, p.payload -> 'data' -> 'failed', true),
            (3, p.payload -> 'reason', false),
            (4, p.payload -> 'ErrorCode', false)
         ) AS v(rank, value, nested)
     CROSS JOIN LATERAL (
            SELECT CASE
                WHEN NOT v.nested THEN v.value
                WHEN jsonb_typeof(v.value) <> 'object' THEN NULL
                -- Python's "message or reason": an empty or false message gives way.
                WHEN v.value -> 'message' IS NULL
                  OR v.value -> 'message' IN ('null', '""', '0', 'false', '[]', '{}')
                    THEN v.value -> 'reason'
                ELSE v.value -> 'message'
            END AS found
         ) AS t
     CROSS JOIN LATERAL (
            SELECT CASE jsonb_typeof(t.found)
                WHEN 'string' THEN t.found #>> '{}'
                WHEN 'number' THEN CASE
                    WHEN NOT v.nested AND t.found::text !~ '[.eE]' THEN t.found::text END
                WHEN 'boolean' THEN CASE
                    WHEN NOT v.nested THEN CASE WHEN t.found = 'true' THEN 'True' ELSE 'False' END
                END
            END AS text
         ) AS c
     WHERE c.text IS NOT NULL
     ORDER BY p.id, v.rank
  ) AS found
 WHERE found.id = e.id;

COMMENT ON COLUMN public.provider_events.reason IS
    'Why the provider says so (bounce, failure, deferral), as parsed from the event';

-- ---------------------------------------------------------------- provider_events.external_id
-- The provider's id for the message, as the send returned it: the same value as
-- communications.external_id, so the same name.
ALTER TABLE public.provider_events RENAME COLUMN message_id TO external_id;
