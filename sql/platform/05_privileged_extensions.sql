-- Extensions that `postgres` may create on Supabase although they need a superuser:
-- supautils creates them as `supabase_admin` on its behalf (supabase/postgres
-- ansible/files/postgresql_config/supautils.conf.j2, `privileged_extensions`). Without
-- supautils here, the one such extension the project's tools use is installed up
-- front: `plpgsql_check`, which `supabase db lint` enables (`create extension if not
-- exists`) before checking. Where the server has no plpgsql_check (some PostgreSQL 17
-- builds), lint is not available and nothing is installed.
do $$
begin
  if exists (select 1 from pg_available_extensions where name = 'plpgsql_check') then
    create extension if not exists plpgsql_check with schema extensions;
  end if;
end
$$;

-- pg_cron, also privileged on Supabase, where it is created into pg_catalog and
-- `postgres` is then given its schema, functions and tables, but only SELECT on
-- cron.job: jobs change through cron.schedule and cron.unschedule (supabase/postgres
-- ansible/files/postgresql_extension_custom_scripts/pg_cron/after-create.sql). It can
-- live in one database only, the one the server names in cron.database_name, and only
-- where the server preloads it (devstack/cluster.py); elsewhere nothing is installed.
do $$
begin
  if current_setting('cron.database_name', true) = current_database()
     and exists (select 1 from pg_available_extensions where name = 'pg_cron')
     and not exists (select 1 from pg_extension where extname = 'pg_cron') then
    create extension pg_cron with schema pg_catalog;
    grant usage on schema cron to postgres with grant option;
    grant all on all functions in schema cron to postgres with grant option;
    grant all on all tables in schema cron to postgres with grant option;
    revoke all on table cron.job from postgres;
    grant select on table cron.job to postgres with grant option;
  end if;
end
$$;
