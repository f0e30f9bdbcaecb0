-- A reference transcript is what at most five minutes of speech says: a client cannot
-- store an unbounded one (it is sent to the engine with every generation of the
-- voice), neither when cloning nor when typing it later. The listener's recognised
-- transcript obeys the same bound.
--   alice a11ce000-...-000000002901
begin;
select plan(9);

select tests.create_user('rtl-alice@utter.test', 'a11ce000-0000-4000-8000-000000002901');
select tests.upload_reference('rtl-alice@utter.test', 'a11ce000-0000-4000-8000-00000000a901');
select tests.upload_reference('rtl-alice@utter.test', 'a11ce000-0000-4000-8000-00000000a902');
select tests.upload_reference('rtl-alice@utter.test', 'a11ce000-0000-4000-8000-00000000a903');

select tests.authenticate_as('rtl-alice@utter.test');
select throws_ok(format($$ insert into public.voices (id, name, language, reference_object_key, reference_transcript)
    values ('a11ce000-0000-4000-8000-00000000a901', 'Long', 'English', %L, repeat('w', 10001)) $$,
    tests.reference_key('rtl-alice@utter.test', 'a11ce000-0000-4000-8000-00000000a901')),
  '22023', 'reference_transcript is 10001 characters long; the limit is 10000',
  'a clone with a transcript over 10,000 characters is refused');
select lives_ok(format($$ insert into public.voices (id, name, language, reference_object_key, reference_transcript)
    values ('a11ce000-0000-4000-8000-00000000a901', 'Long', 'English', %L, repeat('w', 10000)) $$,
    tests.reference_key('rtl-alice@utter.test', 'a11ce000-0000-4000-8000-00000000a901')),
  'a transcript of exactly 10,000 characters is accepted');

-- Typed later, on a clone inserted without one.
select lives_ok(format($$ insert into public.voices (id, name, language, reference_object_key)
    values ('a11ce000-0000-4000-8000-00000000a902', 'Later', 'English', %L) $$,
    tests.reference_key('rtl-alice@utter.test', 'a11ce000-0000-4000-8000-00000000a902')),
  'a clone without a transcript is accepted');
select throws_ok($$ update public.voices set reference_transcript = repeat('w', 2000000)
    where id = 'a11ce000-0000-4000-8000-00000000a902' $$,
  '22023', 'reference_transcript is 2000000 characters long; the limit is 10000',
  'typing a 2,000,000-character transcript later is refused');
select ok((select reference_transcript is null from public.voices where id = 'a11ce000-0000-4000-8000-00000000a902'),
  'and the voice is left without one');
select lives_ok($$ update public.voices set reference_transcript = 'What the recording says, word for word.'
    where id = 'a11ce000-0000-4000-8000-00000000a902' $$,
  'a transcript of ordinary length can still be typed');

-- The listener's recognised transcript.
select lives_ok(format($$ insert into public.voices (id, name, language, reference_object_key)
    values ('a11ce000-0000-4000-8000-00000000a903', 'Heard', 'English', %L) $$,
    tests.reference_key('rtl-alice@utter.test', 'a11ce000-0000-4000-8000-00000000a903')),
  'another clone without a transcript is accepted');
select tests.clear_authentication();
select tests.claim(tests.task_for('a11ce000-0000-4000-8000-00000000a903'));
select throws_ok(format($$ select worker.record_transcript(%L, 'test-worker', repeat('w', 10001), 'English') $$,
    tests.task_for('a11ce000-0000-4000-8000-00000000a903')),
  '22023', 'reference_transcript is 10001 characters long; the limit is 10000',
  'a recognised transcript over the limit is refused too');
select is(worker.record_transcript(tests.task_for('a11ce000-0000-4000-8000-00000000a903'), 'test-worker',
                                   'What the recording says.', 'English'),
  'recorded', 'a recognised transcript of ordinary length is recorded');

select * from finish();
rollback;
