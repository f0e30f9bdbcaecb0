-- The operator's view: queues with their oldest waiting message, running work per
-- listener, recent failures and today's spend, readable by the listener's role only.
begin;
select plan(14);
select tests.allow_concurrent_jobs(10);

select tests.create_user('status-alice@utter.test', 'a11ce000-0000-4000-8000-000000000701');
select tests.make_ready_voice('status-alice@utter.test', 'Alice', 'a11ce000-0000-4000-8000-00000000a701');
select tests.authenticate_as('status-alice@utter.test');
insert into public.generations (id, voice_id, text, language) values
  ('a11ce000-0000-4000-8000-00000000a711', 'a11ce000-0000-4000-8000-00000000a701', 'One.', 'English'),
  ('a11ce000-0000-4000-8000-00000000a712', 'a11ce000-0000-4000-8000-00000000a701', 'Two.', 'English'),
  ('a11ce000-0000-4000-8000-00000000a713', 'a11ce000-0000-4000-8000-00000000a701', 'Three.', 'English');
insert into public.design_previews (id, instruct, text, language)
values ('a11ce000-0000-4000-8000-00000000a7d1', 'A calm narrator', 'Hello.', 'English');
select tests.clear_authentication();
update pgmq.q_generate set enqueued_at = now() - interval '90 seconds'
where msg_id = (select msg_id from public.tasks where generation_id = 'a11ce000-0000-4000-8000-00000000a711');

select results_eq(
  $$ select queue, waiting, hidden from worker.status_queues() $$,
  $$ values ('generate'::text, 3::bigint, 0::bigint), ('design_preview', 1, 0), ('clone', 0, 0), ('transcribe', 0, 0),
            ('storage_cleanup', 0, 0), ('checkout', 0, 0) $$,
  'every queue is listed, in a fixed order, with its waiting messages');
select results_eq(
  $$ select oldest_task_id::uuid, oldest_age_seconds between 89 and 120 from worker.status_queues() where queue = 'generate' $$,
  $$ select tests.task_for('a11ce000-0000-4000-8000-00000000a711'), true $$,
  'the oldest waiting message names its task and its age');
select is((select oldest_msg_id from worker.status_queues() where queue = 'clone'), null,
  'an empty queue has no oldest message');

-- Claims: one listener runs two, another one.
select worker.claim_task('generate', t.msg_id, t.id, 'listener-a', 3) from public.tasks t
where t.generation_id in ('a11ce000-0000-4000-8000-00000000a711', 'a11ce000-0000-4000-8000-00000000a712');
select worker.claim_task('design_preview', t.msg_id, t.id, 'listener-b', 3) from public.tasks t
where t.design_preview_id = 'a11ce000-0000-4000-8000-00000000a7d1';
select pgmq.set_vt('generate', t.msg_id, 60) from public.tasks t
where t.generation_id in ('a11ce000-0000-4000-8000-00000000a711', 'a11ce000-0000-4000-8000-00000000a712');
select results_eq(
  $$ select waiting, hidden from worker.status_queues() where queue = 'generate' $$,
  $$ values (1::bigint, 2::bigint) $$,
  'claimed messages count as hidden, not waiting');
select results_eq(
  $$ select worker_id, running, by_type from worker.status_in_flight() $$,
  $$ values ('listener-a'::text, 2::bigint, '{"generate": 2}'::jsonb), ('listener-b', 1, '{"design_preview": 1}') $$,
  'running work is listed per listener, busiest first, by type');

-- Failures within the hour.
select worker.fail_task(tests.task_for('a11ce000-0000-4000-8000-00000000a711'), 'listener-a', 'the voice is unusable', false, 0, 3);
select worker.fail_task(tests.task_for('a11ce000-0000-4000-8000-00000000a712'), 'listener-a', 'the voice is unusable', false, 0, 3);
select worker.fail_task(tests.task_for('a11ce000-0000-4000-8000-00000000a7d1'), 'listener-b', 'model crashed', false, 0, 3);
-- Ended tasks never change (a trigger guards them): step around it, as the table's
-- owner and inside this rolled-back transaction, to age one.
alter table public.tasks disable trigger tasks_before_update;
update public.tasks set ended_at = now() - interval '2 hours'
where design_preview_id = 'a11ce000-0000-4000-8000-00000000a7d1';
alter table public.tasks enable trigger tasks_before_update;
select results_eq(
  $$ select type, reason, failures from worker.status_failures() $$,
  $$ values ('generate'::text, 'the voice is unusable'::text, 2::bigint) $$,
  'failures of the last hour are grouped by type and reason; older ones are left out');
select is((select sum(failures)::integer from worker.status_failures(interval '3 hours')), 3,
  'a longer window includes the older failure');
select throws_ok($$ select * from worker.status_failures(interval '0') $$, '22023',
  'status_failures needs a positive interval, got 00:00:00', 'a window must be positive');
select is((select count(*)::integer from worker.status_in_flight()), 0, 'nothing runs any more');

-- Spend against the budgets.
update private.usage_budgets set daily_gpu_seconds = 500 where scope = 'per_user';
update private.usage_budgets set daily_gpu_seconds = 5000 where scope = 'global';
select tests.claim(tests.task_for('a11ce000-0000-4000-8000-00000000a713'));
select worker.record_usage(tests.task_for('a11ce000-0000-4000-8000-00000000a713'), 'modal', 42.5);
insert into private.daily_usage (day, user_id, gpu_seconds, tasks)
values (private.usage_day(), 'b0b00000-0000-4000-8000-000000000702', 100, 3),
       (private.usage_day() - 1, 'b0b00000-0000-4000-8000-000000000702', 900, 9);
select results_eq(
  $$ select scope, user_id, used_gpu_seconds, budget_gpu_seconds, tasks from worker.status_spend() $$,
  $$ values ('global'::text, null::uuid, 142.5::numeric, 5000::numeric, 4::bigint),
            ('per_user', 'b0b00000-0000-4000-8000-000000000702'::uuid, 100, 500, 3),
            ('per_user', 'a11ce000-0000-4000-8000-000000000701'::uuid, 42.5, 500, 1) $$,
  'today''s spend: the service''s total, then the biggest spenders, against their budgets');
select is((select count(*)::integer from worker.status_spend(1) where scope = 'per_user'), 1,
  'the number of users listed is the caller''s choice');

-- Who may read it.
select is(tests.outcome_as('utter_worker',
  'select * from worker.status_queues(), worker.status_in_flight(), worker.status_failures(), worker.status_spend()'),
  'ok', 'the listener''s role may read the operator''s view');
select tests.authenticate_as('status-alice@utter.test');
select throws_ok($$ select * from worker.status_spend() $$, '42501', null, 'a user may not');
select tests.clear_authentication();
select tests.authenticate_as_anon();
select throws_ok($$ select * from worker.status_queues() $$, '42501', null, 'nor may anon');
select tests.clear_authentication();

select * from finish();
rollback;
