-- References prepared once: the clone job records its reference's content hash (and,
-- cut from a machine transcript, the cut and the cut's transcript) through
-- worker.record_reference; a design preview records its audio's hash, which a voice
-- saved from it inherits; a generation's job carries the voice's hash. Only the
-- listener holding the task writes them: not the owner, another user, anon, the
-- service role, nor a forged insert.
--   alice a11ce000-...-000000003101, bob b0b00000-...-000000003102
begin;
select plan(40);

select tests.create_user('ref-alice@utter.test', 'a11ce000-0000-4000-8000-000000003101');
select tests.create_user('ref-bob@utter.test', 'b0b00000-0000-4000-8000-000000003102');
select tests.upload_reference('ref-alice@utter.test', 'a11ce000-0000-4000-8000-00000000c001');
select tests.upload_reference('ref-alice@utter.test', 'a11ce000-0000-4000-8000-00000000c002');
select tests.upload_reference('ref-alice@utter.test', 'a11ce000-0000-4000-8000-00000000c003');
select tests.upload_reference('ref-alice@utter.test', 'a11ce000-0000-4000-8000-00000000c004');
select set_config('test.hash_a', repeat('a', 64), true);
select set_config('test.hash_b', repeat('b', 64), true);

-- Forged columns --------------------------------------------------------------------
select tests.authenticate_as('ref-alice@utter.test');
select throws_ok($$ insert into public.voices (id, name, language, reference_object_key, reference_transcript, reference_sha256)
    values ('a11ce000-0000-4000-8000-00000000c004', 'Forged', 'English',
            'a11ce000-0000-4000-8000-000000003101/a11ce000-0000-4000-8000-00000000c004/reference.wav',
            'What the recording says.', '$$ || current_setting('test.hash_a') || $$') $$,
  '42501', 'permission denied for table voices', 'a client cannot insert a reference hash');
select throws_ok($$ insert into public.voices (id, name, language, reference_object_key, reference_transcript, reference_cut_start_seconds)
    values ('a11ce000-0000-4000-8000-00000000c004', 'Forged', 'English',
            'a11ce000-0000-4000-8000-000000003101/a11ce000-0000-4000-8000-00000000c004/reference.wav',
            'What the recording says.', 1) $$,
  '42501', 'permission denied for table voices', 'a client cannot insert a cut');
insert into public.voices (id, name, language, reference_object_key, reference_transcript)
values ('a11ce000-0000-4000-8000-00000000c001', 'Typed', 'English',
        'a11ce000-0000-4000-8000-000000003101/a11ce000-0000-4000-8000-00000000c001/reference.wav',
        'What the whole recording says.');
insert into public.voices (id, name, language, reference_object_key)
values ('a11ce000-0000-4000-8000-00000000c002', 'Heard', 'English',
        'a11ce000-0000-4000-8000-000000003101/a11ce000-0000-4000-8000-00000000c002/reference.wav');
insert into public.voices (id, name, language, reference_object_key)
values ('a11ce000-0000-4000-8000-00000000c003', 'Raced', 'English',
        'a11ce000-0000-4000-8000-000000003101/a11ce000-0000-4000-8000-00000000c003/reference.wav');
select throws_ok($$ update public.voices set reference_sha256 = '$$ || current_setting('test.hash_a') || $$'
                    where id = 'a11ce000-0000-4000-8000-00000000c001' $$,
  '42501', 'permission denied for table voices', 'the owner cannot set the hash');
select throws_ok($$ update public.voices set reference_cut_end_seconds = 3 where id = 'a11ce000-0000-4000-8000-00000000c001' $$,
  '42501', 'permission denied for table voices', 'the owner cannot set the cut');
select throws_ok($$ select worker.record_reference(gen_random_uuid(), 'w', '$$ || current_setting('test.hash_a') || $$') $$,
  '42501', null, 'the owner cannot call the worker function');
select is((select reference_sha256 from public.voices where id = 'a11ce000-0000-4000-8000-00000000c001'), null,
  'a new voice has no hash');
select tests.authenticate_as('ref-bob@utter.test');
select is_empty($$ select 1 from public.voices where id = 'a11ce000-0000-4000-8000-00000000c001' $$,
  'another user does not see the voice, hash or not');
select throws_ok($$ update public.voices set reference_sha256 = '$$ || current_setting('test.hash_b') || $$' $$,
  '42501', 'permission denied for table voices', 'another user cannot set a hash');
select tests.authenticate_as_anon();
select throws_ok($$ select worker.record_reference(gen_random_uuid(), 'w', '$$ || current_setting('test.hash_a') || $$') $$,
  '42501', null, 'anon cannot call the worker function');
select tests.authenticate_as_service_role();
select throws_ok($$ select worker.record_reference(gen_random_uuid(), 'w', '$$ || current_setting('test.hash_a') || $$') $$,
  '42501', null, 'the service role cannot call the worker function');
