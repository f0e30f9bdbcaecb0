-- Every bad input from the product limits is refused with SQLSTATE 22023 (HTTP 400)
-- and a message that says what to fix; columns the client contract does not name
-- cannot be written at all (42501).
--   alice a11ce000-...-000000000001: ready voice ...a001, pending voice ...a002,
--     completed preview ...a003, pending preview ...a004, generation ...a005
--   bob   b0b00000-...-000000000002: ready voice ...b001, completed preview ...b003,
--     generation ...b005
begin;
select plan(59);
select tests.allow_concurrent_jobs(10);  -- more queued at once than the free tier allows

select tests.create_user('valid-alice@utter.test', 'a11ce000-0000-4000-8000-000000000001');
select tests.create_user('valid-bob@utter.test', 'b0b00000-0000-4000-8000-000000000002');
select tests.make_ready_voice('valid-alice@utter.test', 'Alice', 'a11ce000-0000-4000-8000-00000000a001');
select tests.make_ready_voice('valid-bob@utter.test', 'Bob', 'b0b00000-0000-4000-8000-00000000b001');
select tests.make_completed_preview('valid-alice@utter.test', 'a11ce000-0000-4000-8000-00000000a003');
select tests.make_completed_preview('valid-bob@utter.test', 'b0b00000-0000-4000-8000-00000000b003');
insert into public.generations (id, user_id, voice_id, text, language) values
  ('b0b00000-0000-4000-8000-00000000b005', 'b0b00000-0000-4000-8000-000000000002',
   'b0b00000-0000-4000-8000-00000000b001', 'Bob''s words.', 'English');

select tests.authenticate_as('valid-alice@utter.test');
select tests.upload_reference('valid-alice@utter.test', 'a11ce000-0000-4000-8000-00000000a002');
insert into public.voices (id, name, language, reference_object_key, reference_transcript)
values ('a11ce000-0000-4000-8000-00000000a002', '  Pending voice  ', 'Auto',
        'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a002/reference.wav',
        'Exactly 10');
insert into public.design_previews (id, instruct, text, language)
values ('a11ce000-0000-4000-8000-00000000a004', 'A calm narrator', 'Still cooking.', 'Spanish');
insert into public.generations (id, voice_id, text, language)
values ('a11ce000-0000-4000-8000-00000000a005', 'a11ce000-0000-4000-8000-00000000a001', repeat('x', 5000), 'Auto');

-- What the valid inserts above became.
select is((select name || '/' || status || '/' || source from public.voices where id = 'a11ce000-0000-4000-8000-00000000a002'),
  'Pending voice/pending/uploaded', 'a clone is trimmed, pending validation, and marked uploaded (Auto allowed)');
select is((select voice_name || '/' || status from public.generations where id = 'a11ce000-0000-4000-8000-00000000a005'),
  'Alice/pending', 'a 5000-character generation is accepted and records its voice''s name');

-- Languages
select throws_ok($$ insert into public.generations (voice_id, text, language)
    values ('a11ce000-0000-4000-8000-00000000a001', 'Hello', 'Klingon') $$,
  '22023', 'unknown language ''Klingon''', 'a generation in an unknown language is refused');
select throws_ok($$ insert into public.design_previews (instruct, text, language)
    values ('A calm narrator', 'Hello', 'Klingon') $$,
  '22023', 'unknown language ''Klingon''', 'a design preview in an unknown language is refused');
select throws_ok($$ insert into public.voices (id, name, language, reference_object_key, reference_transcript)
    values ('a11ce000-0000-4000-8000-00000000a001', 'Voice', 'english',
            'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a001/reference.wav',
            'Ten or more characters.') $$,
  '22023', 'unknown language ''english''', 'language names are exact (a clone in ''english'' is refused)');
select throws_ok($$ insert into public.design_previews (instruct, text, language)
    values ('A calm narrator', 'Hello', 'Auto') $$,
  '22023', 'a voice design needs an explicit language, not Auto', 'a design preview cannot use Auto');
select throws_ok($$ insert into public.generations (voice_id, text, language)
    values ('a11ce000-0000-4000-8000-00000000a001', 'Hello', null) $$,
  '22023', 'unknown language NULL', 'a generation needs a language');

