"""Database access: the embedded server, connections, the pool, tenant sessions, migrations."""