select tests.clear_authentication();

-- A typed transcript: the hash alone ------------------------------------------------
select set_config('test.typed', tests.task_for('a11ce000-0000-4000-8000-00000000c001')::text, true);
select tests.claim(current_setting('test.typed')::uuid, 'worker-1');
select is(tests.outcome_as('utter_worker',
  $$ select worker.record_reference('$$ || current_setting('test.typed') || $$', 'worker-2', '$$ || current_setting('test.hash_b') || $$') $$),
  'ok', 'the listener may call worker.record_reference');
select is((select reference_sha256 from public.voices where id = 'a11ce000-0000-4000-8000-00000000c001'), null,
  'a listener that does not hold the claim writes nothing');
select is(worker.record_reference(current_setting('test.typed')::uuid, 'worker-2', current_setting('test.hash_b')),
  'claimed_elsewhere', '... and is told so');
select throws_ok($$ select worker.record_reference('$$ || current_setting('test.typed') || $$', 'worker-1', upper('$$ || current_setting('test.hash_a') || $$')) $$,
  '22023', 'sha256 must be 64 lowercase hexadecimal digits, got ''' || upper(current_setting('test.hash_a')) || '''',
  'an uppercase hash is refused');
select throws_ok($$ select worker.record_reference('$$ || current_setting('test.typed') || $$', 'worker-1', 'abc') $$,
  '22023', 'sha256 must be 64 lowercase hexadecimal digits, got ''abc''', 'a short hash is refused');
select throws_ok($$ select worker.record_reference('$$ || current_setting('test.typed') || $$', 'worker-1', null) $$,
  '22023', 'sha256 must be 64 lowercase hexadecimal digits, got NULL', 'a missing hash is refused');
select throws_ok($$ select worker.record_reference('$$ || current_setting('test.typed') || $$', 'worker-1',
                                                   '$$ || current_setting('test.hash_a') || $$', 2, 1) $$,
  '22023', null, 'a cut that ends before it starts is refused');
select throws_ok($$ select worker.record_reference('$$ || current_setting('test.typed') || $$', 'worker-1',
                                                   '$$ || current_setting('test.hash_a') || $$', 'NaN', 3) $$,
  '22023', null, 'a NaN cut is refused');
select throws_ok($$ select worker.record_reference('$$ || current_setting('test.typed') || $$', 'worker-1',
                                                   '$$ || current_setting('test.hash_a') || $$', 1, null) $$,
  '22023', null, 'half a cut is refused');
select throws_ok($$ select worker.record_reference('$$ || current_setting('test.typed') || $$', 'worker-1',
                                                   '$$ || current_setting('test.hash_a') || $$', 1, 9) $$,
  '22023', 'voice a11ce000-0000-4000-8000-00000000c001 has no machine transcript of a cut; record the cut with its transcript',
  'a typed transcript covers the whole upload: no cut without a transcript of it');
select throws_ok($$ select worker.record_reference('$$ || current_setting('test.typed') || $$', 'worker-1',
                                                   '$$ || current_setting('test.hash_a') || $$', null, null, 'Some words of it.') $$,
  '22023', 'a transcript is recorded here only with the cut it was made for', 'a transcript needs its cut');
select is(worker.record_reference(current_setting('test.typed')::uuid, 'worker-1', current_setting('test.hash_a')),
  'recorded', 'the claim holder records the hash');
select is(worker.record_reference(current_setting('test.typed')::uuid, 'worker-1', current_setting('test.hash_b')),
  'recorded', 'a reference prepared again (a retry) replaces the hash');
select is(tests.complete(current_setting('test.typed')::uuid, 'worker-1'), 'completed', 'the clone completes');
select is((select status || '/' || reference_sha256 || '/' || coalesce(reference_cut_start_seconds::text, 'whole')
           from public.voices where id = 'a11ce000-0000-4000-8000-00000000c001'),
  'ready/' || current_setting('test.hash_b') || '/whole', 'the voice is ready with the last hash, uncut');
select is(worker.record_reference(current_setting('test.typed')::uuid, 'worker-1', current_setting('test.hash_a')),
  'completed', 'nothing is recorded once the task has ended');