-- Names (clone and saved design)
select tests.upload_reference('valid-alice@utter.test', 'a11ce000-0000-4000-8000-00000000a010');
select throws_ok($$ insert into public.voices (id, name, language, reference_object_key, reference_transcript)
    values ('a11ce000-0000-4000-8000-00000000a010', '', 'English',
            'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a010/reference.wav',
            'Ten or more characters.') $$,
  '22023', 'name must not be empty', 'an empty voice name is refused');
select throws_ok($$ insert into public.voices (id, name, language, reference_object_key, reference_transcript)
    values ('a11ce000-0000-4000-8000-00000000a010', '    ', 'English',
            'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a010/reference.wav',
            'Ten or more characters.') $$,
  '22023', 'name must not be empty', 'a blank voice name is refused');
select throws_ok($$ insert into public.voices (id, name, language, reference_object_key, reference_transcript)
    values ('a11ce000-0000-4000-8000-00000000a010', null, 'English',
            'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a010/reference.wav',
            'Ten or more characters.') $$,
  '22023', 'name must not be empty', 'a missing voice name is refused');
select throws_ok($$ insert into public.voices (id, name, language, reference_object_key, reference_transcript)
    values ('a11ce000-0000-4000-8000-00000000a010', repeat('n', 101), 'English',
            'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a010/reference.wav',
            'Ten or more characters.') $$,
  '22023', 'name is 101 characters long; the limit is 100', 'a 101-character voice name is refused');
select lives_ok($$ insert into public.voices (id, name, language, reference_object_key, reference_transcript)
    values ('a11ce000-0000-4000-8000-00000000a010', repeat('n', 100), 'English',
            'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a010/reference.wav',
            'Ten or more characters.') $$,
  'a 100-character voice name is accepted');
select throws_ok($$ insert into public.voices (name, design_preview_id)
    values (repeat('n', 101), 'a11ce000-0000-4000-8000-00000000a003') $$,
  '22023', 'name is 101 characters long; the limit is 100', 'saving a design with a 101-character name is refused');
select throws_ok($$ insert into public.voices (name, design_preview_id)
    values (' ', 'a11ce000-0000-4000-8000-00000000a003') $$,
  '22023', 'name must not be empty', 'saving a design without a name is refused');

-- Design preview inputs
select throws_ok($$ insert into public.design_previews (instruct, text, language) values ('', 'Hello', 'English') $$,
  '22023', 'instruct must not be empty', 'an empty instruct is refused');
select throws_ok($$ insert into public.design_previews (instruct, text, language) values (repeat('i', 501), 'Hello', 'English') $$,
  '22023', 'instruct is 501 characters long; the limit is 500', 'a 501-character instruct is refused');
select throws_ok($$ insert into public.design_previews (instruct, text, language) values ('A calm narrator', '', 'English') $$,
  '22023', 'text must not be empty', 'an empty preview text is refused');
select throws_ok($$ insert into public.design_previews (instruct, text, language) values ('A calm narrator', repeat('t', 501), 'English') $$,
  '22023', 'text is 501 characters long; the limit is 500', 'a 501-character preview text is refused');
select lives_ok($$ insert into public.design_previews (instruct, text, language) values (repeat('i', 500), repeat('t', 500), 'Korean') $$,
  'a 500-character instruct and text are accepted');

-- Generation text
select throws_ok($$ insert into public.generations (voice_id, text, language) values ('a11ce000-0000-4000-8000-00000000a001', '', 'English') $$,
  '22023', 'text must not be empty', 'an empty generation text is refused');
select throws_ok($$ insert into public.generations (voice_id, text, language) values ('a11ce000-0000-4000-8000-00000000a001', null, 'English') $$,
  '22023', 'text must not be empty', 'a missing generation text is refused');
select throws_ok($$ insert into public.generations (voice_id, text, language) values ('a11ce000-0000-4000-8000-00000000a001', repeat('t', 5001), 'English') $$,
  '22023', 'text is 5001 characters long; the limit is 5000', 'a 5001-character generation text is refused');

