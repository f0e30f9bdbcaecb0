-- The record-then-edit flow: an owner inserts a transcription of an uploaded
-- recording; a free `transcribe` task is queued in the same transaction; the listener
-- records the text and completes; everything reaches the owner's topic. Other users,
-- anon and forged columns are refused.
--   alice a11ce000-...-000000000001, bob b0b00000-...-000000000002
begin;
select plan(33);

select tests.create_user('tr-alice@utter.test', 'a11ce000-0000-4000-8000-000000000001');
select tests.create_user('tr-bob@utter.test', 'b0b00000-0000-4000-8000-000000000002');
-- Uploads land where the voice policy allows: <uid>/<id>/reference.<ext>.
select tests.upload_reference('tr-alice@utter.test', 'a11ce000-0000-4000-8000-00000000a001');
select tests.upload_reference('tr-alice@utter.test', 'a11ce000-0000-4000-8000-00000000a002', 'mp3');
select tests.upload_reference('tr-bob@utter.test', 'b0b00000-0000-4000-8000-00000000b001');

-- Inserting -----------------------------------------------------------------------------
delete from realtime.messages;
select tests.authenticate_as('tr-alice@utter.test');
select lives_ok($$ insert into public.transcriptions (id, audio_object_key)
    values ('a11ce000-0000-4000-8000-00000000a001',
            'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a001/reference.wav') $$,
  'the owner inserts a transcription of their upload (language defaults to Auto)');
select is((select status || '/' || language || '/' || (task_id is not null)::text from public.transcriptions
           where id = 'a11ce000-0000-4000-8000-00000000a001'),
  'pending/Auto/true', 'it is pending, with its task');
select is((select t.type || '/' || t.status || '/' || t.cost from public.tasks t
           join public.transcriptions r on r.task_id = t.id where r.id = 'a11ce000-0000-4000-8000-00000000a001'),
  'transcribe/pending/0', 'its transcribe task is pending and free');
select tests.clear_authentication();
select is(tests.queued('transcribe'), 1, 'one message waits in the transcribe queue');
select is(tests.credits('tr-alice@utter.test'), 100, 'no credits were spent');
select set_eq(
  $$ select event || ' ' || (payload ->> 'table') from realtime.messages
     where topic = 'user:a11ce000-0000-4000-8000-000000000001' $$,
  array['INSERT transcriptions', 'INSERT tasks'], 'the owner hears the transcription and its task');
select ok((select not (payload -> 'record' ? 'user_id') from realtime.messages
           where payload ->> 'table' = 'transcriptions'), 'the broadcast record carries no user_id');

select tests.authenticate_as('tr-alice@utter.test');
select throws_ok($$ insert into public.transcriptions (id, audio_object_key, language)
    values ('a11ce000-0000-4000-8000-00000000a002',
            'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a002/reference.mp3', 'Klingon') $$,
  '22023', 'unknown language ''Klingon''', 'an unknown language hint is refused');
select throws_ok($$ insert into public.transcriptions (id, audio_object_key)
    values ('a11ce000-0000-4000-8000-00000000a002',
            'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a002/reference.ogg') $$,
  '22023', null, 'a recording that is not WAV, MP3 or M4A is refused');
select throws_ok($$ insert into public.transcriptions (id, audio_object_key)
    values ('a11ce000-0000-4000-8000-00000000a003',
            'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a003/reference.wav') $$,
  '22023', 'no uploaded recording at references/a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a003/reference.wav',
  'a recording that was not uploaded is refused');
select throws_ok($$ insert into public.transcriptions (id, audio_object_key)
    values ('a11ce000-0000-4000-8000-00000000a004',
            'b0b00000-0000-4000-8000-000000000002/b0b00000-0000-4000-8000-00000000b001/reference.wav') $$,
  '22023', null, 'another user''s recording cannot be transcribed');
select throws_ok($$ insert into public.transcriptions (id, user_id, audio_object_key)
    values ('a11ce000-0000-4000-8000-00000000a002', 'b0b00000-0000-4000-8000-000000000002',
            'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a002/reference.mp3') $$,
  '22023', 'user_id must be your own user id', 'a transcription cannot be made for another user');
select throws_ok($$ insert into public.transcriptions (id, audio_object_key, status)
    values ('a11ce000-0000-4000-8000-00000000a002',
            'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a002/reference.mp3', 'completed') $$,
  '42501', 'permission denied for table transcriptions', 'a forged status is refused');
select throws_ok($$ insert into public.transcriptions (id, audio_object_key, text)
    values ('a11ce000-0000-4000-8000-00000000a002',
            'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a002/reference.mp3', 'Forged words') $$,
  '42501', 'permission denied for table transcriptions', 'a forged text is refused');
select throws_ok($$ update public.transcriptions set text = 'Edited in place' $$,
  '42501', 'permission denied for table transcriptions', 'a transcription cannot be updated (edit the text client-side)');
select tests.clear_authentication();

