-- A clone inserted without a transcript: the clone job records a machine transcript
-- (worker.record_transcript) and the voice ends ready with transcript_source 'asr';
-- without one, completion leaves the voice waiting (transcription_unavailable) until
-- its owner types the transcript, the one column a client may update, once.
--   alice a11ce000-...-000000000001, bob b0b00000-...-000000000002
begin;
select plan(31);

select tests.create_user('asr-alice@utter.test', 'a11ce000-0000-4000-8000-000000000001');
select tests.create_user('asr-bob@utter.test', 'b0b00000-0000-4000-8000-000000000002');
select tests.upload_reference('asr-alice@utter.test', 'a11ce000-0000-4000-8000-00000000a001');
select tests.upload_reference('asr-alice@utter.test', 'a11ce000-0000-4000-8000-00000000a002');
select tests.upload_reference('asr-alice@utter.test', 'a11ce000-0000-4000-8000-00000000a003');

-- Inserting without a transcript ------------------------------------------------------
select tests.authenticate_as('asr-alice@utter.test');
select lives_ok($$ insert into public.voices (id, name, language, reference_object_key)
    values ('a11ce000-0000-4000-8000-00000000a001', 'Heard', 'Auto',
            'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a001/reference.wav') $$,
  'a clone may be inserted without a transcript');
select lives_ok($$ insert into public.voices (id, name, language, reference_object_key, reference_transcript)
    values ('a11ce000-0000-4000-8000-00000000a002', 'Waiting', 'English',
            'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a002/reference.wav', null) $$,
  'an explicit null transcript is the same');
select throws_ok($$ insert into public.voices (id, name, language, reference_object_key, reference_transcript)
    values ('a11ce000-0000-4000-8000-00000000a003', 'Blank', 'English',
            'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a003/reference.wav', '') $$,
  '22023', 'reference_transcript must be at least 10 characters', 'an empty transcript is refused, not taken as absent');
select throws_ok($$ insert into public.voices (id, name, language, reference_object_key, transcript_source)
    values ('a11ce000-0000-4000-8000-00000000a003', 'Forged', 'English',
            'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a003/reference.wav', 'asr') $$,
  '42501', 'permission denied for table voices', 'a client cannot claim the transcript was machine-written');
select throws_ok($$ insert into public.voices (id, name, language, reference_object_key, waiting_reason)
    values ('a11ce000-0000-4000-8000-00000000a003', 'Forged', 'English',
            'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a003/reference.wav', 'transcription_unavailable') $$,
  '42501', 'permission denied for table voices', 'a client cannot write waiting_reason');
select is((select status || '/' || coalesce(transcript_source, 'none') || '/' || coalesce(waiting_reason, 'none')
           from public.voices where id = 'a11ce000-0000-4000-8000-00000000a001'),
  'pending/none/none', 'the voice is pending, with no transcript or source yet');
select is((select count(*)::int from public.tasks where voice_id = 'a11ce000-0000-4000-8000-00000000a001' and type = 'clone' and cost = 0),
  1, 'its clone task is queued, free');
select tests.clear_authentication();

-- The machine transcript --------------------------------------------------------------
select set_config('test.heard', tests.task_for('a11ce000-0000-4000-8000-00000000a001')::text, true);
select is(tests.claim(current_setting('test.heard')::uuid, 'worker-1') #>> '{job,reference_transcript}', null,
  'the claimed job says the voice has no transcript (transcribe first)');
select is(tests.outcome_as('utter_worker',
  $$ select worker.record_transcript('$$ || current_setting('test.heard') || $$', 'worker-2', 'Words heard by someone else.', 'English') $$),
  'ok', 'the listener may call worker.record_transcript');
select is((select reference_transcript from public.voices where id = 'a11ce000-0000-4000-8000-00000000a001'), null,
  'a listener that does not hold the claim writes nothing');
select is(worker.record_transcript(current_setting('test.heard')::uuid, 'worker-1',
                                   'The words the recogniser heard in it.', 'English'),
  'recorded', 'the claim holder records the transcript');
select is(worker.record_transcript(current_setting('test.heard')::uuid, 'worker-1',
                                   'A second, different transcript.', 'English'),
  'already_set', 'a second transcript is not written (the first stands)');
insert into public.design_previews (id, user_id, instruct, text, language)
values ('a11ce000-0000-4000-8000-00000000a009', 'a11ce000-0000-4000-8000-000000000001',
        'A calm narrator', 'Preview words.', 'English');
select throws_ok($$ select worker.record_transcript(tests.task_for('a11ce000-0000-4000-8000-00000000a009'), 'worker-1',
                                                    'Words for a preview task.', 'English') $$,
  '22023', null, 'only a clone task has a transcript to record');
select is(tests.complete(current_setting('test.heard')::uuid, 'worker-1'), 'completed', 'the clone task completes');
select is((select status || '/' || transcript_source || '/' || transcript_language || '/' || reference_transcript
           from public.voices where id = 'a11ce000-0000-4000-8000-00000000a001'),
  'ready/asr/English/The words the recogniser heard in it.',
  'the voice is ready with the machine transcript, marked asr, with the language heard');

