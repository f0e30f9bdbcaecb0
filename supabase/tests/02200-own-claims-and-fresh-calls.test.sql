-- worker.claim_task: a listener's own lapsed claim re-attaches (no new attempt) while
-- another listener's claim of a lapsed task is a new attempt; a retried task starts a
-- fresh remote call, a task handed back on shutdown keeps its call.
begin;
select plan(11);

select tests.create_user('claimer@example.com', 'c1a10000-0000-4000-8000-000000000001');
select tests.authenticate_as('claimer@example.com');
insert into design_previews (id, instruct, text, language) values
  ('c1a10000-0000-4000-8000-0000000000a1', 'A calm voice', 'Lapsed and re-read.', 'English'),
  ('c1a10000-0000-4000-8000-0000000000a2', 'A calm voice', 'Handed back.', 'English');
select tests.clear_authentication();

create temporary table task_ids on commit drop as
  select tests.task_for('c1a10000-0000-4000-8000-0000000000a1') as lapsed,
         tests.task_for('c1a10000-0000-4000-8000-0000000000a2') as released;
grant select on task_ids to utter_worker;

select is(tests.claim((select lapsed from task_ids), 'listener-a') ->> 'reattached', 'false',
  'a first claim is not a re-attachment');
-- The claim lapses (an outage longer than the visibility timeout) and the same
-- listener reads the message again.
select pgmq.set_vt('design_preview', (select msg_id from tasks where id = (select lapsed from task_ids)), 0);
select is(tests.claim((select lapsed from task_ids), 'listener-a') ->> 'reattached', 'true',
  'the same listener re-reading its own lapsed claim re-attaches');
select is((select attempts from tasks where id = (select lapsed from task_ids)), 1,
  'a re-attachment counts no new attempt');
select is((select claimed_by from tasks where id = (select lapsed from task_ids)), 'listener-a',
  'the re-attached task stays with its listener');

select is(tests.claim((select lapsed from task_ids), 'listener-b') ->> 'reattached', 'false',
  'another listener taking a lapsed claim does not re-attach');
select is((select attempts from tasks where id = (select lapsed from task_ids)), 2,
  'another listener''s claim is a new attempt');

-- The Modal call of that attempt fails: the retry must not re-read it.
select worker.record_engine_call((select lapsed from task_ids), 'listener-b', 'fc-failed');
select is(worker.fail_task((select lapsed from task_ids), 'listener-b', 'the call timed out', true, 0, 3),
  'retrying', 'a retryable failure goes back to the queue');
select is((select engine_call_id from tasks where id = (select lapsed from task_ids)), null,
  'a retry forgets the failed remote call');
select is(tests.claim((select lapsed from task_ids), 'listener-b') #>> '{job,resume_call_id}', null,
  'the next attempt starts a fresh call');

-- A shutdown hands the task back with its call still running at the provider: the
-- next claimer re-attaches to it.
select tests.claim((select released from task_ids), 'listener-a');
select worker.record_engine_call((select released from task_ids), 'listener-a', 'fc-running');
select worker.release_task((select released from task_ids), 'listener-a');
select is(tests.claim((select released from task_ids), 'listener-b') #>> '{job,resume_call_id}', 'fc-running',
  'a task handed back on shutdown re-attaches to its running call');
select is(worker.record_engine_call((select released from task_ids), 'listener-a', 'fc-stale'), false,
  'a listener that no longer holds the task cannot replace its call');

select * from finish();
rollback;