-- Other users and anon ------------------------------------------------------------------
select tests.authenticate_as('tr-bob@utter.test');
select is_empty($$ select 1 from public.transcriptions $$, 'another user sees none of them');
select is_empty($$ delete from public.transcriptions returning 1 $$, 'another user deletes none of them');
select tests.authenticate_as_anon();
select throws_ok($$ select 1 from public.transcriptions $$,
  '42501', 'permission denied for table transcriptions', 'anon cannot read transcriptions');
select throws_ok($$ insert into public.transcriptions (audio_object_key) values ('x') $$,
  '42501', 'permission denied for table transcriptions', 'anon cannot insert transcriptions');
select tests.clear_authentication();

-- The listener ------------------------------------------------------------------------------
select set_config('test.task', (select task_id::text from public.transcriptions
                                where id = 'a11ce000-0000-4000-8000-00000000a001'), true);
select is(tests.claim(current_setting('test.task')::uuid, 'worker-1') #>> '{job,audio_object_key}',
  'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a001/reference.wav',
  'the claimed job names the recording');
select is(tests.claim(current_setting('test.task')::uuid, 'worker-1') #>> '{job,output,key}',
  'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a001/normalized.wav',
  'its normalised audio goes where a voice with the same id keeps its own');
select throws_ok($$ select worker.record_transcription(current_setting('test.task')::uuid, 'worker-1', '   ', 'English', 12.5) $$,
  '22023', 'a transcription needs its text', 'an empty transcript is refused');
select is(worker.record_transcription(current_setting('test.task')::uuid, 'worker-2', 'Not mine to write.', 'English', 12.5),
  'claimed_elsewhere', 'a listener that does not hold the claim writes nothing');
select is(worker.record_transcription(current_setting('test.task')::uuid, 'worker-1', ' Words in the recording. ', 'English', 12.5),
  'recorded', 'the claim holder records the text');
delete from realtime.messages;
select is(tests.complete(current_setting('test.task')::uuid, 'worker-1'), 'completed', 'the task completes');
select is((select status || '/' || text || '/' || detected_language || '/' || duration_seconds from public.transcriptions
           where id = 'a11ce000-0000-4000-8000-00000000a001'),
  'completed/Words in the recording./English/12.5', 'the transcription is completed with its text, language and length');
select ok((select bool_or(payload #>> '{subject,record,status}' = 'completed'
                           and payload #>> '{subject,record,text}' = 'Words in the recording.')
           from realtime.messages where topic = 'user:a11ce000-0000-4000-8000-000000000001'
             and payload ->> 'table' = 'tasks' and payload #>> '{subject,table}' = 'transcriptions'),
  'the owner hears the completed transcription with its text, in its task''s message');
select is(tests.archived('transcribe'), 1, 'its message was archived');

-- Failure and delete ------------------------------------------------------------------------
select tests.authenticate_as('tr-alice@utter.test');
insert into public.transcriptions (id, audio_object_key)
values ('a11ce000-0000-4000-8000-00000000a002',
        'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a002/reference.mp3');
select tests.clear_authentication();
select set_config('test.failing', (select task_id::text from public.transcriptions
                                   where id = 'a11ce000-0000-4000-8000-00000000a002'), true);
select tests.claim(current_setting('test.failing')::uuid, 'worker-1');
select worker.fail_task(current_setting('test.failing')::uuid, 'worker-1',
                        'no speech found in the recording', false, 0, 3);
select is((select status || '/' || error from public.transcriptions where id = 'a11ce000-0000-4000-8000-00000000a002'),
  'failed/no speech found in the recording', 'a failed task fails the transcription with the reason');
select tests.authenticate_as('tr-alice@utter.test');
select lives_ok($$ delete from public.transcriptions where id = 'a11ce000-0000-4000-8000-00000000a001' $$,
  'the owner deletes a transcription');
select tests.clear_authentication();
select ok((select bool_or(message -> 'keys' ? 'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a001/reference.wav')
           from pgmq.q_storage_cleanup), 'its recording is queued for removal');

-- A voice made from the transcription's upload (same id and key) keeps it.
select tests.upload_reference('tr-alice@utter.test', 'a11ce000-0000-4000-8000-00000000a003');
select tests.authenticate_as('tr-alice@utter.test');
insert into public.transcriptions (id, audio_object_key)
values ('a11ce000-0000-4000-8000-00000000a003',
        'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a003/reference.wav');
select lives_ok($$ insert into public.voices (id, name, language, reference_object_key, reference_transcript)
    values ('a11ce000-0000-4000-8000-00000000a003', 'From a transcription', 'English',
            'a11ce000-0000-4000-8000-000000000001/a11ce000-0000-4000-8000-00000000a003/reference.wav',
            'The edited words of the recording.') $$,
  'a voice is made from the transcription''s upload, with the same id and key');
delete from public.transcriptions where id = 'a11ce000-0000-4000-8000-00000000a003';
select tests.clear_authentication();
select ok((select not coalesce(bool_or(message::text like '%a11ce000-0000-4000-8000-00000000a003%'), false)
           from pgmq.q_storage_cleanup),
  'deleting that transcription leaves the voice''s recording alone');

select * from finish();
rollback;
