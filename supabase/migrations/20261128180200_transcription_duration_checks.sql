-- worker.record_transcription (20261128150100_transcriptions.sql) stored whatever
-- duration it was given: NaN, infinity or negative seconds reached the owner's
-- transcription. Like the other numbers the listener reports (complete_task,
-- record_usage), the duration must be finite and not negative. Redefined whole; only
-- the duration check is new.

create or replace function worker.record_transcription(
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
  perform private.check_finite('duration_seconds', record_transcription.duration_seconds);
  if record_transcription.duration_seconds < 0 then
    raise exception using errcode = '22023',
      message = format('record_transcription needs duration_seconds >= 0, got %s',
                       record_transcription.duration_seconds);
  end if;
  update public.transcriptions t
  set text = btrim(record_transcription.transcript),
      detected_language = nullif(btrim(record_transcription.language), ''),
      duration_seconds = record_transcription.duration_seconds, updated_at = now()
  where t.task_id = task.id;
  return 'recorded';
end
$$;
