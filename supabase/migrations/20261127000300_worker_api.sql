-- The listener's API. Role utter_worker may execute these and nothing else: it never
-- touches pgmq, the tables or the ledger directly. Every function checks the task's
-- current state under a row lock, so calls are safe to repeat and to race:
-- a second `complete_task` is a no-op, a late one after a cancel is refused.

-- Reads up to `quantity` messages of one queue, hiding them for `visibility_seconds`.
create function worker.read_messages(queue text, visibility_seconds integer, quantity integer)
returns table (msg_id bigint, read_ct integer, enqueued_at timestamptz, message jsonb)
language plpgsql security definer set search_path = '' as $$
begin
  if queue not in ('generate', 'design_preview', 'clone', 'storage_cleanup') then
    raise exception using errcode = '22023', message = format('unknown queue %L', queue);
  end if;
  return query
    select m.msg_id, m.read_ct, m.enqueued_at, m.message
    from pgmq.read(queue, visibility_seconds, quantity) m;
end
$$;

-- Dead-letters or finishes a message that has no task to settle (malformed messages,
-- storage cleanup jobs). pgmq's archive keeps it for inspection.
create function worker.archive_message(queue text, msg_id bigint) returns boolean
language plpgsql security definer set search_path = '' as $$
begin
  if queue not in ('generate', 'design_preview', 'clone', 'storage_cleanup') then
    raise exception using errcode = '22023', message = format('unknown queue %L', queue);
  end if;
  return pgmq.archive(queue, msg_id);
end
$$;

-- What a listener needs to run a claimed task: inputs, where to store the output, and
-- a remote call to re-attach to.
create function private.job_description(task public.tasks) returns jsonb
language plpgsql stable security definer set search_path = '' as $$
declare
  inputs jsonb;
begin
  if task.type = 'generate' then
    select jsonb_build_object(
      'generation_id', g.id, 'text', g.text, 'language', g.language,
      'voice', jsonb_build_object(
        'id', v.id, 'reference_object_key', v.normalized_object_key,
        'reference_transcript', v.reference_transcript, 'language', v.language))
    into inputs
    from public.generations g join public.voices v on v.id = g.voice_id
    where g.id = task.generation_id;
  elsif task.type = 'design_preview' then
    select jsonb_build_object('design_preview_id', p.id, 'instruct', p.instruct,
                              'text', p.text, 'language', p.language)
    into inputs
    from public.design_previews p where p.id = task.design_preview_id;
  else
    select jsonb_build_object('voice_id', v.id, 'reference_object_key', v.reference_object_key,
                              'reference_transcript', v.reference_transcript, 'language', v.language)
    into inputs
    from public.voices v where v.id = task.voice_id;
  end if;
  -- Null when the subject is gone: the claim then fails the task.
  return jsonb_build_object(
    'task_id', task.id, 'type', task.type, 'user_id', task.user_id,
    'attempt', task.attempts, 'resume_call_id', task.engine_call_id,
    'output', private.output_object(task)
  ) || inputs;
end
$$;

-- Claims the task a message names. Outcomes:
--   claimed        run it (job in `job`); a re-claim after a crash resumes it
--   ended          already completed, failed or cancelled: the message was archived
--   missing        no such task: the message was archived
--   gave_up        the attempt limit was reached (the listener died each time): failed
--   wrong_queue    the task belongs to another queue: the message was archived
create function worker.claim_task(
  queue text, msg_id bigint, task_id uuid, worker_id text, max_attempts integer
) returns jsonb
language plpgsql security definer set search_path = '' as $$
declare
  task public.tasks;
  job jsonb;
begin
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
  if task.attempts >= max_attempts then
    update public.tasks t
    set status = 'failed',
        error = format('gave up after %s attempts: %s', task.attempts,
                       coalesce(task.error, 'the listener stopped while running it each time'))
    where t.id = task.id;
    perform pgmq.archive(queue, msg_id);
    return jsonb_build_object('outcome', 'gave_up');
  end if;

  update public.tasks t
  set status = 'processing', attempts = t.attempts + 1, claimed_by = worker_id,
      msg_id = claim_task.msg_id, started_at = coalesce(t.started_at, now()), heartbeat_at = now()
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
  return jsonb_build_object('outcome', 'claimed', 'job', job);
end
$$;

-- Reads up to `quantity` messages and claims the task of each, in one round trip: the
-- listener's pickup path. One row per message read, with claim_task's outcome, or
-- `malformed` (no task id; the message was archived).
create function worker.claim_next(
  queue text, visibility_seconds integer, quantity integer, worker_id text, max_attempts integer
) returns table (msg_id bigint, enqueued_at timestamptz, claim jsonb)
language plpgsql security definer set search_path = '' as $$
declare
  message record;
  task_id uuid;
