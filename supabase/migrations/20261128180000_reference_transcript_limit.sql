-- A reference transcript had a minimum length and no maximum: a client could store
-- megabytes of it on a clone (insert, or typed later), and the listener sends it to
-- the engine with every generation of the voice. It says what at most five minutes of
-- speech says; 10,000 characters is twice what a fast speaker says in that time. The
-- listener's recognised transcript (worker.record_transcript) meets the same bound.
-- A trigger of its own, named to run after the voice's other BEFORE triggers (which
-- trim the text), so no existing function is redefined.

create function private.max_reference_transcript_length() returns integer
language plpgsql immutable set search_path = '' as $$ begin return 10000; end $$;

create function private.check_reference_transcript_length() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  if char_length(new.reference_transcript) > private.max_reference_transcript_length() then
    perform private.invalid(format('reference_transcript is %s characters long; the limit is %s',
                                   char_length(new.reference_transcript),
                                   private.max_reference_transcript_length()),
      'The transcript is what the reference recording (at most five minutes) says, word for word.');
  end if;
  return new;
end
$$;
create trigger voices_transcript_length before insert or update of reference_transcript on public.voices
  for each row execute function private.check_reference_transcript_length();

revoke all on all functions in schema private from public, anon, authenticated, service_role;
