-- Exactly-once effects under faults.
--
-- 1. A claim means something: claim_task tells a listener's own lapsed claim (it is
--    still, or again, running the task: no new attempt) from another listener's.
-- 2. No output outlives its task: a listener reports every output it stored through
--    complete_task, and whenever that output is not (or no longer) the live output of a
--    completed subject, the cleanup is queued in the same transaction as the answer, so
--    a crash after the answer cannot leave it behind.
-- 3. A retry starts a fresh remote call: fail_task forgets the failed call.
-- 4. Every worker function that names a queue checks it against the worker's queues,
--    and every number a worker passes in must be finite.

-- Where each claimed task's attempts store their output, kept apart from the subject
-- so that it survives the subject's deletion (which detaches the task): a late result
-- for a deleted subject still knows which object to remove.
create table private.task_outputs (
  task_id uuid primary key references public.tasks (id) on delete cascade,
  bucket text not null,
  object_key text not null
);
alter table private.task_outputs enable row level security;
revoke all on private.task_outputs from public, anon, authenticated, service_role;

-- The queues a worker may touch, for read_messages and archive_message; claim_task
-- and claim_next check through read_messages, so a later migration that adds a queue
-- to read_messages' list adds it for them too.
create function private.check_worker_queue(queue text) returns void
language plpgsql immutable set search_path = '' as $$
begin
  if queue is null or queue not in ('generate', 'design_preview', 'clone', 'storage_cleanup') then
    raise exception using errcode = '22023', message = format('unknown queue %L', queue);
  end if;
end
$$;

-- A task's queue: one of the worker's queues (the list worker.read_messages checks,
-- which is where a new kind of task adds its queue), other than the cleanup queue.
create function private.check_task_queue(queue text) returns void
language plpgsql security definer set search_path = '' as $$
begin
  if queue = 'storage_cleanup' then
    raise exception using errcode = '22023',
      message = 'queue ''storage_cleanup'' carries no tasks; read it with read_messages';
  end if;
  -- Reads nothing: only the queue check runs.
  perform 1 from worker.read_messages(queue, 0, 0);
end
$$;

-- Finite numbers only: NaN compares greater than every number in Postgres, so range
-- checks alone let it (and infinity) through.
create function private.check_finite(label text, candidate double precision) returns void
language plpgsql immutable set search_path = '' as $$
begin
  if candidate is not null and candidate in ('NaN'::double precision, 'Infinity', '-Infinity') then
    raise exception using errcode = '22023',
      message = format('%s must be a finite number, got %s', label, candidate);
  end if;
end
$$;

create or replace function worker.read_messages(queue text, visibility_seconds integer, quantity integer)
returns table (msg_id bigint, read_ct integer, enqueued_at timestamptz, message jsonb)
language plpgsql security definer set search_path = '' as $$
begin
  perform private.check_worker_queue(queue);
  return query
    select m.msg_id, m.read_ct, m.enqueued_at, m.message
    from pgmq.read(queue, visibility_seconds, quantity) m;
end
$$;

create or replace function worker.archive_message(queue text, msg_id bigint) returns boolean
language plpgsql security definer set search_path = '' as $$
begin
  perform private.check_worker_queue(queue);
  return pgmq.archive(queue, msg_id);
end
$$;

-- Claims the task a message names. Outcomes:
--   claimed        run it (job in `job`); `reattached` is true when the task was
--                  already this worker's (its claim lapsed, e.g. through a database
--                  outage longer than the visibility timeout): no new attempt is
--                  counted, and a listener that is still running it must not start it
--                  again. A claim of another worker's lapsed task is a new attempt.
--   ended          already completed, failed or cancelled: the message was archived
--   missing        no such task: the message was archived
--   gave_up        the attempt limit was reached (the listener died each time): failed
--   wrong_queue    the task belongs to another queue: the message was archived
create or replace function worker.claim_task(
  queue text, msg_id bigint, task_id uuid, worker_id text, max_attempts integer
) returns jsonb
language plpgsql security definer set search_path = '' as $$
declare
  task public.tasks;
  job jsonb;
  reattached boolean;
