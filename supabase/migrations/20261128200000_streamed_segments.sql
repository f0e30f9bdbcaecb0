-- Streamed audio: each finished chunk of a generation is stored as a segment under the
-- generation's folder, `generations/<user id>/<generation id>/segments/<n>.wav`, and
-- announced to its owner while the rest is rendered. The final WAV is the join of the
-- segments.
--
-- Segments live only while their generation is in flight. When the task ends they are
-- removed in the transaction that ends it: a completed generation's audio is the final
-- file (the same samples, joined), so keeping the segments would double its storage;
-- a failed or cancelled one keeps no audio at all. Every way an object can get here
-- leads to its removal:
--   - announced by worker.record_segment: a row in public.generation_segments, removed
--     with the task's end (after_task_end_remove_segments; deleting a generation
--     cancels its unfinished task, and a finished one has no segments left);
--   - stored but never announced (a listener killed in between): found under the
--     generation's folder when the task ends;
--   - stored after the task ended (a lapsed listener): removed as its object row lands
--     (after_segment_stored), like late outputs (20261128190000).

create table public.generation_segments (
  generation_id uuid not null references public.generations (id) on delete cascade,
  segment_index integer not null check (segment_index >= 0),
  user_id uuid not null references auth.users (id) on delete cascade,
  task_id uuid not null references public.tasks (id) on delete cascade,
  segment_count integer not null check (segment_count > segment_index),
  object_key text not null unique,
  duration_seconds real not null check (duration_seconds > 0),
  created_at timestamptz not null default now(),
  primary key (generation_id, segment_index)
);
create index generation_segments_task on public.generation_segments (task_id);
comment on table public.generation_segments is
  'Segments of generations in flight (one per finished chunk, in text order), each playable '
  'while the rest is rendered; removed when the generation''s task ends.';

alter table public.generation_segments enable row level security;
revoke all on public.generation_segments from anon, authenticated, service_role;
grant select on public.generation_segments to authenticated;
create policy "users read their own segments" on public.generation_segments
  for select to authenticated using (user_id = (select auth.uid()));

-- Each announcement reaches the owner's topic as an INSERT (an UPDATE when a retry
-- renders the segment again), through the same trigger as every other table.
create trigger broadcast_changes after insert or update on public.generation_segments
  for each row execute function private.broadcast_change();
alter publication supabase_realtime add table public.generation_segments;

-- The owner reads a segment while it is announced, i.e. while its generation is in
-- flight; the subquery runs as the caller, so the table's policy keeps it to their rows.
create policy "users read their own announced segments" on storage.objects
  for select to authenticated
  using (
    bucket_id = 'generations'
    and (storage.foldername(name))[1] = (select auth.uid())::text
    and exists (select 1 from public.generation_segments s where s.object_key = objects.name)
  );

-- Where segment `n` of a generation lives (docs/client-contract.md).
create function private.segment_key(owner uuid, generation_id uuid, segment_index integer) returns text
language plpgsql immutable set search_path = '' as $$
begin
  return owner || '/' || generation_id || '/segments/' || segment_index || '.wav';
end
$$;

-- The folder of a generation's segments, as a LIKE prefix (uuids hold no wildcards).
create function private.segment_folder(owner uuid, generation_id uuid) returns text
language plpgsql immutable set search_path = '' as $$
begin
  return owner || '/' || generation_id || '/segments/';
end
$$;

-- Every segment object of a generation: the announced ones and any stored object
-- under its folder (one stored by a listener that died before announcing it). The
-- folder lookup is a prefix range on storage.objects' name_prefix_search index.
create function private.segment_objects(owner uuid, generation_id uuid) returns text[]
language plpgsql stable security definer set search_path = '' as $$
begin
  return array(
    select s.object_key from public.generation_segments s where s.generation_id = segment_objects.generation_id
    union
    select o.name from storage.objects o
    where o.bucket_id = 'generations' and o.name like private.segment_folder(segment_objects.owner, segment_objects.generation_id) || '%');
end
$$;

-- Records segment `segment_index` (of `segment_count`, in text order) of a generate
-- task the caller holds, stored at `object_key`, and announces it to the owner.
-- Outcomes:
--   recorded           announced (again, with the new values, when a retry re-renders it)
--   already_completed, cancelled, failed
--                      the task ended meanwhile: the object's removal is queued here, in
--                      the answer's transaction
--   not_running        back in the queue: the next attempt overwrites the same key, or
--                      the task's end removes it
--   claimed_elsewhere  another listener holds the task and writes the same key
--   missing            no such task: the caller removes what it stored
-- Bad input is 22023: a task that is not a generation, an index outside 0 ..
-- segment_count - 1, a count outside 1 .. 1000, a duration that is not a finite number
-- in (0, 600] seconds, or a key other than the segment's own.
create function worker.record_segment(
  task_id uuid, worker_id text, segment_index integer, segment_count integer,
  object_key text, duration_seconds double precision
) returns text
language plpgsql security definer set search_path = '' as $$
declare
  task public.tasks;
  expected text;
