"""The local development stack: a project-owned PostgreSQL 15 cluster shaped like
Supabase's database, the platform shim, migrations through the Supabase CLI, and
throwaway databases for tests."""
