"""The HTTP API: lead intake, provider delivery webhooks, one-click unsubscribe, probes and
metrics; :mod:`lqs.api.app` builds it."""
