-- worker.record_transcription stored any duration the listener's role passed: NaN,
-- infinity and negative seconds reached the owner's transcription. Like every other
-- number the listener reports (complete_task, record_usage), it must be finite and
-- not negative; a refused call changes nothing.
--   alice a11ce000-...-000000002921
begin;
select plan(6);

select tests.create_user('trd-alice@utter.test', 'a11ce000-0000-4000-8000-000000002921');
select tests.upload_reference('trd-alice@utter.test', 'a11ce000-0000-4000-8000-00000000a921');
select tests.authenticate_as('trd-alice@utter.test');
insert into public.transcriptions (id, audio_object_key)
values ('a11ce000-0000-4000-8000-00000000a921',
        tests.reference_key('trd-alice@utter.test', 'a11ce000-0000-4000-8000-00000000a921'));
select tests.clear_authentication();
select tests.claim((select task_id from public.transcriptions where id = 'a11ce000-0000-4000-8000-00000000a921'));

select throws_ok(format($$ select worker.record_transcription(%L, 'test-worker', 'Hello there.', 'English', 'NaN') $$,
    (select task_id from public.transcriptions where id = 'a11ce000-0000-4000-8000-00000000a921')),
  '22023', 'duration_seconds must be a finite number, got NaN', 'a NaN duration is refused');
select throws_ok(format($$ select worker.record_transcription(%L, 'test-worker', 'Hello there.', 'English', 'Infinity') $$,
    (select task_id from public.transcriptions where id = 'a11ce000-0000-4000-8000-00000000a921')),
  '22023', 'duration_seconds must be a finite number, got Infinity', 'an infinite duration is refused');
select throws_ok(format($$ select worker.record_transcription(%L, 'test-worker', 'Hello there.', 'English', -5) $$,
    (select task_id from public.transcriptions where id = 'a11ce000-0000-4000-8000-00000000a921')),
  '22023', 'record_transcription needs duration_seconds >= 0, got -5', 'a negative duration is refused');
select ok((select text is null and duration_seconds is null from public.transcriptions),
  'the refused calls changed nothing');
select is(worker.record_transcription((select task_id from public.transcriptions where id = 'a11ce000-0000-4000-8000-00000000a921'),
                                      'test-worker', 'Hello there.', 'English', 3.5),
  'recorded', 'a finite, positive duration is recorded');
select is((select duration_seconds from public.transcriptions), 3.5::real, 'with its duration');

select * from finish();
rollback;
