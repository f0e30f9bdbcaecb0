-- Tasks as a client sees them: only the columns docs/client-contract.md lists are
-- selectable (column grants; internal columns stay where the listener's functions use
-- them), public.task_list is the default list (dismissed tasks left out), and an owner
-- dismisses an ended task by writing dismissed_at (kept for accounting).
--   alice a11ce000-...-000000000001: ready voice ...a001, completed generation ...a002,
--     pending preview ...a003
--   bob   b0b00000-...-000000000002
begin;
select plan(27);

select tests.create_user('dismiss-alice@utter.test', 'a11ce000-0000-4000-8000-000000000001');
select tests.create_user('dismiss-bob@utter.test', 'b0b00000-0000-4000-8000-000000000002');
select tests.make_ready_voice('dismiss-alice@utter.test', 'Alice', 'a11ce000-0000-4000-8000-00000000a001');
insert into public.generations (id, user_id, voice_id, text, language) values
  ('a11ce000-0000-4000-8000-00000000a002', 'a11ce000-0000-4000-8000-000000000001',
   'a11ce000-0000-4000-8000-00000000a001', 'Done.', 'English');
select tests.claim(tests.task_for('a11ce000-0000-4000-8000-00000000a002'));
select tests.complete(tests.task_for('a11ce000-0000-4000-8000-00000000a002'));
insert into public.design_previews (id, user_id, instruct, text, language) values
  ('a11ce000-0000-4000-8000-00000000a003', 'a11ce000-0000-4000-8000-000000000001', 'A calm narrator', 'Hi.', 'English');
select set_config('test.done', tests.task_for('a11ce000-0000-4000-8000-00000000a002')::text, true);
select set_config('test.waiting', tests.task_for('a11ce000-0000-4000-8000-00000000a003')::text, true);

-- Columns ------------------------------------------------------------------------------------------
select set_eq(
  $$ select column_name::text from information_schema.column_privileges
     where table_schema = 'public' and table_name = 'tasks' and grantee = 'authenticated' and privilege_type = 'SELECT' $$,
  array['id', 'type', 'status', 'progress', 'error', 'cost', 'attempts', 'generation_id', 'design_preview_id',
        'voice_id', 'cancel_requested_at', 'dismissed_at', 'created_at', 'started_at', 'ended_at'],
  'a client may select exactly the task columns the contract lists');
select tests.authenticate_as('dismiss-alice@utter.test');
select throws_ok(format('select %I from public.tasks', col),
  '42501', 'permission denied for table tasks', 'a client cannot select ' || col)
from unnest(array['msg_id', 'engine_call_id', 'claimed_by', 'heartbeat_at', 'user_id', 'updated_at']) col;
select throws_ok($$ select * from public.tasks $$,
  '42501', 'permission denied for table tasks', 'select * on tasks is refused (name the columns, or use task_list)');
select throws_ok($$ update public.tasks set cancel_requested_at = now() where id = current_setting('test.waiting')::uuid returning * $$,
  '42501', 'permission denied for table tasks', 'returning * is refused too');
select is((select status from public.tasks where id = current_setting('test.done')::uuid), 'completed',
  'the listed columns are selectable');
select is((select count(*)::int from public.task_list), 3, 'task_list serves select * with the same columns');
select is_empty($$ select 1 from public.task_list t where to_jsonb(t) ?| array['msg_id', 'engine_call_id', 'claimed_by', 'heartbeat_at', 'user_id'] $$,
  'task_list carries no internal column');

-- Dismiss ------------------------------------------------------------------------------------------
select results_eq(
  $$ update public.tasks set dismissed_at = '2000-01-01' where id = current_setting('test.done')::uuid
     returning dismissed_at = now() $$,
  $$ values (true) $$, 'the owner dismisses an ended task; the server sets the time');
select results_eq($$ select type from public.task_list order by type $$,
  $$ values ('clone'), ('design_preview') $$, 'a dismissed task leaves the default list');
select is((select count(*)::int from public.tasks where dismissed_at is not null), 1,
  'and stays in tasks, for accounting');
select is((select task_type from public.credit_activity where task_id = current_setting('test.done')::uuid and reason = 'charge'),
  'generate', 'its charge stays in the credit activity');
with undone as (
  update public.tasks set dismissed_at = null where id = current_setting('test.done')::uuid returning 1
)
select is((select count(*)::int from undone) || '/' || (select count(*) from public.task_list), '0/2',
  'a dismissal cannot be taken back (the update changes nothing)');
select throws_ok($$ update public.tasks set dismissed_at = now() where id = current_setting('test.waiting')::uuid $$,
  '22023', format('task %s is pending; only an ended task can be dismissed', current_setting('test.waiting')),
  'a task still queued cannot be dismissed');
select lives_ok($$ update public.tasks set dismissed_at = now() where status in ('completed', 'failed', 'cancelled') $$,
  'dismissing every ended task at once (filtered by status) works');
select throws_ok($$ update public.tasks set dismissed_at = now(), status = 'failed' where id = current_setting('test.done')::uuid $$,
  '42501', 'permission denied for table tasks', 'a forged status beside a dismissal is refused');
select throws_ok($$ update public.tasks set dismissed_at = now(), cost = 0 where id = current_setting('test.done')::uuid $$,
  '42501', 'permission denied for table tasks', 'a forged cost beside a dismissal is refused');
update public.tasks set cancel_requested_at = now() where id = current_setting('test.waiting')::uuid;
select results_eq(
  $$ update public.tasks set dismissed_at = now() where id = current_setting('test.waiting')::uuid returning status $$,
  $$ values ('cancelled') $$, 'once cancelled, it can be dismissed');

-- Another user, anon ---------------------------------------------------------------------------------
select tests.authenticate_as('dismiss-bob@utter.test');
select is_empty($$ select 1 from public.task_list $$, 'another user lists none of alice''s tasks');
with dismissed as (update public.tasks set dismissed_at = now() returning 1)
select is(count(*)::int, 0, 'another user dismisses none of alice''s tasks') from dismissed;
select tests.authenticate_as_anon();
select throws_ok($$ select * from public.task_list $$, '42501', 'permission denied for view task_list',
  'anon cannot list tasks');
select throws_ok($$ update public.tasks set dismissed_at = now() $$, '42501', 'permission denied for table tasks',
  'anon cannot dismiss tasks');

-- The listener's view is unchanged ------------------------------------------------------------------------
select tests.clear_authentication();
select ok((select msg_id is not null from public.tasks where id = current_setting('test.done')::uuid),
  'internal columns stay on tasks, where the listener''s functions keep them');

select * from finish();
rollback;
