-- The daily GPU budgets stop all new engine work at insert time: a transcription and a
-- clone inserted without a transcript run speech recognition on the engine, and both
-- are free, so without the budget an account, or many anonymous ones, could spend the
-- service's engine time on them. A clone with a typed transcript (checked on the
-- listener's CPU) and a saved designed voice run no engine and are not stopped.
--   alice a11ce000-...-000000002911, bob b0b00000-...-000000002912
begin;
select plan(14);

select tests.create_user('bud-alice@utter.test', 'a11ce000-0000-4000-8000-000000002911');
select tests.create_user('bud-bob@utter.test', 'b0b00000-0000-4000-8000-000000002912');
select tests.upload_reference('bud-alice@utter.test', 'a11ce000-0000-4000-8000-00000000a911');
select tests.upload_reference('bud-alice@utter.test', 'a11ce000-0000-4000-8000-00000000a912');
select tests.upload_reference('bud-alice@utter.test', 'a11ce000-0000-4000-8000-00000000a913');
select tests.upload_reference('bud-bob@utter.test', 'b0b00000-0000-4000-8000-00000000b911');
select tests.upload_reference('bud-bob@utter.test', 'b0b00000-0000-4000-8000-00000000b912');
select tests.make_completed_preview('bud-alice@utter.test', 'a11ce000-0000-4000-8000-00000000a919');

update private.usage_budgets set daily_gpu_seconds = 100 where scope = 'per_user';
update private.usage_budgets set daily_gpu_seconds = 1000 where scope = 'global';
-- Alice spent her day's engine time.
insert into private.daily_usage (day, user_id, gpu_seconds, tasks)
values (private.usage_day(), 'a11ce000-0000-4000-8000-000000002911', 100, 3);

select tests.authenticate_as('bud-alice@utter.test');
select throws_ok(format($$ insert into public.voices (id, name, language, reference_object_key)
    values ('a11ce000-0000-4000-8000-00000000a911', 'Clone', 'English', %L) $$,
    tests.reference_key('bud-alice@utter.test', 'a11ce000-0000-4000-8000-00000000a911')),
  'PT403', 'your daily GPU budget is spent (100 of 100 seconds today)',
  'a clone to be transcribed past the user''s budget is refused');
select throws_ok(format($$ insert into public.transcriptions (id, audio_object_key) values ('a11ce000-0000-4000-8000-00000000a912', %L) $$,
    tests.reference_key('bud-alice@utter.test', 'a11ce000-0000-4000-8000-00000000a912')),
  'PT403', 'your daily GPU budget is spent (100 of 100 seconds today)',
  'a transcription past the user''s budget is refused');
select is_empty($$ select 1 from public.tasks where type in ('clone', 'transcribe') $$,
  'the refused inserts left no task');
select is_empty($$ select 1 from public.transcriptions $$, 'nor a transcription');
select is_empty($$ select 1 from public.voices $$, 'nor a voice');
select lives_ok(format($$ insert into public.voices (id, name, language, reference_object_key, reference_transcript)
    values ('a11ce000-0000-4000-8000-00000000a913', 'Typed', 'English', %L, 'What the recording says.') $$,
    tests.reference_key('bud-alice@utter.test', 'a11ce000-0000-4000-8000-00000000a913')),
  'a clone with a typed transcript (no recognition) is still accepted');
select lives_ok($$ insert into public.voices (name, design_preview_id)
    values ('Designed', 'a11ce000-0000-4000-8000-00000000a919') $$,
  'and so is saving a designed voice');
select tests.clear_authentication();
select is(tests.queued('transcribe'), 0, 'nothing was queued for transcription');

-- Bob is within his own budget until the service's is spent.
select tests.authenticate_as('bud-bob@utter.test');
select lives_ok(format($$ insert into public.transcriptions (id, audio_object_key) values ('b0b00000-0000-4000-8000-00000000b911', %L) $$,
    tests.reference_key('bud-bob@utter.test', 'b0b00000-0000-4000-8000-00000000b911')),
  'another user''s transcription within budget is accepted');
select tests.clear_authentication();
insert into private.daily_usage (day, user_id, gpu_seconds, tasks)
values (private.usage_day(), '00000000-0000-4000-8000-0000000029ff', 900, 30);
select tests.authenticate_as('bud-bob@utter.test');
select throws_ok(format($$ insert into public.voices (id, name, language, reference_object_key)
    values ('b0b00000-0000-4000-8000-00000000b912', 'Clone', 'English', %L) $$,
    tests.reference_key('bud-bob@utter.test', 'b0b00000-0000-4000-8000-00000000b912')),
  'PT503', 'the service''s daily GPU budget is spent (1000 of 1000 seconds today)',
  'a clone to be transcribed past the service''s budget is refused');
select throws_ok(format($$ insert into public.transcriptions (id, audio_object_key) values ('b0b00000-0000-4000-8000-00000000b912', %L) $$,
    tests.reference_key('bud-bob@utter.test', 'b0b00000-0000-4000-8000-00000000b912')),
  'PT503', 'the service''s daily GPU budget is spent (1000 of 1000 seconds today)',
  'a transcription past the service''s budget is refused');
select tests.clear_authentication();

-- Unlimited budgets stop nothing.
update private.usage_budgets set daily_gpu_seconds = null;
select tests.authenticate_as('bud-alice@utter.test');
select lives_ok(format($$ insert into public.voices (id, name, language, reference_object_key)
    values ('a11ce000-0000-4000-8000-00000000a911', 'Clone', 'English', %L) $$,
    tests.reference_key('bud-alice@utter.test', 'a11ce000-0000-4000-8000-00000000a911')),
  'with the budgets lifted the clone to be transcribed is accepted');
select lives_ok(format($$ insert into public.transcriptions (id, audio_object_key) values ('a11ce000-0000-4000-8000-00000000a912', %L) $$,
    tests.reference_key('bud-alice@utter.test', 'a11ce000-0000-4000-8000-00000000a912')),
  'and so is the transcription');
select tests.clear_authentication();
select is(tests.queued('clone') + tests.queued('transcribe'), 4, 'two clones and two transcriptions were queued in all');

select * from finish();
rollback;