-- No recogniser: the voice waits -----------------------------------------------------
select set_config('test.waiting', tests.task_for('a11ce000-0000-4000-8000-00000000a002')::text, true);
select tests.claim(current_setting('test.waiting')::uuid, 'worker-1');
delete from realtime.messages;
select is(tests.complete(current_setting('test.waiting')::uuid, 'worker-1'), 'completed',
  'the clone task completes (the audio is validated)');
select is((select status || '/' || waiting_reason || '/' || (normalized_object_key is not null)::text
           from public.voices where id = 'a11ce000-0000-4000-8000-00000000a002'),
  'pending/transcription_unavailable/true',
  'without a transcript the voice waits, with its normalised audio and a reason');
select is((select payload #>> '{record,waiting_reason}' from realtime.messages
           where payload ->> 'table' = 'voices' and topic = 'user:a11ce000-0000-4000-8000-000000000001'),
  'transcription_unavailable', 'the owner hears why over Realtime');
select throws_ok($$ insert into public.generations (user_id, voice_id, text, language)
    values ('a11ce000-0000-4000-8000-000000000001', 'a11ce000-0000-4000-8000-00000000a002', 'Speak.', 'English') $$,
  '22023', null, 'a waiting voice cannot speak');

-- The owner types it ---------------------------------------------------------------
select tests.authenticate_as('asr-bob@utter.test');
select is_empty($$ update public.voices set reference_transcript = 'Bob''s words for Alice''s voice.'
                   where id = 'a11ce000-0000-4000-8000-00000000a002' returning 1 $$,
  'another user cannot type a transcript for the voice (RLS: no row)');
select tests.authenticate_as_anon();
select throws_ok($$ update public.voices set reference_transcript = 'Anonymous words here.' $$,
  '42501', 'permission denied for table voices', 'anon cannot update voices');
select tests.authenticate_as('asr-alice@utter.test');
select throws_ok($$ update public.voices set reference_transcript = 'Too short'
                    where id = 'a11ce000-0000-4000-8000-00000000a002' $$,
  '22023', 'reference_transcript must be at least 10 characters', 'a typed transcript is checked like an inserted one');
select throws_ok($$ update public.voices set status = 'ready' where id = 'a11ce000-0000-4000-8000-00000000a002' $$,
  '42501', 'permission denied for table voices', 'the owner cannot set the status');
select throws_ok($$ update public.voices set transcript_source = 'asr' where id = 'a11ce000-0000-4000-8000-00000000a002' $$,
  '42501', 'permission denied for table voices', 'the owner cannot set the transcript source');
select lives_ok($$ update public.voices set reference_transcript = '  What my recording says, typed.  '
                   where id = 'a11ce000-0000-4000-8000-00000000a002' $$,
  'the owner types the transcript of a waiting voice');
select is((select status || '/' || transcript_source || '/' || coalesce(waiting_reason, 'none') || '/' || reference_transcript
           from public.voices where id = 'a11ce000-0000-4000-8000-00000000a002'),
  'ready/typed/none/What my recording says, typed.', 'the voice is ready with the typed, trimmed transcript');
select throws_ok($$ update public.voices set reference_transcript = 'Changing my mind about it.'
                    where id = 'a11ce000-0000-4000-8000-00000000a002' $$,
  '22023', 'voice a11ce000-0000-4000-8000-00000000a002 already has a transcript; it cannot change',
  'a transcript is written once');
select throws_ok($$ update public.voices set reference_transcript = 'Rewriting the machine''s words.'
                    where id = 'a11ce000-0000-4000-8000-00000000a001' $$,
  '22023', 'voice a11ce000-0000-4000-8000-00000000a001 already has a transcript; it cannot change',
  'a machine transcript cannot be overwritten either');
select tests.clear_authentication();

-- Typed while the job runs: the typed one stands ------------------------------------
select tests.upload_reference('asr-bob@utter.test', 'b0b00000-0000-4000-8000-00000000b001');
select tests.authenticate_as('asr-bob@utter.test');
insert into public.voices (id, name, language, reference_object_key)
values ('b0b00000-0000-4000-8000-00000000b001', 'Raced', 'English',
        'b0b00000-0000-4000-8000-000000000002/b0b00000-0000-4000-8000-00000000b001/reference.wav');
select tests.clear_authentication();
select set_config('test.raced', tests.task_for('b0b00000-0000-4000-8000-00000000b001')::text, true);
select tests.claim(current_setting('test.raced')::uuid, 'worker-1');
select tests.authenticate_as('asr-bob@utter.test');
update public.voices set reference_transcript = 'Typed while the job was running.'
where id = 'b0b00000-0000-4000-8000-00000000b001';
select tests.clear_authentication();
select is(worker.record_transcript(current_setting('test.raced')::uuid, 'worker-1', 'What the machine heard.', 'English'),
  'already_set', 'the machine transcript does not overwrite one typed meanwhile');
select tests.complete(current_setting('test.raced')::uuid, 'worker-1');
select is((select status || '/' || transcript_source || '/' || reference_transcript from public.voices
           where id = 'b0b00000-0000-4000-8000-00000000b001'),
  'ready/typed/Typed while the job was running.', 'the voice is ready with the typed transcript');

select ok(tests.credits_match_ledger(), 'every balance equals its ledger');

select * from finish();
rollback;
