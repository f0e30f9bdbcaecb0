-- The upload sweeper took every reference upload no voice was made from, including the
-- recording of a transcription still waiting or running: a transcribe queue backed up
-- past the sweeper's window (or retries through an outage) lost the recording under
-- its task. An unfinished transcription's recording is kept; once the transcription
-- has ended, the upload is swept as before unless it became a voice.
--   alice a11ce000-...-000000002941
begin;
select plan(5);

select tests.create_user('sws-alice@utter.test', 'a11ce000-0000-4000-8000-000000002941');
select tests.upload_reference('sws-alice@utter.test', 'a11ce000-0000-4000-8000-00000000a941');
select tests.upload_reference('sws-alice@utter.test', 'a11ce000-0000-4000-8000-00000000a942');
select tests.authenticate_as('sws-alice@utter.test');
insert into public.transcriptions (id, audio_object_key) values
  ('a11ce000-0000-4000-8000-00000000a941', tests.reference_key('sws-alice@utter.test', 'a11ce000-0000-4000-8000-00000000a941')),
  ('a11ce000-0000-4000-8000-00000000a942', tests.reference_key('sws-alice@utter.test', 'a11ce000-0000-4000-8000-00000000a942'));
-- a942 ends: its owner cancels it.
update public.tasks set cancel_requested_at = now()
where id = (select task_id from public.transcriptions where id = 'a11ce000-0000-4000-8000-00000000a942');
select tests.clear_authentication();
update storage.objects set created_at = now() - interval '25 hours'
where name like 'a11ce000-0000-4000-8000-000000002941/%';

select is(private.sweep_abandoned_uploads(), 1, 'the sweep queues one upload');
select results_eq($$ select object_key from private.upload_sweeps $$,
  $$ values ('a11ce000-0000-4000-8000-000000002941/a11ce000-0000-4000-8000-00000000a942/reference.wav') $$,
  'the ended transcription''s recording, not the pending one''s');

select tests.claim((select task_id from public.transcriptions where id = 'a11ce000-0000-4000-8000-00000000a941'));
select is(private.sweep_abandoned_uploads(), 0, 'a running transcription''s recording is kept too');

select is(worker.record_transcription(
            (select task_id from public.transcriptions where id = 'a11ce000-0000-4000-8000-00000000a941'),
            'test-worker', 'What the recording says.', 'English', 3),
  'recorded', 'the transcription records its text');
select tests.complete((select task_id from public.transcriptions where id = 'a11ce000-0000-4000-8000-00000000a941'));
select is(private.sweep_abandoned_uploads(), 1, 'once it completed, its upload is swept like any other');

select * from finish();
rollback;
