-- The record-then-edit flow: a user uploads a recording and inserts a transcription;
-- a `transcribe` task (its own queue) has the listener validate the recording (as a
-- clone's), transcribe it and store its normalised audio; the row ends `completed`
-- with `text` and `detected_language`, broadcast to `user:<uid>` like other work.
-- The user edits the text and inserts a voice with the SAME id and recording key,
-- reusing the upload. Free of credits (recognition is cheap next to synthesis and it
-- serves cloning, which is free); bounded by the unfinished-task limit like all work.

select pgmq.create('transcribe');

create table public.transcriptions (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null default auth.uid() references auth.users (id) on delete cascade,
  -- Key in bucket `references`: <user id>/<transcription id>/reference.<wav|mp3|m4a>,
  -- the key a voice with this id would use, so the same upload can become a voice.
  audio_object_key text not null,
  -- A hint: 'Auto' lets the recogniser detect the language.
  language text not null default 'Auto' references public.languages (name),
  status text not null default 'pending'
    constraint transcriptions_status check (status in ('pending', 'processing', 'completed', 'failed', 'cancelled')),
  text text,
  detected_language text,
  duration_seconds real,
  error text,
  task_id uuid unique references public.tasks (id) on delete set null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint transcriptions_completed_has_text check (status <> 'completed' or text is not null)
);
create index transcriptions_user_created on public.transcriptions (user_id, created_at desc, id);

-- A transcribe task has no subject column on tasks: its transcription points at it.
alter table public.tasks drop constraint tasks_type;
alter table public.tasks add constraint tasks_type
  check (type in ('generate', 'design_preview', 'clone', 'transcribe'));
alter table public.tasks drop constraint tasks_one_subject;
alter table public.tasks add constraint tasks_one_subject check (
  (type = 'generate' and design_preview_id is null and voice_id is null)
  or (type = 'design_preview' and generation_id is null and voice_id is null)
  or (type = 'clone' and generation_id is null and design_preview_id is null)
  or (type = 'transcribe' and generation_id is null and design_preview_id is null and voice_id is null)
);

-- Transcription is free, like the clone job it serves, and rate-limited like a clone.
alter table public.rate_card drop constraint rate_card_task_type;
alter table public.rate_card add constraint rate_card_task_type
  check (task_type in ('generate', 'design_preview', 'clone', 'transcribe'));
insert into public.rate_card (task_type, credits, per_characters, description) values
  ('transcribe', 0, null, 'transcribing a recording is free');
alter table private.request_limits drop constraint request_limits_task_type;
alter table private.request_limits add constraint request_limits_task_type
  check (task_type in ('generate', 'design_preview', 'clone', 'transcribe'));
insert into private.request_limits (task_type, max_requests, per_window) values
  ('transcribe', 20, '1 hour');

-- Inserts from the browser -----------------------------------------------------

create function private.before_transcription_insert() returns trigger
language plpgsql security definer set search_path = '' as $$
declare
  expected_prefix text;
begin
  new.user_id := private.inserting_user(new.user_id);
  new.id := coalesce(new.id, gen_random_uuid());
  new.language := coalesce(new.language, 'Auto');
  perform private.check_language(new.language, false);
  expected_prefix := new.user_id || '/' || new.id || '/reference.';
  if new.audio_object_key is null
     or left(new.audio_object_key, char_length(expected_prefix)) <> expected_prefix
     or lower(substr(new.audio_object_key, char_length(expected_prefix) + 1)) not in ('wav', 'mp3', 'm4a') then
    perform private.invalid(
      format('audio_object_key must be %s<wav|mp3|m4a>, got %L', expected_prefix, new.audio_object_key),
      'Choose the transcription id first, upload to that key in bucket references, then insert with the same id.');
  end if;
  if not exists (select 1 from storage.objects o
                 where o.bucket_id = 'references' and o.name = new.audio_object_key) then
    perform private.invalid(format('no uploaded recording at references/%s', new.audio_object_key),
      'Upload the recording before inserting the transcription.');
  end if;
  new.status := 'pending';
  new.text := null;
  new.detected_language := null;
  new.duration_seconds := null;
  new.error := null;
  new.created_at := now();
  new.updated_at := now();
  -- The task row has no link to this one, so it can be made first.
  new.task_id := private.open_task(new.user_id, 'transcribe', new.id);
  return new;
end
$$;
create trigger transcriptions_before_insert before insert on public.transcriptions
  for each row execute function private.before_transcription_insert();

-- The transcription follows its task (as generations and previews do).
create function private.after_transcribe_task_update() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  update public.transcriptions
  set status = new.status, error = new.error, updated_at = now()
  where task_id = new.id and status is distinct from new.status and status <> 'completed';
  return null;
end
$$;
create trigger tasks_after_update_transcription after update on public.tasks
  for each row when (new.type = 'transcribe' and new.status is distinct from old.status)
  execute function private.after_transcribe_task_update();

-- After the row is gone, so the task's cancel finds nothing to update. The recording
-- and its normalised audio stay when a voice was made from them (same id).
create function private.after_transcription_delete() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  if old.task_id is not null then
    perform private.cancel_task(old.task_id, 'transcription deleted');
  end if;
  if not exists (select 1 from public.voices v where v.id = old.id) then
    perform private.remove_objects('references',
      array[old.audio_object_key]
      || array(select o.name from storage.objects o
               where o.bucket_id = 'references' and o.name like old.user_id || '/' || old.id || '/%'));
  end if;
  return null;
end
$$;
create trigger transcriptions_after_delete after delete on public.transcriptions
  for each row execute function private.after_transcription_delete();

-- Where the listener stores a transcription's normalised recording: where a voice
-- with the same id keeps its own. Unchanged for the other task types.
create or replace function private.output_object(task public.tasks) returns jsonb
language plpgsql stable set search_path = '' as $$
begin
  return case task.type
    when 'generate' then jsonb_build_object(
      'bucket', 'generations', 'key', task.user_id || '/' || task.generation_id || '.wav')
    when 'design_preview' then jsonb_build_object(
      'bucket', 'references', 'key', task.user_id || '/previews/' || task.design_preview_id || '.wav')
    when 'clone' then jsonb_build_object(
      'bucket', 'references', 'key', task.user_id || '/' || task.voice_id || '/normalized.wav')
    when 'transcribe' then (
      select jsonb_build_object('bucket', 'references', 'key', task.user_id || '/' || t.id || '/normalized.wav')
      from public.transcriptions t where t.task_id = task.id)
  end;
end
$$;

-- private.job_description with a branch for transcribe tasks; the other branches are
-- unchanged.
create or replace function private.job_description(task public.tasks) returns jsonb
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
  elsif task.type = 'transcribe' then
    -- 'text' is the empty text the job starts from: worker.claim_task takes a job of a
    -- type other than clone without one as having lost its inputs.
    select jsonb_build_object('transcription_id', t.id, 'audio_object_key', t.audio_object_key,
                              'language', t.language, 'text', '')
    into inputs
    from public.transcriptions t where t.task_id = task.id;
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

-- The listener's API -----------------------------------------------------------

-- The worker's queues (read_messages, archive_message, claim_task and claim_next all
-- check this list), with 'transcribe' added.
create or replace function private.check_worker_queue(queue text) returns void
language plpgsql immutable set search_path = '' as $$
begin
  if queue is null or queue not in ('generate', 'design_preview', 'clone', 'transcribe', 'storage_cleanup') then
    raise exception using errcode = '22023', message = format('unknown queue %L', queue);
  end if;
