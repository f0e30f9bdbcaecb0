-- A voice cannot be made from an upload the sweeper has queued for removal
-- (private.before_voice_insert), but a transcription could: accepted, queued and free,
-- it then failed once cleanup removed its recording. The same refusal, in a trigger
-- of its own named to run after the transcription's insert trigger has checked the key.

create function private.refuse_swept_transcription_upload() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  if exists (select 1 from storage.objects o join private.upload_sweeps s on s.object_id = o.id
             where o.bucket_id = 'references' and o.name = new.audio_object_key) then
    perform private.invalid(
      format('the upload at references/%s expired and is being removed', new.audio_object_key),
      'Upload the recording again, then insert the transcription.');
  end if;
  return new;
end
$$;
create trigger transcriptions_zy_upload_not_swept before insert on public.transcriptions
  for each row execute function private.refuse_swept_transcription_upload();

revoke all on all functions in schema private from public, anon, authenticated, service_role;
