"""LQS: lead qualification and outbound communications on PostgreSQL."""
