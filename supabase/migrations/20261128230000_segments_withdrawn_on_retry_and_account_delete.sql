-- Streamed segments (20261128200000) under two more ways a generation's attempt ends
-- without its task ending:
--
-- A new attempt. A retry (fail_task with retryable, back to pending), a release (the
-- listener stopping), or another listener taking over a lapsed claim all start the
-- audio again: sampling differs from attempt to attempt, so the next attempt's segment
-- n is not the last one's. The announcements of the attempt that ended are withdrawn
-- then, in the same transaction, so a client never mixes two attempts; the task's own
-- update (status back to pending, or attempts up by one) is what tells the client, and
-- the next attempt announces its segments afresh, as INSERTs. The objects stay where
-- they are: the next attempt writes the same keys, the task's end removes whatever is
-- under the folder, and meanwhile no row names them, so no one can read them.
--
-- An account deleted while a generation streams. Cancelling its task skips the task's
-- update while the account goes (20261127000200, private.cancel_task), so the task's
-- end never removes the segments: the generation's own delete does, with its audio.

create function private.after_attempt_end_withdraw_segments() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  delete from public.generation_segments s where s.generation_id = new.generation_id;
  return null;
end
$$;
create trigger tasks_after_attempt_end_withdraw_segments after update on public.tasks
  for each row
  when (new.type = 'generate' and new.generation_id is not null
        and new.status in ('pending', 'processing')
        and ((old.status = 'processing' and new.status = 'pending')
             or old.attempts is distinct from new.attempts))
  execute function private.after_attempt_end_withdraw_segments();

create or replace function private.before_generation_delete() returns trigger
language plpgsql security definer set search_path = '' as $$
declare
  task_id uuid;
begin
  for task_id in select id from public.tasks where generation_id = old.id and status in ('pending', 'processing') loop
    perform private.cancel_task(task_id, 'generation deleted', detach => true);
  end loop;
  -- Otherwise the cancel above ended the task, and the task's end removed them.
  perform private.remove_objects('generations',
    array[old.audio_object_key, old.user_id || '/' || old.id || '.wav']
    || case when exists (select 1 from auth.users u where u.id = old.user_id) then '{}'::text[]
            else private.segment_objects(old.user_id, old.id) end);
  return old;
end
$$;

revoke all on all functions in schema private from public, anon, authenticated, service_role;
