-- References prepared once: the clone job cuts the upload to a clean stretch, stores
-- the normalised cut in Storage (the voice's normalized_object_key, the source of
-- truth) and records its content hash here. Generation requests then carry the voice
-- id, the hash and a short-lived URL of that object, never the audio; the GPU side
-- keeps each voice's clone prompt under (voice id, hash), so a voice whose reference
-- changes gets a new hash and is never served a stale prompt (docs/gpu.md, "Voice
-- prompts").
--
-- Only the listener writes these columns, through worker.record_reference, for the
-- task it holds; clients can neither insert nor update them (column grants), and a
-- designed voice takes its hash from the preview it was saved from.

alter table public.voices
  -- sha256 of the normalised reference WAV at normalized_object_key.
  add column reference_sha256 text
    constraint voices_reference_sha256_format check (reference_sha256 ~ '^[0-9a-f]{64}$'),
  -- The stretch of the upload (seconds) the reference was cut to, when it was cut at
  -- phrase boundaries from a machine transcript's word timings; its transcript is then
  -- the words of that stretch. Null: the whole upload, silence trimmed at the edges.
  add column reference_cut_start_seconds real,
  add column reference_cut_end_seconds real,
  add constraint voices_reference_cut
    check ((reference_cut_start_seconds is null) = (reference_cut_end_seconds is null)
           and (reference_cut_start_seconds is null
                or (reference_cut_start_seconds >= 0 and reference_cut_end_seconds > reference_cut_start_seconds)));

alter table public.design_previews
  -- sha256 of the preview's WAV: a voice saved from the preview takes it as its own.
  add column audio_sha256 text
    constraint design_previews_audio_sha256_format check (audio_sha256 ~ '^[0-9a-f]{64}$');

-- Runs after voices_before_insert (triggers fire in name order), which has filled a
-- designed voice from its preview: the hash follows the audio, never the client.
create function private.before_voice_insert_reference() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  new.reference_sha256 := case when new.design_preview_id is null then null else (
    select p.audio_sha256 from public.design_previews p where p.id = new.design_preview_id) end;
  new.reference_cut_start_seconds := null;
  new.reference_cut_end_seconds := null;
  return new;
end
$$;
create trigger voices_before_insert_reference before insert on public.voices
  for each row execute function private.before_voice_insert_reference();

-- The prepared reference of a running clone task (or the audio of a running design
-- preview), recorded before the listener stores it and completes the task. A clone may
-- come with the cut it was made from and the machine transcript of that cut: both are
-- written together, or nothing is, so a retry finds the same cut in its job and
-- repeats it without transcribing again. Outcomes: recorded; transcript_already_set
-- (the owner typed a transcript of the whole upload meanwhile: nothing is written and
-- the listener prepares the whole upload instead); or the task's status (or
-- claimed_elsewhere, missing) when this listener no longer runs it.
create function worker.record_reference(
  task_id uuid, worker_id text, sha256 text,
  cut_start_seconds real default null, cut_end_seconds real default null,
  transcript text default null, language text default null
) returns text
language plpgsql security definer set search_path = '' as $$
declare
  task public.tasks;
  voice public.voices;
begin
  select * into task from public.tasks t where t.id = task_id for update;
  if not found then
    return 'missing';
  end if;
  if task.type not in ('clone', 'design_preview') then
    raise exception using errcode = '22023',
      message = format('task %s is a %s task; only clone and design_preview tasks make a reference',
                       task.id, task.type);
  end if;
  if sha256 is null or sha256 !~ '^[0-9a-f]{64}$' then
    raise exception using errcode = '22023',
      message = format('sha256 must be 64 lowercase hexadecimal digits, got %L', sha256);
  end if;
  if (cut_start_seconds is null) <> (cut_end_seconds is null)
     or cut_start_seconds = 'NaN'::real or cut_end_seconds = 'NaN'::real
     or cut_start_seconds < 0 or cut_end_seconds <= cut_start_seconds
     or cut_end_seconds = 'Infinity'::real then
    raise exception using errcode = '22023',
      message = format('a cut needs a finite start and a later end, both in seconds; got %s to %s',
                       coalesce(cut_start_seconds::text, 'null'), coalesce(cut_end_seconds::text, 'null'));
  end if;
  if task.type = 'design_preview' and (cut_start_seconds is not null or transcript is not null) then
    raise exception using errcode = '22023',
      message = format('task %s is a design preview: it records its audio''s hash only', task.id);
  end if;
  if transcript is not null and cut_start_seconds is null then
    raise exception using errcode = '22023',
      message = 'a transcript is recorded here only with the cut it was made for';
  end if;
  if task.status <> 'processing' then
    return task.status;
  end if;
  if task.claimed_by is distinct from worker_id then
    return 'claimed_elsewhere';
  end if;

  if task.type = 'design_preview' then
    update public.design_previews p set audio_sha256 = record_reference.sha256
    where p.id = task.design_preview_id;
    return 'recorded';
  end if;

  select * into voice from public.voices v where v.id = task.voice_id for update;
  if not found then
    return 'missing';
  end if;
  if transcript is not null then
    if voice.reference_transcript is not null then
      return 'transcript_already_set';
    end if;
    -- Checked and cleaned as any transcript (before_voice_update_transcript).
    update public.voices v
    set reference_transcript = record_reference.transcript, transcript_source = 'asr',
        transcript_language = nullif(btrim(record_reference.language), '')
    where v.id = voice.id;
  elsif cut_start_seconds is not null and voice.transcript_source is distinct from 'asr' then
    -- A cut says fewer words than the upload: only a machine transcript made for it fits.
    raise exception using errcode = '22023',
      message = format('voice %s has no machine transcript of a cut; record the cut with its transcript',
                       voice.id);
  end if;
  update public.voices v
  set reference_sha256 = record_reference.sha256,
      reference_cut_start_seconds = cut_start_seconds,
      reference_cut_end_seconds = cut_end_seconds
  where v.id = voice.id;
  return 'recorded';
end
$$;

-- private.job_description as in *_transcriptions.sql, with the prepared reference:
-- a generation's voice carries its hash; a clone job carries the cut an earlier
-- attempt recorded and where its transcript came from.
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
        'reference_sha256', v.reference_sha256,
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
                              'reference_transcript', v.reference_transcript,
                              'transcript_source', v.transcript_source, 'language', v.language,
                              'reference_cut', case when v.reference_cut_start_seconds is null then null
                                else jsonb_build_object('start', v.reference_cut_start_seconds,
                                                        'end', v.reference_cut_end_seconds) end)
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

revoke all on all functions in schema private from public, anon, authenticated, service_role;
revoke all on all functions in schema worker from public, anon, authenticated, service_role;
grant execute on function worker.record_reference(uuid, text, text, real, real, text, text) to utter_worker;