-- Clone inputs: transcript, reference key, upload
select tests.upload_reference('valid-alice@utter.test', 'a11ce000-0000-4000-8000-00000000a011');
select throws_ok($$ insert into public.voices (id, name, language, reference_object_key, reference_transcript)
    values ('a11ce000-0000-4000-8000-00000000a011', 'Voice', 'English',
            'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a011/reference.wav', 'Nine char') $$,
  '22023', 'reference_transcript must be at least 10 characters', 'a 9-character transcript is refused');
select throws_ok($$ insert into public.voices (id, name, language, reference_object_key, reference_transcript)
    values ('a11ce000-0000-4000-8000-00000000a011', 'Voice', 'English',
            'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a011/reference.wav', '   short      ') $$,
  '22023', 'reference_transcript must be at least 10 characters', 'padding does not count towards the transcript');
select throws_ok($$ insert into public.voices (id, name, language, reference_object_key, reference_transcript)
    values ('a11ce000-0000-4000-8000-00000000a011', 'Voice', 'English',
            'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a011/reference.wav', '   ') $$,
  '22023', 'reference_transcript must be at least 10 characters', 'a blank transcript is refused (a missing one is transcribed: 02600)');
select throws_ok($$ insert into public.voices (id, name, language, reference_object_key, reference_transcript)
    values ('a11ce000-0000-4000-8000-00000000a011', 'Voice', 'English',
            'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a001/reference.wav',
            'Ten or more characters.') $$,
  '22023', 'reference_object_key must be a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a011/reference.<wav|mp3|m4a>, got ''a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a001/reference.wav''',
  'a clone cannot reuse another voice''s recording');
select throws_ok($$ insert into public.voices (id, name, language, reference_object_key, reference_transcript)
    values ('a11ce000-0000-4000-8000-00000000a011', 'Voice', 'English',
            'b0b00000-0000-4000-8000-000000000002/b0b00000-0000-4000-8000-00000000b001/reference.wav',
            'Ten or more characters.') $$,
  '22023', 'reference_object_key must be a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a011/reference.<wav|mp3|m4a>, got ''b0b00000-0000-4000-8000-000000000002/b0b00000-0000-4000-8000-00000000b001/reference.wav''',
  'a clone cannot use another user''s recording');
select throws_ok($$ insert into public.voices (id, name, language, reference_object_key, reference_transcript)
    values ('a11ce000-0000-4000-8000-00000000a011', 'Voice', 'English',
            'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a011/reference.ogg',
            'Ten or more characters.') $$,
  '22023', 'reference_object_key must be a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a011/reference.<wav|mp3|m4a>, got ''a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a011/reference.ogg''',
  'a reference must be WAV, MP3 or M4A');
select throws_ok($$ insert into public.voices (id, name, language, reference_transcript)
    values ('a11ce000-0000-4000-8000-00000000a011', 'Voice', 'English', 'Ten or more characters.') $$,
  '22023', 'reference_object_key must be a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a011/reference.<wav|mp3|m4a>, got NULL',
  'a clone needs its reference key');
select throws_ok($$ insert into public.voices (id, name, language, reference_object_key, reference_transcript)
    values ('a11ce000-0000-4000-8000-00000000a011', 'Voice', 'English',
            'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a011/reference.mp3',
            'Ten or more characters.') $$,
  '22023', 'no uploaded reference at references/a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a011/reference.mp3',
  'a clone whose recording was not uploaded is refused');

-- Generating with a voice that cannot speak
select throws_ok($$ insert into public.generations (voice_id, text, language) values ('a11ce000-0000-4000-8000-00000000a002', 'Hello', 'English') $$,
  '22023', 'voice a11ce000-0000-4000-8000-00000000a002 is still being validated; it can speak once it is ready',
  'a voice still being validated cannot speak');
select throws_ok($$ insert into public.generations (voice_id, text, language) values ('b0b00000-0000-4000-8000-00000000b001', 'Hello', 'English') $$,
  '22023', 'voice b0b00000-0000-4000-8000-00000000b001 not found', 'another user''s voice cannot be used');
