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
