-- Development only: feeds the local Realtime relay (`python -m relay`), the stand-in
-- for Supabase Realtime on machines without it. Supabase Realtime reads
-- `realtime.messages` through logical replication; the relay instead LISTENs on
-- `realtime_relay`, which is enough for one local process and needs no replication
-- slot that could pin WAL while the relay is not running (docs/realtime-relay.md).
--
-- NOTIFY is delivered at commit, in commit order, and never for a rolled-back
-- insert, so the relay sees exactly the committed messages in the order they became
-- visible. A notification carries at most 8000 bytes: a message that does not fit
-- goes as its key alone and the relay reads the row.
create or replace function realtime.notify_relay() returns trigger
language plpgsql
set search_path = ''
as $$
declare
  notice text := json_build_object(
    'id', new.id, 'topic', new.topic, 'event', new.event,
    'inserted_at', new.inserted_at, 'payload', new.payload
  )::text;
begin
  if octet_length(notice) > 7900 then
    notice := json_build_object(
      'id', new.id, 'topic', new.topic, 'inserted_at', new.inserted_at, 'truncated', true
    )::text;
  end if;
  perform pg_notify('realtime_relay', notice);
  return null;
end
$$;

-- Only what Supabase relays to private channels: broadcasts written for a private topic.
create or replace trigger relay_notify
  after insert on realtime.messages
  for each row
  when (new.private is true and new.extension = 'broadcast')
  execute function realtime.notify_relay();