select throws_ok($$ insert into public.generations (voice_id, text, language) values ('00000000-0000-4000-8000-00000000dead', 'Hello', 'English') $$,
  '22023', 'voice 00000000-0000-4000-8000-00000000dead not found', 'a voice that does not exist cannot be used');
select throws_ok($$ insert into public.generations (text, language) values ('Hello', 'English') $$,
  '22023', 'voice_id is required', 'a generation needs a voice');

-- A voice whose validation failed
select tests.clear_authentication();
select tests.claim(tests.task_for('a11ce000-0000-4000-8000-00000000a002'));
select worker.fail_task(tests.task_for('a11ce000-0000-4000-8000-00000000a002'), 'test-worker',
  'the recording is silent', false, 0, 3);
select tests.authenticate_as('valid-alice@utter.test');
select throws_ok($$ insert into public.generations (voice_id, text, language) values ('a11ce000-0000-4000-8000-00000000a002', 'Hello', 'English') $$,
  '22023', 'voice a11ce000-0000-4000-8000-00000000a002 is failed; it can speak once it is ready',
  'a voice that failed validation cannot speak');

-- Saving a designed voice
select throws_ok($$ insert into public.voices (name, design_preview_id) values ('Designed', 'a11ce000-0000-4000-8000-00000000a004') $$,
  '22023', 'design preview a11ce000-0000-4000-8000-00000000a004 is pending; only a completed preview can be saved',
  'a preview that has not finished cannot be saved');
select throws_ok($$ insert into public.voices (name, design_preview_id) values ('Designed', 'b0b00000-0000-4000-8000-00000000b003') $$,
  '22023', 'design preview b0b00000-0000-4000-8000-00000000b003 not found', 'another user''s preview cannot be saved');
select lives_ok($$ insert into public.voices (id, name, design_preview_id, language, reference_transcript)
    values ('a11ce000-0000-4000-8000-00000000a020', 'Designed', 'a11ce000-0000-4000-8000-00000000a003', 'German', 'ignored') $$,
  'a completed preview can be saved as a voice');
select is(
  (select jsonb_build_object('source', v.source, 'status', v.status, 'language', v.language,
            'description', v.description, 'transcript', v.reference_transcript,
            'audio', v.reference_object_key = p.audio_object_key and v.normalized_object_key = p.audio_object_key)
   from public.voices v join public.design_previews p on p.id = v.design_preview_id
   where v.id = 'a11ce000-0000-4000-8000-00000000a020'),
  jsonb_build_object('source', 'designed', 'status', 'ready', 'language', 'English',
    'description', 'A warm, slow baritone', 'transcript', 'Hello from a designed voice.', 'audio', true),
  'a saved design takes everything but its name from the preview, and is ready at once');
select throws_ok($$ insert into public.voices (name, design_preview_id) values ('Again', 'a11ce000-0000-4000-8000-00000000a003') $$,
  '22023', 'design preview a11ce000-0000-4000-8000-00000000a003 is already saved as a voice',
  'a preview can be saved once');

-- Regenerate
select throws_ok($$ insert into public.generations (regenerated_from) values ('b0b00000-0000-4000-8000-00000000b005') $$,
  '22023', 'generation b0b00000-0000-4000-8000-00000000b005 not found', 'another user''s generation cannot be regenerated');
select lives_ok($$ insert into public.generations (id, regenerated_from)
    values ('a11ce000-0000-4000-8000-00000000a006', 'a11ce000-0000-4000-8000-00000000a005') $$,
  'a user can regenerate their own generation');
select is((select voice_id::text || '/' || language || '/' || char_length(text) from public.generations
           where id = 'a11ce000-0000-4000-8000-00000000a006'),
  'a11ce000-0000-4000-8000-00000000a001/Auto/5000', 'a regeneration repeats the voice, language and text');

-- Forged columns: not in the client's insert grant.
select throws_ok($$ insert into public.generations (voice_id, text, language, status)
    values ('a11ce000-0000-4000-8000-00000000a001', 'Hello', 'English', 'completed') $$,
  '42501', 'permission denied for table generations', 'a generation''s status cannot be sent');
