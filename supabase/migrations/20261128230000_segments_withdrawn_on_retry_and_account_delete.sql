-- Streamed segments (20261128200000) when a generation's audio is rendered again before
-- its task ends, and when its account is deleted while it streams.
--
-- Rendered again. Speech is sampled, so a new rendering's segment n is not the last
-- one's. Each segment row now names the rendering that made it (`rendered_by`: the
-- engine call it came from, hashed, or the attempt when the engine runs in-process), and
-- a segment of a new rendering withdraws every segment of another one as it is recorded,
-- so a generation's announced segments always come from one rendering; the new ones
-- arrive as INSERTs from index 0. A listener that takes over a lapsed claim or a
-- released task and re-attaches to the same engine call continues the same rendering:
-- its segments stay. A task that goes back to the queue with no engine call to
-- re-attach to (a retry, which forgets the call, or a release of in-process work) will
-- be rendered again for certain, so its segments are withdrawn there and then. The
-- objects stay where they are: the next rendering writes the same keys, the task's end
-- removes whatever is under the folder, and meanwhile no row names them, so no one can
-- read them.
--
-- An account deleted while a generation streams. Cancelling its task skips the task's
-- update while the account goes (20261127000200, private.cancel_task), so the task's
-- end never removes the segments: the generation's own delete does, with its audio.

alter table public.generation_segments add column rendered_by text not null default '';
comment on column public.generation_segments.rendered_by is
  'The rendering that made the segment (a hash of the engine call, or the attempt): a '
  'segment of another rendering withdraws it.';

create function private.rendering_of(task public.tasks) returns text
language plpgsql immutable set search_path = '' as $$
begin
  return case when task.engine_call_id is not null then md5(task.engine_call_id)
              else 'attempt ' || task.attempts end;
end
$$;

create function private.before_segment_recorded() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  select private.rendering_of(t) into new.rendered_by from public.tasks t where t.id = new.task_id;
  delete from public.generation_segments s
  where s.generation_id = new.generation_id and s.rendered_by is distinct from new.rendered_by;
  return new;
end
$$;
-- BEFORE INSERT runs ahead of ON CONFLICT's check: a stale segment of the same index is
-- gone by then, so the new one is a true INSERT.
create trigger generation_segments_before_insert before insert on public.generation_segments
  for each row execute function private.before_segment_recorded();

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
        and old.status = 'processing' and new.status = 'pending' and new.engine_call_id is null)
  execute function private.after_attempt_end_withdraw_segments();

-- Beside generations_before_delete (20261127000200), which cancels the task and removes
-- the audio; BEFORE DELETE triggers fire in name order, this one after it.
create function private.before_generation_delete_remove_segments() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  -- While the account stays, the cancel ended the task, and the task's end removed them.
  if not exists (select 1 from auth.users u where u.id = old.user_id) then
    perform private.remove_objects('generations', private.segment_objects(old.user_id, old.id));
  end if;
  return old;
end
$$;
create trigger generations_before_delete_segments before delete on public.generations
  for each row execute function private.before_generation_delete_remove_segments();

revoke all on all functions in schema private from public, anon, authenticated, service_role;
