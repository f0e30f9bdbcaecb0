-- The upload sweeper (20261128120100_rules_for_limits_and_inputs.sql) took every
-- reference upload no voice was made from. A transcription's recording lives at the
-- same kind of key, so one still pending or processing when the upload passed
-- settings.abandoned_upload_after (a backed-up transcribe queue, retries through an
-- outage) lost its recording under its running task. Uploads named by an unfinished
-- transcription are now kept; once it has ended they are swept as before unless they
-- became a voice. Redefined whole; only the transcription condition is new.

create or replace function private.sweep_abandoned_uploads() returns integer
language plpgsql security definer set search_path = '' as $$
declare
  cutoff timestamptz := now() - (select s.abandoned_upload_after from private.settings s);
  keys text[];
begin
  with abandoned as (
    select o.id, o.name from storage.objects o
    where o.bucket_id = 'references' and o.created_at < cutoff
      and storage.filename(o.name) ~* '^reference\.'
      and cardinality(storage.foldername(o.name)) = 2
      and not exists (select 1 from public.voices v
                      where v.id = private.uuid_or_null(split_part(o.name, '/', 2))
                        and v.user_id::text = split_part(o.name, '/', 1))
      and not exists (select 1 from public.transcriptions t
                      where t.audio_object_key = o.name and t.status in ('pending', 'processing'))
      and not exists (select 1 from private.upload_sweeps s where s.object_id = o.id)
    order by o.created_at
    limit 1000
  ), queued as (
    insert into private.upload_sweeps (object_id, bucket, object_key)
    select a.id, 'references', a.name from abandoned a
    returning object_key
  )
  select array_agg(q.object_key order by q.object_key) into keys from queued q;
  perform private.remove_objects('references', coalesce(keys, '{}'::text[]));
  return coalesce(cardinality(keys), 0);
end
$$;

-- The sweep looks up each candidate upload among the unfinished transcriptions.
create index transcriptions_unfinished_audio on public.transcriptions (audio_object_key)
  where status in ('pending', 'processing');