select throws_ok($$ insert into public.generations (voice_id, text, language, audio_object_key)
    values ('a11ce000-0000-4000-8000-00000000a001', 'Hello', 'English', 'someone/else.wav') $$,
  '42501', 'permission denied for table generations', 'a generation''s audio key cannot be sent');
select throws_ok($$ insert into public.generations (voice_id, text, language, voice_name)
    values ('a11ce000-0000-4000-8000-00000000a001', 'Hello', 'English', 'Famous person') $$,
  '42501', 'permission denied for table generations', 'a generation''s voice name cannot be sent');
select throws_ok($$ insert into public.design_previews (instruct, text, language, status)
    values ('A calm narrator', 'Hello', 'English', 'completed') $$,
  '42501', 'permission denied for table design_previews', 'a preview''s status cannot be sent');
select throws_ok($$ insert into public.design_previews (instruct, text, language, audio_object_key)
    values ('A calm narrator', 'Hello', 'English', 'x.wav') $$,
  '42501', 'permission denied for table design_previews', 'a preview''s audio key cannot be sent');
select throws_ok($$ insert into public.voices (id, name, language, reference_object_key, reference_transcript, status)
    values ('a11ce000-0000-4000-8000-00000000a011', 'Voice', 'English',
            'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a011/reference.wav',
            'Ten or more characters.', 'ready') $$,
  '42501', 'permission denied for table voices', 'a voice''s status cannot be sent');
select throws_ok($$ insert into public.voices (id, name, language, reference_object_key, reference_transcript, normalized_object_key)
    values ('a11ce000-0000-4000-8000-00000000a011', 'Voice', 'English',
            'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a011/reference.wav',
            'Ten or more characters.', 'b0b00000-0000-4000-8000-000000000002/b0b00000-0000-4000-8000-00000000b001/normalized.wav') $$,
  '42501', 'permission denied for table voices', 'a voice''s normalised audio key cannot be sent');
select throws_ok($$ insert into public.voices (id, name, language, reference_object_key, reference_transcript, source)
    values ('a11ce000-0000-4000-8000-00000000a011', 'Voice', 'English',
            'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a011/reference.wav',
            'Ten or more characters.', 'designed') $$,
  '42501', 'permission denied for table voices', 'a voice''s source cannot be sent');
select throws_ok($$ update public.tasks set cost = 0 $$,
  '42501', 'permission denied for table tasks', 'a task''s cost cannot be changed');
select throws_ok($$ update public.tasks set progress = 1, cancel_requested_at = now() $$,
  '42501', 'permission denied for table tasks', 'nothing but cancel_requested_at can be written on a task');
select throws_ok($$ update public.profiles set credits = credits + 100 $$,
  '42501', 'permission denied for table profiles', 'credits cannot be changed by the user');

-- Through the service role (server code), the user must be named and is kept.
select tests.authenticate_as_service_role();
select throws_ok($$ insert into public.design_previews (instruct, text, language) values ('A calm narrator', 'Hello', 'English') $$,
  '22023', 'user_id is required when not acting as a signed-in user', 'the service role must name the user');
select lives_ok($$ insert into public.design_previews (user_id, instruct, text, language, status, audio_object_key)
    values ('b0b00000-0000-4000-8000-000000000002', 'A calm narrator', 'Hello', 'English', 'completed', 'forged.wav') $$,
  'the service role may create work for a user');
select is((select status || '/' || coalesce(audio_object_key, 'no audio') from public.design_previews
           where user_id = 'b0b00000-0000-4000-8000-000000000002' and instruct = 'A calm narrator'),
  'pending/no audio', 'even the service role cannot forge a preview''s outcome');

select tests.clear_authentication();
select results_eq(
  $$ select id from public.voices where user_id = 'a11ce000-0000-4000-8000-000000000001' order by id $$,
  $$ values ('a11ce000-0000-4000-8000-00000000a001'::uuid), ('a11ce000-0000-4000-8000-00000000a002'),
            ('a11ce000-0000-4000-8000-00000000a010'), ('a11ce000-0000-4000-8000-00000000a020') $$,
  'only the valid voices were created');
select ok(tests.credits_match_ledger(), 'every balance still equals its ledger');

select * from finish();
rollback;
