-- Signed webhook bodies that were refused, kept raw for inspection.

-- ---------------------------------------------------------------- webhook_rejects
-- A delivery webhook whose signature is valid but whose body cannot be used (not UTF-8,
-- not the provider's documented shape, or holding text jsonb cannot store: NUL, lone
-- surrogates) is answered 400 and kept here as bytes, so nothing about it is lost and
-- provider_events (jsonb) never has to hold it. Unsigned bodies are never stored.
CREATE TABLE public.webhook_rejects (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    client_id uuid REFERENCES public.clients(id) ON DELETE CASCADE,
    provider varchar(50) NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    reason text NOT NULL,
    headers jsonb NOT NULL DEFAULT '{}'::jsonb,
    body bytea NOT NULL
);

CREATE INDEX idx_webhook_rejects_client_id ON public.webhook_rejects(client_id, received_at);

COMMENT ON TABLE public.webhook_rejects IS
    'Signed provider webhooks refused with 400, raw: why, their non-secret headers, the body';
COMMENT ON COLUMN public.webhook_rejects.headers IS
    'Content and provider id headers only; signatures and credentials are never kept';

-- ---------------------------------------------------------------- privileges and RLS
GRANT SELECT ON public.webhook_rejects TO authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.webhook_rejects TO service_role;

ALTER TABLE public.webhook_rejects ENABLE ROW LEVEL SECURITY;

CREATE POLICY "Users can view webhook rejects for their client" ON public.webhook_rejects
    FOR SELECT USING (
        client_id IN (SELECT p.client_id FROM public.profiles p WHERE p.id = (SELECT auth.uid()))
    );
CREATE POLICY "Service role can manage all webhook rejects" ON public.webhook_rejects
    FOR ALL USING ((SELECT auth.role()) = 'service_role')
    WITH CHECK ((SELECT auth.role()) = 'service_role');
