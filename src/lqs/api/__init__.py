"""The HTTP API: lead intake now; provider webhooks and the tenant API later."""
