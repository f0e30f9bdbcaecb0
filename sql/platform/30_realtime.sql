-- Supabase Realtime's database side: "Broadcast from Database" writes rows into
-- `realtime.messages`; the Realtime server relays them to subscribed channels and
-- authorises private channels by the RLS policies on this table, with
-- `realtime.topic()` naming the channel being joined.
create schema if not exists realtime;
grant usage on schema realtime to postgres, anon, authenticated, service_role;

-- Partitioned by day on `inserted_at` (realtime migration
-- 20241030150047_messages_partitioning), the id a uuid (20241108114728
-- MessagesUsingUuid), and a `binary_payload` that excludes `payload`
-- (20260514120000_add_binary_payload_to_messages). The partitions themselves come
-- from 31_realtime_partitions.sql, as Realtime's own process makes them.
create table if not exists realtime.messages (
  id uuid not null default gen_random_uuid(),
  topic text not null,
  extension text not null,
  payload jsonb,
  event text,
  private boolean default false,
  updated_at timestamp without time zone not null default now(),
  inserted_at timestamp without time zone not null default now(),
  binary_payload bytea,
  primary key (id, inserted_at),
  constraint messages_payload_exclusive check (payload is null or binary_payload is null)
) partition by range (inserted_at);
create index if not exists messages_inserted_at_topic_index
  on realtime.messages (inserted_at desc, topic)
  where extension = 'broadcast' and private is true;

alter table realtime.messages enable row level security;
-- Owned by supabase_realtime_admin, whose member `postgres` is (realtime migration
-- 20240401105812_create_realtime_admin_and_move_ownership).
alter table realtime.messages owner to supabase_realtime_admin;
revoke all on realtime.messages from anon, authenticated, service_role;
grant select, insert, update on realtime.messages to anon, authenticated;
grant select, insert, update, delete, references, trigger on realtime.messages to service_role;
grant select on realtime.messages to postgres;

create or replace function realtime.topic() returns text
language sql stable
as $$
  select nullif(current_setting('realtime.topic', true), '')::text
$$;

-- As realtime migration 20251103001201_broadcast_send_include_payload_id has it: a
-- payload without an `id` gets one, the same uuid as the message row's id.
create or replace function realtime.send(
  payload jsonb,
  event text,
  topic text,
  private boolean default true
) returns void
language plpgsql
as $$
declare
  message_id uuid := gen_random_uuid();
begin
  begin
    -- The topic is visible to RLS policies evaluated during the insert.
    perform set_config('realtime.topic', topic, true);
    insert into realtime.messages (id, payload, event, topic, private, extension)
    values (
      message_id,
      case when payload ? 'id' then payload else jsonb_set(payload, '{id}', to_jsonb(message_id)) end,
      event, topic, private, 'broadcast'
    );
  exception when others then
    -- Like Supabase: a failed broadcast never aborts the caller's transaction.
    raise warning 'ErrorSendingBroadcastMessage: %', sqlerrm;
  end;
end
$$;

create or replace function realtime.broadcast_changes(
  topic_name text,
  event_name text,
  operation text,
  table_name text,
  table_schema text,
  new record,
  old record,
  level text default 'ROW'
) returns void
language plpgsql
as $$
declare
  row_data jsonb := '{}'::jsonb;
begin
  if level = 'STATEMENT' then
    raise exception 'function can only be triggered for each row, not for each statement';
  end if;
  if operation = 'INSERT' or operation = 'UPDATE' or operation = 'DELETE' then
    row_data := jsonb_build_object(
      'old_record', old,
      'record', new,
      'operation', operation,
      'table', table_name,
      'schema', table_schema
    );
    perform realtime.send(row_data, event_name, topic_name);
  else
    raise exception 'Unexpected operation type: %', operation;
  end if;
end
$$;

alter function realtime.topic() owner to supabase_realtime_admin;
alter function realtime.send(jsonb, text, text, boolean) owner to supabase_realtime_admin;
alter function realtime.broadcast_changes(text, text, text, text, text, record, record, text)
  owner to supabase_realtime_admin;
-- realtime migration 20231204144023_set_required_grants: `postgres` may execute them.
grant execute on function realtime.topic() to postgres, anon, authenticated, service_role;
grant execute on function realtime.send(jsonb, text, text, boolean) to postgres;
grant execute on function
  realtime.broadcast_changes(text, text, text, text, text, record, record, text) to postgres;
grant execute on function realtime.send(jsonb, text, text, boolean) to authenticated, service_role;
grant execute on function
  realtime.broadcast_changes(text, text, text, text, text, record, record, text)
  to authenticated, service_role;

do $$
begin
  if not exists (select 1 from pg_publication where pubname = 'supabase_realtime') then
    create publication supabase_realtime;
  end if;
end
$$;
-- Owned by `postgres`, which adds its tables to it (supabase/postgres
-- ansible/files/admin_api_scripts/pg_upgrade_scripts/common.sh gives every
-- publication to postgres).
alter publication supabase_realtime owner to postgres;