begin
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

create function private.uuid_or_null(candidate text) returns uuid
language plpgsql immutable set search_path = '' as $$
begin
  if candidate ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
    return candidate::uuid;
  end if;
  return null;
end
$$;

-- Progress and liveness. Extends the message's invisibility so no other listener takes
-- the task while this one works on it. Returns the task's status: anything but
-- 'processing' (or another claimer) tells the listener to stop.
create function worker.heartbeat(
  task_id uuid, worker_id text, progress real default null, extend_seconds integer default null
) returns text
language plpgsql security definer set search_path = '' as $$
declare
  task public.tasks;
begin
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

-- Records the remote call (e.g. a Modal FunctionCall id) so a re-claim re-attaches.
create function worker.record_engine_call(task_id uuid, worker_id text, call_id text) returns boolean
language plpgsql security definer set search_path = '' as $$
begin
  update public.tasks t set engine_call_id = call_id
  where t.id = task_id and t.status = 'processing' and t.claimed_by = worker_id;
  return found;
end
$$;

-- Settles a task with its stored output and archives its message, atomically.
-- result: {"duration_seconds": n, "generation_seconds": n}. Outcomes:
--   completed, already_completed (no write), cancelled / failed (ended meanwhile: the
--   caller must delete the object it stored), not_running (never claimed).
create function worker.complete_task(task_id uuid, worker_id text, result jsonb) returns text
language plpgsql security definer set search_path = '' as $$
declare
  task public.tasks;
  output jsonb;
  duration real := (result ->> 'duration_seconds')::real;
begin
  select * into task from public.tasks t where t.id = task_id for update;
  if not found then
    return 'missing';
  end if;
  if task.status = 'completed' then
    return 'already_completed';
  end if;
  if task.status in ('failed', 'cancelled') then
    return task.status;
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
  output := private.output_object(task);

  if task.type = 'generate' then
    update public.generations g
    set status = 'completed', audio_object_key = output ->> 'key', duration_seconds = duration,
        generation_seconds = (result ->> 'generation_seconds')::real,
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

-- A failed attempt. Retryable failures with attempts left go back to the queue after
-- `retry_delay_seconds`; the rest fail the task (refunded) and dead-letter the message.
-- Outcomes: retrying, failed, or the status the task had already ended with.
create function worker.fail_task(
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
    set status = 'pending', error = reason, claimed_by = null, progress = 0
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

-- Hands a running task back on shutdown: visible again at once, and the attempt that
-- was interrupted does not count against the limit.
create function worker.release_task(task_id uuid, worker_id text) returns text
language plpgsql security definer set search_path = '' as $$
declare
  task public.tasks;
begin
  select * into task from public.tasks t where t.id = task_id for update;
  if not found then
    return 'missing';
  end if;
  if task.status <> 'processing' or task.claimed_by is distinct from worker_id then
    return task.status;
  end if;
  update public.tasks t
  set status = 'pending', claimed_by = null, attempts = greatest(t.attempts - 1, 0)
  where t.id = task.id;
  if task.msg_id is not null then
    perform pgmq.set_vt(task.type, task.msg_id, 0);
    perform pg_notify('utter_jobs', task.type);  -- another listener takes it now
  end if;
  return 'released';
end
$$;

-- Storage bookkeeping for the local object store, so the same storage.objects rows
-- (and policies) exist as with Supabase Storage.
create function worker.record_object(
  bucket text, object_key text, size_bytes bigint, mimetype text, owner_id uuid
) returns void
language sql security definer set search_path = '' as $$
  insert into storage.objects (bucket_id, name, owner, owner_id, metadata)
  values (bucket, object_key, owner_id, owner_id::text,
          jsonb_build_object('size', size_bytes, 'mimetype', mimetype))
  on conflict (bucket_id, name) do update
  set metadata = excluded.metadata, updated_at = now()
$$;

create function worker.forget_object(bucket text, object_key text) returns void
language sql security definer set search_path = '' as $$
  delete from storage.objects where bucket_id = bucket and name = object_key
$$;

-- For health/metrics: depth and age of each queue.
create function worker.queue_metrics()
returns table (queue text, waiting bigint, oldest_seconds integer, total_sent bigint)
language sql security definer set search_path = '' as $$
  select m.queue_name::text, m.queue_length, m.oldest_msg_age_sec, m.total_messages
  from pgmq.metrics_all() m
  where m.queue_name in ('generate', 'design_preview', 'clone', 'storage_cleanup')
$$;

revoke all on all functions in schema worker from public;
grant execute on all functions in schema worker to utter_worker;
