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

-- private.before_voice_insert, as in *_rules_for_limits_and_inputs.sql with ONE
-- change: a clone's transcript may be null (to be transcribed); one that is given must
-- still have at least 10 visible characters. Nothing else in this function differs.
create or replace function private.before_voice_insert() returns trigger
language plpgsql security definer set search_path = '' as $$
declare
  preview public.design_previews;
  expected_prefix text;
  upload_id uuid;
begin
  new.user_id := private.inserting_user(new.user_id);
  -- Refused before anything is looked up, so no answer depends on another user's data.
  if new.id is null then
    perform private.invalid('id must not be null',
      'Leave id out to let the database choose one; a clone sends the id it uploaded under.');
  end if;
  new.name := private.clean_text(new.name);
  perform private.check_text_length('name', new.name, 100);
  new.error := null;
  new.is_favorite := false;
  new.generation_count := 0;
  new.last_used_at := null;
  new.created_at := now();
  new.updated_at := now();

  if new.design_preview_id is not null then
    -- Save a designed voice: everything comes from the caller's finished preview.
    select * into preview from public.design_previews p
    where p.id = new.design_preview_id and p.user_id = new.user_id;
    if not found then
      perform private.invalid(format('design preview %s not found', new.design_preview_id));
    end if;
    if preview.status <> 'completed' then
      perform private.invalid(format('design preview %s is %s; only a completed preview can be saved',
                                     preview.id, preview.status));
    end if;
    if exists (select 1 from public.voices v where v.design_preview_id = preview.id) then
      perform private.invalid(format('design preview %s is already saved as a voice', preview.id));
    end if;
    new.source := 'designed';
    new.language := preview.language;
    new.description := preview.instruct;
    new.reference_transcript := preview.text;
    new.reference_object_key := preview.audio_object_key;
    new.normalized_object_key := preview.audio_object_key;
    new.reference_duration_seconds := preview.duration_seconds;
    new.status := 'ready';
    return new;
  end if;

  -- Clone: the reference was uploaded first, under the caller's own folder.
  new.source := 'uploaded';
  new.description := null;
  new.normalized_object_key := null;
  new.reference_duration_seconds := null;
  new.status := 'pending';
  perform private.check_language(new.language, false);
  new.reference_transcript := private.clean_text(new.reference_transcript);
  -- A null transcript means "transcribe the recording"; a blank one is refused.
  if new.reference_transcript is not null and char_length(new.reference_transcript) < 10 then
    perform private.invalid('reference_transcript must be at least 10 characters',
      'The transcript is what the reference recording says, word for word. Leave it out to have the recording transcribed.');
  end if;
  expected_prefix := new.user_id || '/' || new.id || '/reference.';
  if new.reference_object_key is null
     or left(new.reference_object_key, char_length(expected_prefix)) <> expected_prefix
     or lower(substr(new.reference_object_key, char_length(expected_prefix) + 1)) not in ('wav', 'mp3', 'm4a') then
    perform private.invalid(
      format('reference_object_key must be %s<wav|mp3|m4a>, got %L', expected_prefix, new.reference_object_key),
      'Choose the voice id first, upload to that key in bucket references, then insert the voice with the same id.');
  end if;
  select o.id into upload_id from storage.objects o
  where o.bucket_id = 'references' and o.name = new.reference_object_key;
  if not found then
    perform private.invalid(format('no uploaded reference at references/%s', new.reference_object_key),
      'Upload the recording before inserting the voice.');
  end if;
  if exists (select 1 from private.upload_sweeps s where s.object_id = upload_id) then
    perform private.invalid(
      format('the upload at references/%s expired and is being removed', new.reference_object_key),
      'Upload the recording again, then insert the voice.');
  end if;
  return new;
end
$$;

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