-- A generation carries the hash, never the audio ------------------------------------
select tests.authenticate_as('ref-alice@utter.test');
insert into public.generations (id, voice_id, text, language)
values ('a11ce000-0000-4000-8000-00000000c0a1', 'a11ce000-0000-4000-8000-00000000c001', 'Speak, please.', 'English');
select tests.clear_authentication();
select is((tests.claim(tests.task_for('a11ce000-0000-4000-8000-00000000c0a1'), 'worker-1') #> '{job,voice}')
            - 'id' - 'reference_object_key' - 'reference_transcript' - 'language',
  jsonb_build_object('reference_sha256', current_setting('test.hash_b')),
  'the generation''s job names the voice''s hash');
select throws_ok($$ select worker.record_reference(tests.task_for('a11ce000-0000-4000-8000-00000000c0a1'), 'worker-1',
                                                   '$$ || current_setting('test.hash_a') || $$') $$,
  '22023', null, 'a generation makes no reference');

-- A machine transcript: the cut and its words, together ------------------------------
select set_config('test.heard', tests.task_for('a11ce000-0000-4000-8000-00000000c002')::text, true);
select is(tests.claim(current_setting('test.heard')::uuid, 'worker-1') #> '{job,reference_cut}', 'null'::jsonb,
  'a first attempt finds no cut');
select is(worker.record_reference(current_setting('test.heard')::uuid, 'worker-1', current_setting('test.hash_a'),
                                  2.5, 14.5, '  The words of the cut.  ', 'English'),
  'recorded', 'the cut, its hash and its transcript are recorded');
select is((select reference_transcript || '/' || transcript_source || '/' || reference_cut_start_seconds || '-' || reference_cut_end_seconds
           from public.voices where id = 'a11ce000-0000-4000-8000-00000000c002'),
  'The words of the cut./asr/2.5-14.5', 'the voice holds the cut''s transcript, marked asr, and the cut');
select is(worker.fail_task(current_setting('test.heard')::uuid, 'worker-1', 'storage hiccup', true, 0, 3),
  'retrying', 'the attempt fails before storing');
select is((tests.claim(current_setting('test.heard')::uuid, 'worker-1') #> '{job}') - 'task_id' - 'type' - 'user_id' - 'attempt'
            - 'resume_call_id' - 'output' - 'voice_id' - 'reference_object_key' - 'language',
  '{"reference_cut": {"start": 2.5, "end": 14.5}, "transcript_source": "asr", "reference_transcript": "The words of the cut."}'::jsonb,
  'the retry finds the cut and its machine transcript in its job');
select is(worker.record_reference(current_setting('test.heard')::uuid, 'worker-1', current_setting('test.hash_a'), 2.5, 14.5),
  'recorded', 'the retry records the same cut again, without a transcript');

-- Typed meanwhile: the cut is not recorded ---------------------------------------------
select set_config('test.raced', tests.task_for('a11ce000-0000-4000-8000-00000000c003')::text, true);
select tests.claim(current_setting('test.raced')::uuid, 'worker-1');
select tests.authenticate_as('ref-alice@utter.test');
update public.voices set reference_transcript = 'Typed while the job ran, all of it.'
where id = 'a11ce000-0000-4000-8000-00000000c003';
select tests.clear_authentication();
select is(worker.record_reference(current_setting('test.raced')::uuid, 'worker-1', current_setting('test.hash_a'),
                                  1, 9, 'Words of a cut.', 'English'),
  'transcript_already_set', 'a cut''s transcript does not replace one typed meanwhile');
select is((select coalesce(reference_sha256, 'none') || '/' || coalesce(reference_cut_start_seconds::text, 'none') || '/' || reference_transcript
           from public.voices where id = 'a11ce000-0000-4000-8000-00000000c003'),
  'none/none/Typed while the job ran, all of it.', 'and nothing of the cut is written');

-- A designed voice inherits its preview's hash ---------------------------------------
insert into public.design_previews (id, user_id, instruct, text, language)
values ('a11ce000-0000-4000-8000-00000000c0b1', 'a11ce000-0000-4000-8000-000000003101',
        'A calm narrator', 'Preview words.', 'English');
select set_config('test.preview', tests.task_for('a11ce000-0000-4000-8000-00000000c0b1')::text, true);
select tests.claim(current_setting('test.preview')::uuid, 'worker-1');
select throws_ok($$ select worker.record_reference('$$ || current_setting('test.preview') || $$', 'worker-1',
                                                   '$$ || current_setting('test.hash_a') || $$', 1, 2, 'Words here too.') $$,
  '22023', null, 'a design preview records no cut or transcript');
select is(worker.record_reference(current_setting('test.preview')::uuid, 'worker-1', current_setting('test.hash_b')),
  'recorded', 'a design preview records its audio''s hash');
select tests.complete(current_setting('test.preview')::uuid, 'worker-1');
select tests.authenticate_as('ref-alice@utter.test');
insert into public.voices (id, name, design_preview_id, reference_object_key, language)
values ('a11ce000-0000-4000-8000-00000000c0b2', 'Designed', 'a11ce000-0000-4000-8000-00000000c0b1', 'ignored', 'English');
select is((select status || '/' || reference_sha256 from public.voices where id = 'a11ce000-0000-4000-8000-00000000c0b2'),
  'ready/' || current_setting('test.hash_b'), 'the voice saved from it is ready with the preview''s hash');
select tests.clear_authentication();

select ok(tests.credits_match_ledger(), 'every balance equals its ledger');
select * from finish();
rollback;
