-- Cluster-wide roles, run once per start by the bootstrap superuser `supabase_admin`.
-- On Supabase, `supabase_admin` is the only superuser and owns the platform; the
-- project's own role `postgres` was demoted (supabase/postgres,
-- migrations/db/migrations/10000000000000_demote-postgres.sql) and is what
-- migrations, `supabase db lint` and the pgTAP suites run as. We mirror that, so a
-- migration that would need a superuser fails here as it would there.
do $$
begin
  if not exists (select 1 from pg_roles where rolname = 'postgres') then
    create role postgres login password 'postgres';
  end if;
  -- supabase/postgres: migrations/db/init-scripts/00000000000001-auth-schema.sql,
  -- 00000000000002-storage-schema.sql, and realtime's
  -- 20240401105812_create_realtime_admin_and_move_ownership: the owners of the
  -- platform schemas. The Storage API logs in as `supabase_storage_admin`.
  if not exists (select 1 from pg_roles where rolname = 'supabase_auth_admin') then
    create role supabase_auth_admin noinherit createrole login noreplication;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'supabase_storage_admin') then
    create role supabase_storage_admin noinherit createrole login noreplication
      password 'postgres';
  end if;
  if not exists (select 1 from pg_roles where rolname = 'supabase_realtime_admin') then
    create role supabase_realtime_admin noinherit nologin noreplication;
  end if;
end
$$;

-- 10000000000000_demote-postgres.sql
alter role postgres nosuperuser createdb createrole login replication bypassrls;
grant all on database postgres to postgres;
-- The project's database is postgres's own (supabase/postgres
-- ansible/files/admin_api_scripts/pg_upgrade_scripts/common.sh gives every database
-- to postgres), so `public` (owned by pg_database_owner) is postgres's to use.
alter database postgres owner to postgres;

-- 20220609081115_grant-supabase-auth-admin-and-supabase-storage-admin-to-postgres.sql
-- ("so that the postgres role can manage auth tables triggers, storage tables
-- policies"), and realtime's 20240401105812 (`grant supabase_realtime_admin to postgres`).
-- Through these memberships `postgres` creates the policies on storage.objects and
-- realtime.messages that the migrations define.
grant supabase_auth_admin, supabase_storage_admin, supabase_realtime_admin to postgres;

-- Hosted Supabase's role memberships (a Supabase project's `pg_dumpall --roles-only`:
-- `GRANT pg_signal_backend TO postgres WITH ADMIN OPTION`, and pg_monitor,
-- pg_read_all_data likewise): `postgres` may end other roles' sessions, as
-- `drop database ... with (force)` does for a test database a listener still uses.
grant pg_signal_backend, pg_monitor, pg_read_all_data to postgres with admin option;
