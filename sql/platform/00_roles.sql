-- Roles and default privileges as a Supabase project has them, installed by the
-- platform superuser `supabase_admin` (the cluster-wide roles `postgres` and the
-- `supabase_*_admin` owners come first: cluster/roles.sql).
-- Sources: supabase/postgres migrations/db/init-scripts/00000000000000-initial-schema.sql
-- (API roles, `extensions`, default grants in `public`, statement timeouts) and
-- migrations/db/migrations/20230529180330_alter_api_roles_for_inherit.sql (the API
-- roles are INHERIT).
-- PostgREST logs in as `authenticator` and switches to the role named in the JWT.
do $$
begin
  if not exists (select 1 from pg_roles where rolname = 'anon') then
    create role anon nologin;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'authenticated') then
    create role authenticated nologin;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'service_role') then
    create role service_role nologin bypassrls;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'authenticator') then
    create role authenticator login noinherit;
  end if;
end
$$;
-- 20230529180330_alter_api_roles_for_inherit.sql
alter role anon inherit;
alter role authenticated inherit;
alter role service_role inherit;

grant anon, authenticated, service_role to authenticator;
grant anon, authenticated, service_role to postgres;
-- The Storage API (logged in as supabase_storage_admin) runs each request as the
-- caller's role (supabase/storage src/internal/database/postgres/scope.ts).
grant anon, authenticated, service_role to supabase_storage_admin;

-- 10000000000000_demote-postgres.sql: `grant all on database ... to postgres`, for
-- whichever database the shim is installed in.
do $$
begin
  execute format('grant all on database %I to postgres', current_database());
end
$$;

create schema if not exists extensions;
grant usage on schema extensions to postgres, anon, authenticated, service_role;
grant all on schema extensions to postgres;
create extension if not exists pgcrypto with schema extensions;
create extension if not exists "uuid-ossp" with schema extensions;

-- Supabase exposes `public` through PostgREST and grants every API role everything
-- there by default; Row Level Security is what actually protects the rows. Our
-- migrations revoke what they do not want exposed.
grant usage on schema public to postgres, anon, authenticated, service_role;
alter default privileges for role postgres in schema public
  grant all on tables to postgres, anon, authenticated, service_role;
alter default privileges for role postgres in schema public
  grant all on functions to postgres, anon, authenticated, service_role;
alter default privileges for role postgres in schema public
  grant all on sequences to postgres, anon, authenticated, service_role;

alter role authenticator set statement_timeout = '8s';
alter role anon set statement_timeout = '3s';
alter role authenticated set statement_timeout = '8s';

-- As on Supabase, extensions (pgTAP included) are found without a schema prefix.
alter role postgres set search_path = "$user", public, extensions;
alter role authenticated set search_path = "$user", public, extensions;
alter role anon set search_path = "$user", public, extensions;
alter role service_role set search_path = "$user", public, extensions;
