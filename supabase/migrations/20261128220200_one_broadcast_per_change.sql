-- One Realtime message per state change instead of one per table.
--
-- Each realtime.send is a subtransaction and a row in realtime.messages; a design
-- preview's life sent eight of them (the preview and its task on insert, the balance
-- and the charge, the preview and its task when claimed, and again when completed),
-- and they were a quarter of the listener's database time per job. The same facts now
-- travel in half the messages (docs/client-contract.md, "Live updates"):
--
-- 1. A task's message carries its subject. Every `tasks` INSERT or UPDATE payload has
--    `subject`: {"table": ..., "record": ...}, the generation, design preview, voice or
--    transcription as it stands after the change (null when it has none, e.g. once
--    deleted). A generation's or design preview's insert, and a status change of a
--    generation, design preview or transcription (which only ever happens with its
--    task's, in the same transaction: the task trigger mirrors it, or complete_task
--    writes the result), send no message of their own. Their other changes, and every
--    change of a voice, still do.
--    A voice's use count, which only a generation's insert moves, is not sent either:
--    the generation in its task's INSERT names the voice.
-- 2. The balance travels with its ledger row: every change of a balance has one
--    (`credit_activity`, with `balance_after`), so `profiles` is broadcast only when
--    the tier changes, or when an anonymous account made permanent gets its sign-up
--    grant (whose ledger row, like every sign-up grant's, is not broadcast).
--
-- The task's message is sent by a trigger named to fire after the task triggers that
-- mirror the subject (AFTER triggers of one event fire in name order), so the subject
-- it carries is the one this change produced.

create or replace function private.broadcast_change() returns trigger
language plpgsql security definer set search_path = '' as $$
declare
  row_now jsonb := case when tg_op = 'DELETE' then to_jsonb(old) else to_jsonb(new) end;
  row_before jsonb := case when tg_op = 'UPDATE' and tg_table_name <> 'tasks' then to_jsonb(old) end;
  owner uuid := (case when tg_table_name = 'profiles' then row_now ->> 'id' else row_now ->> 'user_id' end)::uuid;
  record_now jsonb;
  message jsonb;
  subject jsonb;
begin
  if tg_op = 'DELETE' then
    record_now := jsonb_build_object('id', row_now -> 'id');
  else
    if tg_table_name in ('generations', 'design_previews') and tg_op = 'INSERT' then
      return null;  -- its task's INSERT carries it
    end if;
    if tg_op = 'UPDATE' and tg_table_name in ('generations', 'design_previews', 'transcriptions')
       and row_before ->> 'status' is distinct from row_now ->> 'status' then
      return null;  -- its task's message carries it
    end if;
    if tg_op = 'UPDATE' and tg_table_name = 'profiles' and row_before ->> 'tier' = row_now ->> 'tier'
       and not exists (select from private.credit_ledger l
                       where l.user_id = owner and l.reason = 'signup_grant' and l.created_at >= statement_timestamp()) then
      -- A balance change: its credit_activity row carries the balance. (The grant of an
      -- anonymous account made permanent, in this statement, is not broadcast as
      -- credit_activity: its profile's message says it.)
      return null;
    end if;
    record_now := private.broadcast_record(tg_table_name, row_now);
    -- (A task's trigger compares the columns its record shows before calling this.)
    if tg_op = 'UPDATE' and tg_table_name <> 'tasks'
       and private.broadcast_record(tg_table_name, row_before) = record_now then
      return null;  -- only internal columns changed (heartbeats): nothing to show
    end if;
  end if;
  message := jsonb_build_object('operation', tg_op, 'schema', tg_table_schema,
                                'table', tg_table_name, 'record', record_now);
  if tg_table_name = 'tasks' and tg_op <> 'DELETE' then
    case row_now ->> 'type'
      when 'generate' then
        select jsonb_build_object('table', 'generations', 'record', private.broadcast_record('generations', to_jsonb(g)))
        into subject from public.generations g where g.id = (row_now ->> 'generation_id')::uuid;
      when 'design_preview' then
        select jsonb_build_object('table', 'design_previews', 'record', private.broadcast_record('design_previews', to_jsonb(p)))
        into subject from public.design_previews p where p.id = (row_now ->> 'design_preview_id')::uuid;
      when 'clone' then
        select jsonb_build_object('table', 'voices', 'record', private.broadcast_record('voices', to_jsonb(v)))
        into subject from public.voices v where v.id = (row_now ->> 'voice_id')::uuid;
      when 'transcribe' then
        select jsonb_build_object('table', 'transcriptions',
                                  'record', private.broadcast_record('transcriptions', to_jsonb(t)))
        into subject from public.transcriptions t where t.task_id = (row_now ->> 'id')::uuid;
      else
        subject := null;
    end case;
    message := message || jsonb_build_object('subject', subject);
  end if;
  perform realtime.send(message, tg_op, 'user:' || owner, true);
  return null;
end
$$;

drop trigger broadcast_changes on public.tasks;
-- "tasks_broadcast_..." sorts after "tasks_after_update" and
-- "tasks_after_update_transcription": it fires once the subject is in step. An
-- update that changes none of the columns a client sees (a heartbeat, a recorded
-- engine call: the columns of private.broadcast_record's task record) does not call it.
create trigger tasks_broadcast_changes after insert or delete on public.tasks
  for each row execute function private.broadcast_change();
create trigger tasks_broadcast_updates after update on public.tasks
  for each row when (
    (old.status, old.progress, old.error, old.cost, old.attempts, old.generation_id,
     old.design_preview_id, old.voice_id, old.cancel_requested_at, old.dismissed_at,
     old.created_at, old.started_at, old.ended_at)
    is distinct from
    (new.status, new.progress, new.error, new.cost, new.attempts, new.generation_id,
     new.design_preview_id, new.voice_id, new.cancel_requested_at, new.dismissed_at,
     new.created_at, new.started_at, new.ended_at))
  execute function private.broadcast_change();

-- What a subject's own trigger would send and then drop, its trigger's WHEN drops
-- first, so the function (which turns both row versions into JSON) is not even called:
-- a generation's or preview's insert and status changes, a transcription's status
-- changes, a profile's changes that leave the balance and the tier alone.
drop trigger broadcast_changes on public.generations;
create trigger broadcast_changes after delete on public.generations
  for each row execute function private.broadcast_change();
create trigger broadcast_changes_of_content after update on public.generations
  for each row when (old.status is not distinct from new.status)
  execute function private.broadcast_change();

-- A preview's audio hash (worker.record_reference, while its task runs) is the
-- server's bookkeeping: it reaches the client with the completed preview, in its
-- task's message, not in a message of its own.
drop trigger broadcast_changes on public.design_previews;
create trigger broadcast_changes after delete on public.design_previews
  for each row execute function private.broadcast_change();
create trigger broadcast_changes_of_content after update on public.design_previews
  for each row when (old.status is not distinct from new.status
                     and (to_jsonb(old) - '{audio_sha256,updated_at}'::text[])
                         is distinct from (to_jsonb(new) - '{audio_sha256,updated_at}'::text[]))
  execute function private.broadcast_change();

drop trigger broadcast_changes on public.transcriptions;
create trigger broadcast_changes after insert or delete on public.transcriptions
  for each row execute function private.broadcast_change();
create trigger broadcast_changes_of_content after update on public.transcriptions
  for each row when (old.status is not distinct from new.status)
  execute function private.broadcast_change();

drop trigger broadcast_changes on public.profiles;
create trigger broadcast_changes after update on public.profiles
  for each row when (old.tier is distinct from new.tier or old.credits is distinct from new.credits)
  execute function private.broadcast_change();

-- A voice's use count (generation_count, last_used_at) moves with each generation
-- inserted with it, which its task's INSERT already tells (the generation names its
-- voice and its creation time): counting it again cost the insert a second message.
drop trigger broadcast_changes on public.voices;
create trigger broadcast_changes after insert or delete on public.voices
  for each row execute function private.broadcast_change();
create trigger broadcast_changes_of_content after update on public.voices
  for each row when (
    (to_jsonb(old) - '{generation_count,last_used_at,updated_at}'::text[])
    is distinct from (to_jsonb(new) - '{generation_count,last_used_at,updated_at}'::text[]))
  execute function private.broadcast_change();