begin
  perform private.check_task_queue(queue);
  if worker_id is null or worker_id = '' then
    raise exception using errcode = '22023', message = 'claim_task needs a worker_id';
  end if;
  select * into task from public.tasks t where t.id = task_id for update;
  if not found then
    perform pgmq.archive(queue, msg_id);
    return jsonb_build_object('outcome', 'missing');
  end if;
  if task.type <> queue then
    -- A message in the wrong queue (a bug or a forgery): dead-letter it and leave the
    -- task, whose own message is in its own queue, alone.
    perform pgmq.archive(queue, msg_id);
    return jsonb_build_object('outcome', 'wrong_queue', 'task_type', task.type);
  end if;
  if task.status in ('completed', 'failed', 'cancelled') then
    perform pgmq.archive(queue, msg_id);
    return jsonb_build_object('outcome', 'ended', 'status', task.status);
  end if;

  reattached := task.status = 'processing' and task.claimed_by = worker_id;
  if not reattached and task.attempts >= max_attempts then
    update public.tasks t
    set status = 'failed',
        error = format('gave up after %s attempts: %s', task.attempts,
                       coalesce(task.error, 'the listener stopped while running it each time'))
    where t.id = task.id;
    perform pgmq.archive(queue, msg_id);
    return jsonb_build_object('outcome', 'gave_up');
  end if;

  update public.tasks t
  set status = 'processing',
      attempts = t.attempts + case when reattached then 0 else 1 end,
      claimed_by = worker_id, msg_id = claim_task.msg_id,
      started_at = coalesce(t.started_at, now()), heartbeat_at = now()
  where t.id = task.id
  returning * into task;
  job := private.job_description(task);
  if job is null or (task.type <> 'clone' and job ->> 'text' is null) or
     (task.type = 'generate' and job #>> '{voice,reference_object_key}' is null) then
    update public.tasks t set status = 'failed', error = 'the task''s inputs are gone'
    where t.id = task.id;
    perform pgmq.archive(queue, msg_id);
    return jsonb_build_object('outcome', 'ended', 'status', 'failed');
  end if;
  insert into private.task_outputs (task_id, bucket, object_key)
  values (task.id, job #>> '{output,bucket}', job #>> '{output,key}')
  on conflict on constraint task_outputs_pkey do nothing;
  return jsonb_build_object('outcome', 'claimed', 'reattached', reattached, 'job', job);
end
$$;

create or replace function worker.claim_next(
  queue text, visibility_seconds integer, quantity integer, worker_id text, max_attempts integer
) returns table (msg_id bigint, enqueued_at timestamptz, claim jsonb)
language plpgsql security definer set search_path = '' as $$
declare
  message record;
  task_id uuid;
begin
  perform private.check_task_queue(queue);
  for message in select * from worker.read_messages(queue, visibility_seconds, quantity) loop
    msg_id := message.msg_id;
    enqueued_at := message.enqueued_at;
    task_id := private.uuid_or_null(message.message ->> 'task_id');
    if task_id is null then
      perform pgmq.archive(queue, message.msg_id);
      claim := jsonb_build_object('outcome', 'malformed', 'message', message.message);
    else
      claim := worker.claim_task(queue, message.msg_id, task_id, worker_id, max_attempts);
    end if;
    return next;
  end loop;
end
$$;

create or replace function worker.heartbeat(
  task_id uuid, worker_id text, progress real default null, extend_seconds integer default null
) returns text
language plpgsql security definer set search_path = '' as $$
declare
  task public.tasks;
begin
  perform private.check_finite('progress', heartbeat.progress);
  select * into task from public.tasks t where t.id = task_id for update;
  if not found then
    return 'missing';
  end if;
  if task.status <> 'processing' then
    return task.status;
  end if;
  if task.claimed_by is distinct from worker_id then
    return 'claimed_elsewhere';
  end if;
  update public.tasks t
  set heartbeat_at = now(),
      progress = coalesce(least(greatest(heartbeat.progress, 0), 1), t.progress)
  where t.id = task.id;
  if extend_seconds is not null and task.msg_id is not null then
    perform pgmq.set_vt(task.type, task.msg_id, extend_seconds);
  end if;
  return 'processing';
end
$$;

-- Whether an object at the task's output key is wanted: the task may still adopt it
-- (pending or processing), or it is the audio of the task's live, completed subject
-- (for a preview: or of a voice saved from it).
create function private.output_is_live(task public.tasks, object_key text) returns boolean
language plpgsql stable security definer set search_path = '' as $$
begin
  if task.status in ('pending', 'processing') then
    return true;
  end if;
  if task.status <> 'completed' then
    return false;
  end if;
  return case task.type
    when 'generate' then exists (
      select from public.generations g
      where g.id = task.generation_id and g.audio_object_key = object_key)
    -- A saved preview's audio is its voice's too, and outlives the preview.
    when 'design_preview' then exists (
      select from public.design_previews p
      where p.id = task.design_preview_id and p.audio_object_key = object_key) or exists (
      select from public.voices v
      where v.user_id = task.user_id
        and object_key in (v.reference_object_key, v.normalized_object_key))
    else exists (
      select from public.voices v
      where v.id = task.voice_id and v.normalized_object_key = object_key)
  end;
end
$$;

-- Settles a task with the output the caller stored at the task's output key and
-- archives its message, atomically. result: {"duration_seconds": n,
-- "generation_seconds": n}, both finite. Outcomes:
--   completed          the output is adopted
--   already_completed, cancelled, failed
--                      the task ended meanwhile; when the stored object is not the
--                      live output of a completed subject (e.g. the subject was deleted,
--                      or the task was cancelled while the audio was being stored), its
--                      removal is queued here, in the answer's transaction: nothing the
--                      caller does afterwards, crashing included, can leave it behind
--   not_running        back in the queue: a later attempt overwrites the same key or,
--                      should the task end, its end removes it
--   missing            no such task: the caller removes what it stored
create or replace function worker.complete_task(task_id uuid, worker_id text, result jsonb)
returns text
language plpgsql security definer set search_path = '' as $$
declare
  task public.tasks;
  output jsonb;
  duration double precision;
  run_seconds double precision;
begin
  if jsonb_typeof(result) is distinct from 'object' then
    raise exception using errcode = '22023',
      message = format('complete_task needs a result object, got %s', coalesce(result::text, 'null'));
  end if;
  duration := private.number_or_error('duration_seconds', result -> 'duration_seconds');
  run_seconds := private.number_or_error('generation_seconds', result -> 'generation_seconds');

  select * into task from public.tasks t where t.id = task_id for update;
  if not found then
    return 'missing';
  end if;
  if task.status in ('completed', 'failed', 'cancelled') then
    select jsonb_build_object('bucket', o.bucket, 'key', o.object_key) into output
    from private.task_outputs o where o.task_id = task.id;
    output := coalesce(output, private.output_object(task));
    if not private.output_is_live(task, output ->> 'key') then
      perform private.remove_objects(output ->> 'bucket', array[output ->> 'key']);
    end if;
    return case task.status when 'completed' then 'already_completed' else task.status end;
  end if;
  if task.status <> 'processing' then
    return 'not_running';
  end if;
  if task.claimed_by is distinct from worker_id then
    -- A listener whose claim lapsed finished first: the output key is the same for
    -- every attempt, so its result stands and the current claimer's complete is a no-op.
    raise log 'task % completed by % while claimed by %', task.id, worker_id, task.claimed_by;
  end if;
  if duration is null or duration <= 0 then
    raise exception using errcode = '22023',
      message = format('complete_task needs a positive duration_seconds, got %s', result);
  end if;
  if run_seconds is not null and run_seconds < 0 then
    raise exception using errcode = '22023',
      message = format('complete_task needs a non-negative generation_seconds, got %s', result);
  end if;
  output := private.output_object(task);

  if task.type = 'generate' then
    update public.generations g
    set status = 'completed', audio_object_key = output ->> 'key', duration_seconds = duration,
        generation_seconds = run_seconds,
        completed_at = now(), updated_at = now(), error = null
    where g.id = task.generation_id;
  elsif task.type = 'design_preview' then
    update public.design_previews p
    set status = 'completed', audio_object_key = output ->> 'key', duration_seconds = duration,
        updated_at = now(), error = null
    where p.id = task.design_preview_id;
  else
    update public.voices v
    set status = 'ready', normalized_object_key = output ->> 'key',
        reference_duration_seconds = duration, updated_at = now(), error = null
    where v.id = task.voice_id;
  end if;

  update public.tasks t set status = 'completed', error = null where t.id = task.id;
  if task.msg_id is not null then
    perform pgmq.archive(task.type, task.msg_id);
  end if;
  return 'completed';
end
$$;

-- A JSON number (or null when absent) as a finite double, or a clear error. JSON has
-- no NaN, but a string "NaN" would cast to one.
create function private.number_or_error(label text, candidate jsonb) returns double precision
language plpgsql immutable set search_path = '' as $$
declare
  number double precision;
begin
  if candidate is null or jsonb_typeof(candidate) = 'null' then
    return null;
  end if;
  if jsonb_typeof(candidate) <> 'number' then
    raise exception using errcode = '22023',
      message = format('%s must be a JSON number, got %s', label, candidate);
  end if;
  begin
    number := (candidate #>> '{}')::double precision;
  exception when numeric_value_out_of_range then
    raise exception using errcode = '22023',
      message = format('%s must be a finite number; it is out of range', label);
  end;
  perform private.check_finite(label, number);
  return number;
end
$$;

-- A failed attempt. Retryable failures with attempts left go back to the queue after
-- `retry_delay_seconds`, forgetting the remote call: the call failed, timed out or was
-- cancelled, so re-attaching to it would only read the same error again; the next
-- attempt starts a fresh one. The rest fail the task (refunded) and dead-letter the
-- message. Outcomes: retrying, failed, claimed_elsewhere, or the status the task had
-- already ended with.
create or replace function worker.fail_task(
  task_id uuid, worker_id text, reason text, retryable boolean,
  retry_delay_seconds integer, max_attempts integer
) returns text
language plpgsql security definer set search_path = '' as $$
declare
  task public.tasks;
begin
  select * into task from public.tasks t where t.id = task_id for update;
  if not found then
    return 'missing';
  end if;
  if task.status in ('completed', 'failed', 'cancelled') then
    return task.status;
  end if;
  if task.claimed_by is distinct from worker_id then
    return 'claimed_elsewhere';  -- a lapsed claim must not undo the current one
  end if;
  if retryable and task.attempts < max_attempts then
    update public.tasks t
    set status = 'pending', error = reason, claimed_by = null, progress = 0,
        engine_call_id = null
    where t.id = task.id;
    if task.msg_id is not null then
      perform pgmq.set_vt(task.type, task.msg_id, greatest(retry_delay_seconds, 0));
    end if;
    return 'retrying';
  end if;
  update public.tasks t
  set status = 'failed',
      error = case when retryable then format('%s (gave up after %s attempts)', reason, task.attempts)
                   else reason end
  where t.id = task.id;
  if task.msg_id is not null then
    perform pgmq.archive(task.type, task.msg_id);
  end if;
  return 'failed';
end
$$;

revoke all on all functions in schema private from public, anon, authenticated, service_role;
revoke all on all functions in schema worker from public;
grant execute on all functions in schema worker to utter_worker;
