-- A voice cannot be made from an upload the sweeper has queued for removal, but a
-- transcription could: it was accepted, queued and free, and then failed once cleanup
-- removed its recording. It is refused at insert with the voice's message.
--   alice a11ce000-...-000000002971
begin;
select plan(4);

select tests.create_user('tsw-alice@utter.test', 'a11ce000-0000-4000-8000-000000002971');
select tests.upload_reference('tsw-alice@utter.test', 'a11ce000-0000-4000-8000-00000000a971');
select tests.upload_reference('tsw-alice@utter.test', 'a11ce000-0000-4000-8000-00000000a972');
update storage.objects set created_at = now() - interval '25 hours'
where name like '%a11ce000-0000-4000-8000-00000000a971%';
select is(private.sweep_abandoned_uploads(), 1, 'the old upload is queued for removal');

select tests.authenticate_as('tsw-alice@utter.test');
select throws_ok(format($$ insert into public.transcriptions (id, audio_object_key) values ('a11ce000-0000-4000-8000-00000000a971', %L) $$,
    tests.reference_key('tsw-alice@utter.test', 'a11ce000-0000-4000-8000-00000000a971')),
  '22023', 'the upload at references/' || tests.reference_key('tsw-alice@utter.test', 'a11ce000-0000-4000-8000-00000000a971')
           || ' expired and is being removed',
  'a transcription of an upload on its way out is refused');
select is_empty($$ select 1 from public.tasks where type = 'transcribe' $$, 'and queues nothing');
select lives_ok(format($$ insert into public.transcriptions (id, audio_object_key) values ('a11ce000-0000-4000-8000-00000000a972', %L) $$,
    tests.reference_key('tsw-alice@utter.test', 'a11ce000-0000-4000-8000-00000000a972')),
  'a recent upload is still transcribed');
select tests.clear_authentication();

select * from finish();
rollback;
