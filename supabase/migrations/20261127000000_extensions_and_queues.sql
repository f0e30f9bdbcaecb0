-- pgmq: the `pgmq` extension on Supabase (Supabase Queues). Where the platform shim
-- installs pgmq's SQL into the `pgmq` schema instead, there is nothing to do here; a
-- database with neither fails at the first queue this project creates.
do $$
begin
  if not exists (select 1 from pg_namespace where nspname = 'pgmq')
     and exists (select 1 from pg_available_extensions where name = 'pgmq') then
    create extension if not exists pgmq;
  end if;
end
$$;
