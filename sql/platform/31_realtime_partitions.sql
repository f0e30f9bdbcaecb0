-- What Supabase Realtime's own process does for each tenant database: partitions of
-- `realtime.messages` for yesterday to three days ahead, owned by
-- supabase_realtime_admin (lib/realtime/tenants.ex, create_messages_partitions), and
-- partitions whose day is before the date 72 hours ago dropped
-- (lib/realtime/messages.ex, delete_old_messages). devstack runs this file with the
-- shim and again on every test database it clones; partitions are named as Realtime
-- names them, `messages_YYYY_MM_DD`.
do $$
declare
  day date;
  expired record;
begin
  for day in
    select d::date from generate_series(
      (now() at time zone 'utc')::date - 1, (now() at time zone 'utc')::date + 3, interval '1 day'
    ) d
  loop
    execute format(
      'create table if not exists realtime.%I partition of realtime.messages for values from (%L) to (%L)',
      'messages_' || to_char(day, 'YYYY_MM_DD'), day, day + 1
    );
    execute format('alter table realtime.%I owner to supabase_realtime_admin',
      'messages_' || to_char(day, 'YYYY_MM_DD'));
  end loop;

  for expired in
    select child.relname
    from pg_inherits
    join pg_class parent on parent.oid = pg_inherits.inhparent
    join pg_class child on child.oid = pg_inherits.inhrelid
    join pg_namespace ns on ns.oid = child.relnamespace
    where ns.nspname = 'realtime' and parent.relname = 'messages'
      and child.relname ~ '^messages_\d{4}_\d{2}_\d{2}$'
      and to_date(substr(child.relname, 10), 'YYYY_MM_DD')
          < ((now() at time zone 'utc') - interval '72 hours')::date
  loop
    execute format('drop table if exists realtime.%I', expired.relname);
  end loop;
end
$$;
