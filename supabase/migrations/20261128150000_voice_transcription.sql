-- Cloning without typing: a voice may be inserted without its reference transcript.
-- The clone job then has the recording transcribed (Qwen3-ASR) and records the text
-- through worker.record_transcript before it completes; the voice becomes `ready`
-- with `transcript_source = 'asr'`. Where no speech recogniser is configured the
-- voice is not failed: it stays `pending` with `waiting_reason =
-- 'transcription_unavailable'` until its owner types the transcript (the one column a
-- client may update, and only while it is empty). Transcribing is part of the clone
-- job, which is free, so it costs no credits.

alter table public.voices
  alter column reference_transcript drop not null,
  add column transcript_source text
    constraint voices_transcript_source check (transcript_source in ('typed', 'asr')),
  -- The language the recogniser heard (its own names, e.g. 'English'); null if typed.
  add column transcript_language text,
  -- Why a pending voice whose audio is ready is not ready itself.
  add column waiting_reason text
    constraint voices_waiting_reason check (waiting_reason in ('transcription_unavailable'));

update public.voices set transcript_source = 'typed' where transcript_source is null;

alter table public.voices
  add constraint voices_transcript_has_source
    check ((reference_transcript is null) = (transcript_source is null)),
  add constraint voices_ready_has_transcript
    check (status <> 'ready' or reference_transcript is not null),
  add constraint voices_waiting_only_when_pending
    check (waiting_reason is null or status = 'pending');

-- private.before_voice_insert (in *_rules_for_limits_and_inputs.sql) lets a clone's
-- transcript be null: the clone job transcribes the recording first.

-- Runs after voices_before_insert (triggers fire in name order): the transcript's
-- provenance is never the client's to claim.
create function private.before_voice_insert_transcript() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  new.transcript_source := case when new.reference_transcript is null then null else 'typed' end;
  new.transcript_language := null;
  new.waiting_reason := null;
  return new;
end
$$;
create trigger voices_before_insert_transcript before insert on public.voices
  for each row execute function private.before_voice_insert_transcript();

-- The transcript is written once, from empty: by the owner (typed) or by the clone job
-- (worker.record_transcript, 'asr'). A voice without one cannot be ready: when its
-- clone job completes first it waits for the owner's transcript instead.
create function private.before_voice_update_transcript() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  if new.reference_transcript is distinct from old.reference_transcript then
    if old.reference_transcript is not null then
      perform private.invalid(format('voice %s already has a transcript; it cannot change', old.id));
    end if;
    if old.status <> 'pending' then
      perform private.invalid(format('voice %s is %s; its transcript can no longer be set', old.id, old.status));
    end if;
    new.reference_transcript := private.clean_text(new.reference_transcript);
    if new.reference_transcript is null or char_length(new.reference_transcript) < 10 then
      perform private.invalid('reference_transcript must be at least 10 characters',
        'The transcript is what the reference recording says, word for word.');
    end if;
    -- Clients may write only reference_transcript (column grants), so 'asr' here can
    -- only come from worker.record_transcript.
    new.transcript_source := coalesce(new.transcript_source, 'typed');
    if new.transcript_source = 'typed' then
      new.transcript_language := null;
    end if;
    if old.waiting_reason is not null then
      new.status := 'ready';
      new.waiting_reason := null;
    end if;
    new.updated_at := now();
  end if;
  if new.status = 'ready' and new.reference_transcript is null then
    new.status := 'pending';
    new.waiting_reason := 'transcription_unavailable';
  end if;
  return new;
end
$$;
create trigger voices_before_update_transcript before update on public.voices
  for each row execute function private.before_voice_update_transcript();

-- The clone job's transcript, recorded before the job completes. Outcomes: recorded,
-- already_set (the owner typed one meanwhile: theirs stands), or the task's status
-- (or claimed_elsewhere) when this listener no longer runs it.
create function worker.record_transcript(
  task_id uuid, worker_id text, transcript text, language text
) returns text
language plpgsql security definer set search_path = '' as $$
declare
  task public.tasks;
begin
  select * into task from public.tasks t where t.id = task_id for update;
  if not found then
    return 'missing';
  end if;
  if task.type <> 'clone' then
    raise exception using errcode = '22023',
      message = format('task %s is a %s task; only clone tasks have a transcript', task.id, task.type);
  end if;
  if task.status <> 'processing' then
    return task.status;
  end if;
  if task.claimed_by is distinct from worker_id then
    return 'claimed_elsewhere';
  end if;
  update public.voices v
  set reference_transcript = record_transcript.transcript, transcript_source = 'asr',
      transcript_language = nullif(btrim(record_transcript.language), '')
  where v.id = task.voice_id and v.reference_transcript is null;
  return case when found then 'recorded' else 'already_set' end;
end
$$;

grant update (reference_transcript) on public.voices to authenticated;
create policy "users type their own voices' transcripts" on public.voices
  for update to authenticated
  using (user_id = (select auth.uid())) with check (user_id = (select auth.uid()));

revoke all on all functions in schema private from public, anon, authenticated, service_role;
revoke all on all functions in schema worker from public, anon, authenticated, service_role;
grant execute on all functions in schema worker to utter_worker;
