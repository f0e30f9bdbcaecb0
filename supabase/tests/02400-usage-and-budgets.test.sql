-- Cost controls: engine seconds recorded per task, daily budgets enforced at insert
-- time with their own SQLSTATEs, and storage bytes per user readable by their owner.
begin;
select plan(31);

select tests.create_user('usage-alice@utter.test', 'a11ce000-0000-4000-8000-000000000601');
select tests.create_user('usage-bob@utter.test', 'b0b00000-0000-4000-8000-000000000602');
select tests.make_ready_voice('usage-alice@utter.test', 'Alice', 'a11ce000-0000-4000-8000-00000000a601');

update private.usage_budgets set daily_gpu_seconds = 100 where scope = 'per_user';
update private.usage_budgets set daily_gpu_seconds = 1000 where scope = 'global';

-- Recording ---------------------------------------------------------------------
select tests.authenticate_as('usage-alice@utter.test');
insert into public.generations (id, voice_id, text, language)
values ('a11ce000-0000-4000-8000-00000000a611', 'a11ce000-0000-4000-8000-00000000a601', 'First.', 'English');
select tests.clear_authentication();
select tests.claim(tests.task_for('a11ce000-0000-4000-8000-00000000a611'));

select is(tests.outcome_as('utter_worker', format(
            $$ select worker.record_usage(%L, 'modal', 60.5) $$, tests.task_for('a11ce000-0000-4000-8000-00000000a611'))),
          'ok', 'the listener''s role may record a task''s engine seconds');
select results_eq(
  $$ select engine, gpu_seconds, task_type, user_id from private.task_usage $$,
  $$ values ('modal'::text, 60.5::numeric, 'generate'::text, 'a11ce000-0000-4000-8000-000000000601'::uuid) $$,
  'the task''s engine, seconds, type and owner are recorded');
select results_eq(
  $$ select gpu_seconds, tasks from private.daily_usage where user_id = 'a11ce000-0000-4000-8000-000000000601' $$,
  $$ values (60.5::numeric, 1) $$,
  'today''s total for the user holds the task');
select ok(worker.record_usage(tests.task_for('a11ce000-0000-4000-8000-00000000a611'), 'modal', 70),
  'recording the same task again is accepted');
select results_eq(
  $$ select gpu_seconds, tasks from private.daily_usage where user_id = 'a11ce000-0000-4000-8000-000000000601' $$,
  $$ values (70::numeric, 1) $$,
  'a repeated record replaces the task''s figure instead of adding to it');
select is((select count(*)::integer from private.task_usage), 1, 'still one usage row for the task');
select is(worker.record_usage('00000000-0000-4000-8000-0000000000ff', 'modal', 1), false,
  'an unknown task records nothing and says so');
select throws_ok(
  format($$ select worker.record_usage(%L, 'modal', -1) $$, tests.task_for('a11ce000-0000-4000-8000-00000000a611')),
  '22023', 'record_usage needs gpu_seconds >= 0, got -1', 'negative seconds are refused');
select throws_ok(
  format($$ select worker.record_usage(%L, 'modal', 'NaN') $$, tests.task_for('a11ce000-0000-4000-8000-00000000a611')),
  '22023', 'record_usage needs gpu_seconds >= 0, got NaN', 'NaN seconds are refused');