begin
  if worker_id is null or worker_id = '' then
    raise exception using errcode = '22023', message = 'record_segment needs a worker_id';
  end if;
  if segment_count is null or segment_count < 1 or segment_count > 1000 then
    raise exception using errcode = '22023',
      message = format('record_segment needs a segment_count from 1 to 1000, got %s',
                       coalesce(segment_count::text, 'null'));
  end if;
  if segment_index is null or segment_index < 0 or segment_index >= segment_count then
    raise exception using errcode = '22023',
      message = format('record_segment needs a segment_index from 0 to %s, got %s',
                       segment_count - 1, coalesce(segment_index::text, 'null'));
  end if;
  perform private.check_finite('duration_seconds', duration_seconds);
  if duration_seconds is null or duration_seconds <= 0 or duration_seconds > 600 then
    raise exception using errcode = '22023',
      message = format('record_segment needs a duration_seconds in (0, 600], got %s',
                       coalesce(duration_seconds::text, 'null'));
  end if;

  select * into task from public.tasks t where t.id = record_segment.task_id for update;
  if not found then
    return 'missing';
  end if;
  if task.type <> 'generate' then
    raise exception using errcode = '22023',
      message = format('record_segment: task %s is a %s task; only generations stream segments',
                       task.id, task.type);
  end if;
  if task.generation_id is not null then
    expected := private.segment_key(task.user_id, task.generation_id, segment_index);
    if object_key is distinct from expected then
      raise exception using errcode = '22023',
        message = format('record_segment: segment %s of task %s belongs at %s, got %s',
                         segment_index, task.id, expected, coalesce(object_key, 'null'));
    end if;
  elsif object_key is null or object_key !~ ('^' || task.user_id || '/[0-9a-f-]{36}/segments/'
                                             || segment_index || '\.wav$') then
    -- Its generation was deleted (the task is detached and ended): only a segment key
    -- of the task's owner is removed on its word.
    raise exception using errcode = '22023',
      message = format('record_segment: %s is not segment %s of a generation of task %s''s owner',
                       coalesce(object_key, 'null'), segment_index, task.id);
  end if;

  if task.status in ('completed', 'failed', 'cancelled') then
    perform private.remove_objects('generations', array[object_key]);
    return case task.status when 'completed' then 'already_completed' else task.status end;
  end if;
  if task.status <> 'processing' then
    return 'not_running';
  end if;
  if task.claimed_by is distinct from worker_id then
    return 'claimed_elsewhere';
  end if;

  insert into public.generation_segments
    (generation_id, segment_index, user_id, task_id, segment_count, object_key, duration_seconds)
  values (task.generation_id, segment_index, task.user_id, task.id, segment_count, object_key,
          duration_seconds)
  on conflict on constraint generation_segments_pkey do update
  set task_id = excluded.task_id, segment_count = excluded.segment_count,
      duration_seconds = excluded.duration_seconds, created_at = now();
  return 'recorded';
end
$$;

-- A generate task's end removes its generation's segments, in the ending transaction.
-- (A detached task, whose generation is being deleted, names it in `old`.)
create function private.after_task_end_remove_segments() returns trigger
language plpgsql security definer set search_path = '' as $$
declare
  generation uuid := coalesce(new.generation_id, old.generation_id);
  keys text[];
begin
  if generation is null then
    return null;
  end if;
  keys := private.segment_objects(new.user_id, generation);
  delete from public.generation_segments s where s.generation_id = generation;
  perform private.remove_objects('generations', keys);
  return null;
end
$$;
-- Not `update of status`: a cancel writes cancel_requested_at, and the status follows
-- from a BEFORE trigger.
create trigger tasks_after_end_remove_segments after update on public.tasks
  for each row
  when (new.type = 'generate' and old.status is distinct from new.status
        and new.status in ('completed', 'failed', 'cancelled'))
  execute function private.after_task_end_remove_segments();

-- A segment object whose row lands when its generation is no longer in flight (no
-- pending or processing task: ended, or deleted) is queued for removal at once. The
-- task row is read FOR SHARE: a concurrent end of the task either commits first (and
-- is seen here) or waits for this row to commit (and then finds it under the folder).
create function private.after_segment_stored() returns trigger
language plpgsql security definer set search_path = '' as $$
declare
  generation uuid;
begin
  if new.name !~ '^[0-9a-f-]{36}/[0-9a-f-]{36}/segments/[0-9]+\.wav$' then
    return null;
  end if;
  generation := private.uuid_or_null(split_part(new.name, '/', 2));
  if generation is null then
    return null;
  end if;
  perform 1 from public.tasks t
  where t.generation_id = generation and t.status in ('pending', 'processing')
    and t.user_id::text = split_part(new.name, '/', 1)
  for share;
  if not found then
    perform private.remove_objects('generations', array[new.name]);
  end if;
  return null;
end
$$;
create trigger utter_late_segments_removed after insert or update of name, bucket_id, metadata
  on storage.objects for each row when (new.bucket_id = 'generations')
  execute function private.after_segment_stored();

revoke all on all functions in schema private from public, anon, authenticated, service_role;
revoke all on all functions in schema worker from public, anon, authenticated, service_role;
grant execute on all functions in schema worker to utter_worker;
