-- Development only: feeds the local Realtime relay (`python -m relay`), the stand-in
-- for Supabase Realtime on machines without it. Supabase Realtime reads
-- `realtime.messages` through logical replication; the relay instead LISTENs on
-- `realtime_relay`, which is enough for one local process and needs no replication
-- slot that could pin WAL while the relay is not running (docs/realtime-relay.md).
--
-- NOTIFY is delivered at commit, in commit order, and never for a rolled-back
-- insert, so the relay sees exactly the committed messages in the order they became
-- visible. Any session of any login may LISTEN on any channel, so a notification
-- carries only the message's key: the relay reads the row itself, with its own
-- privileges, and a database login that may not read realtime.messages learns nothing.
create or replace function realtime.notify_relay() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  perform pg_notify(
    'realtime_relay', json_build_object('id', new.id, 'inserted_at', new.inserted_at)::text
  );
  return null;
end
$$;
alter function realtime.notify_relay() owner to supabase_realtime_admin;

-- Only what Supabase relays to private channels: broadcasts written for a private topic.
create or replace trigger relay_notify
  after insert on realtime.messages
  for each row
  when (new.private is true and new.extension = 'broadcast')
  execute function realtime.notify_relay();