select throws_ok(
  format($$ select worker.record_usage(%L, '', 1) $$, tests.task_for('a11ce000-0000-4000-8000-00000000a611')),
  '22023', 'record_usage needs an engine name of 1 to 40 characters, got ''''', 'an empty engine name is refused');
select is(tests.complete(tests.task_for('a11ce000-0000-4000-8000-00000000a611')), 'completed',
  'the task then completes as before');

-- Nobody else reads or writes usage ------------------------------------------------
select tests.authenticate_as('usage-alice@utter.test');
select throws_ok($$ select * from private.task_usage $$, '42501', null, 'a user cannot read the usage table');
select throws_ok($$ select * from private.usage_budgets $$, '42501', null, 'a user cannot read the budgets');
select throws_ok($$ update private.usage_budgets set daily_gpu_seconds = null $$, '42501', null,
  'a user cannot lift the budgets');
select throws_ok(format($$ select worker.record_usage(%L, 'modal', 0) $$, tests.task_for('a11ce000-0000-4000-8000-00000000a611')),
  '42501', null, 'a user cannot record usage');
select tests.clear_authentication();
select tests.authenticate_as_anon();
select throws_ok($$ select * from public.storage_usage $$, '42501', null, 'anon cannot read storage usage');
select tests.clear_authentication();

-- The per-user budget ------------------------------------------------------------
select tests.authenticate_as('usage-alice@utter.test');
select lives_ok(
  $$ insert into public.generations (voice_id, text, language)
     values ('a11ce000-0000-4000-8000-00000000a601', 'Under budget.', 'English') $$,
  'under the per-user budget (70 of 100 s) work is accepted');
select tests.clear_authentication();
select worker.record_usage(tests.task_for('a11ce000-0000-4000-8000-00000000a611'), 'modal', 100);
select tests.authenticate_as('usage-alice@utter.test');
select throws_ok(
  $$ insert into public.generations (voice_id, text, language)
     values ('a11ce000-0000-4000-8000-00000000a601', 'Over budget.', 'English') $$,
  'PT403', 'your daily GPU budget is spent (100 of 100 seconds today)',
  'a generation is refused once the user''s daily budget is spent, with its own SQLSTATE');
select throws_ok(
  $$ insert into public.design_previews (instruct, text, language)
     values ('A bright voice', 'Over budget.', 'English') $$,
  'PT403', 'your daily GPU budget is spent (100 of 100 seconds today)',
  'a design preview is refused too');
select is((select count(*)::integer from public.generations), 2,
  'the refused insert left no generation behind');
select tests.clear_authentication();
select is(tests.credits('usage-alice@utter.test'), 98,
  'the refused inserts charged nothing (two accepted generations cost 1 credit each)');
select is((select count(*)::integer from public.tasks where user_id = 'a11ce000-0000-4000-8000-000000000601'), 3,
  'and created no task (the clone and two generations)');

select tests.make_ready_voice('usage-bob@utter.test', 'Bob', 'b0b00000-0000-4000-8000-00000000b601');
select tests.authenticate_as('usage-bob@utter.test');
select lives_ok(
  $$ insert into public.generations (voice_id, text, language)
     values ('b0b00000-0000-4000-8000-00000000b601', 'Bob has his own budget.', 'English') $$,
  'another user''s work is still accepted');
select tests.clear_authentication();

-- Budgets are per day: yesterday's spending does not count.
update private.daily_usage set day = day - 1 where user_id = 'a11ce000-0000-4000-8000-000000000601';
select tests.authenticate_as('usage-alice@utter.test');
select lives_ok(
  $$ insert into public.generations (voice_id, text, language)
     values ('a11ce000-0000-4000-8000-00000000a601', 'A new day.', 'English') $$,
  'yesterday''s spending does not count against today''s budget');
select tests.clear_authentication();

-- The global budget --------------------------------------------------------------
insert into private.daily_usage (day, user_id, gpu_seconds, tasks)
values (private.usage_day(), 'c0c00000-0000-4000-8000-000000000603', 1000, 40);
select tests.authenticate_as('usage-bob@utter.test');
select throws_ok(
  $$ insert into public.generations (voice_id, text, language)
     values ('b0b00000-0000-4000-8000-00000000b601', 'The service is spent.', 'English') $$,
  'PT503', 'the service''s daily GPU budget is spent (1000 of 1000 seconds today)',
  'every user is refused once the global daily budget is spent, with its own SQLSTATE');
select tests.clear_authentication();
update private.usage_budgets set daily_gpu_seconds = null;
select tests.authenticate_as('usage-bob@utter.test');
select lives_ok(
  $$ insert into public.generations (voice_id, text, language)
     values ('b0b00000-0000-4000-8000-00000000b601', 'No limit.', 'English') $$,
  'a null budget means no limit');
select tests.clear_authentication();
select throws_ok($$ update private.usage_budgets set daily_gpu_seconds = 0 where scope = 'global' $$,
  '23514', null, 'a budget of zero is refused (null is how to say unlimited)');

-- Storage bytes per user ------------------------------------------------------------
-- What the user's storage policies let them read: their uploads and finished audio.
-- Objects written by the listener with the service role have no owner; the key says whose.
insert into storage.objects (bucket_id, name, owner, owner_id, metadata) values
  ('references', 'a11ce000-0000-4000-8000-000000000601/a11ce000-0000-4000-8000-00000000a601/normalized.wav',
   null, null, '{"size": 1000}'),
  ('generations', 'a11ce000-0000-4000-8000-000000000601/a11ce000-0000-4000-8000-00000000a611.wav',
   null, null, '{"size": 500}'),
  ('generations', 'a11ce000-0000-4000-8000-000000000601/unfinished.wav', null, null, '{"size": 9999}'),
  ('references', 'b0b00000-0000-4000-8000-000000000602/b0b00000-0000-4000-8000-00000000b601/normalized.wav',
   null, null, '{"size": 7}');
select tests.authenticate_as('usage-alice@utter.test');
select results_eq(
  $$ select bucket, objects, bytes from public.storage_usage order by bucket $$,
  $$ values ('generations'::text, 1::bigint, 500::bigint), ('references', 2, 1000) $$,
  'a user sees their objects and bytes per bucket: the upload, the validated voice and the finished audio');
select is((select count(*)::integer from public.storage_usage where user_id <> 'a11ce000-0000-4000-8000-000000000601'), 0,
  'and nobody else''s');
select tests.clear_authentication();
select tests.authenticate_as('usage-bob@utter.test');
select results_eq(
  $$ select bucket, bytes from public.storage_usage $$,
  $$ values ('references'::text, 7::bigint) $$,
  'another user sees only theirs');
select tests.clear_authentication();
select is((select sum(bytes)::bigint from public.storage_usage),
          (select sum((metadata ->> 'size')::bigint)::bigint from storage.objects),
  'the operator sees every user''s bytes, unfinished output included');

select * from finish();
rollback;