end
$$;

create or replace function worker.queue_metrics()
returns table (queue text, waiting bigint, oldest_seconds integer, total_sent bigint)
language sql security definer set search_path = '' as $$
  select m.queue_name::text, m.queue_length, m.oldest_msg_age_sec, m.total_messages
  from pgmq.metrics_all() m
  where m.queue_name in ('generate', 'design_preview', 'clone', 'transcribe', 'storage_cleanup')
$$;

-- The transcript (and the recording's length) of a running transcribe task, written before the task completes
-- (worker.complete_task then stores nothing more for it). Outcomes: recorded, or the
-- task's status (or claimed_elsewhere) when this listener no longer runs it.
create function worker.record_transcription(
  task_id uuid, worker_id text, transcript text, language text, duration_seconds real
) returns text
language plpgsql security definer set search_path = '' as $$
declare
  task public.tasks;
begin
  select * into task from public.tasks t where t.id = task_id for update;
  if not found then
    return 'missing';
  end if;
  if task.type <> 'transcribe' then
    raise exception using errcode = '22023',
      message = format('task %s is a %s task, not a transcription', task.id, task.type);
  end if;
  if task.status <> 'processing' then
    return task.status;
  end if;
  if task.claimed_by is distinct from worker_id then
    return 'claimed_elsewhere';
  end if;
  if record_transcription.transcript is null or btrim(record_transcription.transcript) = '' then
    raise exception using errcode = '22023', message = 'a transcription needs its text';
  end if;
  update public.transcriptions t
  set text = btrim(record_transcription.transcript),
      detected_language = nullif(btrim(record_transcription.language), ''),
      duration_seconds = record_transcription.duration_seconds, updated_at = now()
  where t.task_id = task.id;
  return 'recorded';
end
$$;

-- Who may do what ----------------------------------------------------------------

alter table public.transcriptions enable row level security;
grant select, delete on public.transcriptions to authenticated;
grant insert (id, user_id, audio_object_key, language) on public.transcriptions to authenticated;
create policy "users read their own transcriptions" on public.transcriptions
  for select to authenticated using (user_id = (select auth.uid()));
create policy "users create their own transcriptions" on public.transcriptions
  for insert to authenticated with check (user_id = (select auth.uid()));
create policy "users delete their own transcriptions" on public.transcriptions
  for delete to authenticated using (user_id = (select auth.uid()));

create trigger broadcast_changes after insert or update or delete on public.transcriptions
  for each row execute function private.broadcast_change();
alter publication supabase_realtime add table public.transcriptions;

revoke all on all functions in schema private from public, anon, authenticated, service_role;
revoke all on all functions in schema worker from public, anon, authenticated, service_role;
grant execute on all functions in schema worker to utter_worker;
