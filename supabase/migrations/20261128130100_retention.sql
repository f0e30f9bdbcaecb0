-- Retention: what grows forever unless something prunes it, and the pg_cron schedules
-- that prune it. Each prune function can be called by hand and returns how many rows
-- it removed; each schedule is named `utter-<what>` in cron.job.
--
-- pg_cron keeps its jobs in one database per server (setting cron.database_name: the
-- `postgres` database on Supabase and on the project's own cluster). Elsewhere, e.g.
-- the throwaway test databases, the prune functions exist and the schedules do not.

-- pgmq's archive (pgmq.a_<queue>) keeps every finished or dead-lettered message for
-- inspection; keep the last `older_than`.
create function private.prune_queue_archives(older_than interval default interval '14 days')
returns bigint
language plpgsql security definer set search_path = '' as $$
declare
  queue text;
  removed bigint;
  total bigint := 0;
begin
  if older_than is null or older_than < interval '1 hour' then
    raise exception using errcode = '22023',
      message = format('prune_queue_archives keeps at least an hour of archive, got %s', older_than);
  end if;
  -- Every queue pgmq holds, this project's later ones (checkout) included.
  for queue in select m.queue_name from pgmq.meta m loop
    execute format('delete from pgmq.%I where archived_at < now() - $1', 'a_' || queue) using older_than;
    get diagnostics removed = row_count;
    total := total + removed;
  end loop;
  return total;
end
$$;

-- Broadcasts in realtime.messages are read by Realtime within seconds. Supabase
-- partitions the table by day and drops partitions older than 72 hours itself; a
-- plain table (the development platform) is pruned here.
create function private.prune_broadcasts(older_than interval default interval '3 days')
returns bigint
language plpgsql security definer set search_path = '' as $$
declare
  removed bigint;
begin
  if older_than is null or older_than < interval '1 minute' then
    raise exception using errcode = '22023',
      message = format('prune_broadcasts keeps at least a minute of broadcasts, got %s', older_than);
  end if;
  if (select c.relkind from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = 'realtime' and c.relname = 'messages') = 'p' then
    return 0;  -- partitioned: the platform drops old partitions
  end if;
  delete from realtime.messages m where m.inserted_at < (now() - older_than)::timestamp;
  get diagnostics removed = row_count;
  return removed;
end
$$;

-- The schedules, by name. cron.schedule with an existing name updates that job, so
-- this list is also how a later migration changes a schedule.
create function private.retention_schedules()
returns table (job_name text, schedule text, command text)
language plpgsql immutable set search_path = '' as $$
begin
  return query values
    ('utter-prune-queue-archives'::text, '17 3 * * *'::text, 'select private.prune_queue_archives()'::text),
    ('utter-prune-broadcasts', '7 * * * *', 'select private.prune_broadcasts()'),
    -- Abandoned uploads and old request counters (private.sweep, from the limits
    -- migration, which schedules it only where pg_cron was there before it).
    ('utter-sweep', '*/15 * * * *', 'select private.sweep()');
end
$$;

do $$
declare
  job record;
begin
  if not exists (select 1 from pg_extension where extname = 'pg_cron') then
    -- Where Supabase's dashboard puts it. Refused outside cron.database_name, where
    -- the server does not preload it, or where `postgres` may not create it (a setting
    -- only a superuser may read, so the attempt is the test).
    begin
      create extension pg_cron with schema pg_catalog;
    exception when others then
      raise notice 'pg_cron is not available in database % (%): retention is not scheduled here',
        current_database(), sqlerrm;
      return;
    end;
  end if;
  for job in select * from private.retention_schedules() loop
    perform cron.schedule(job.job_name, job.schedule, job.command);
  end loop;
end
$$;

revoke all on all functions in schema private from public, anon, authenticated, service_role;
